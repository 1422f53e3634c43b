"""A PDF its writer truncates while, or just before, the daemon reads it (issue 12, finding 7).

Vetting used to mmap the PDF: a writer cutting the file under the mapping killed the worker with
SIGBUS, and the file was retried, then failed, as `worker_crashed`. Now the PDF is read once into
memory through `inputs.read_input`, and pdfium and Aspose get those bytes, never the path. A cut
file is `corrupt`; one cut after it settled is found changed when its verdict is committed, goes
back to settling, and is then judged as it now is.

The PDFs here hold one real text page and 64 MiB of unreferenced stream data, so that reading them
takes long enough for the test to cut them mid-read: it truncates the file as soon as the reading
process holds it open (seen in /proc/PID/fd).
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import os
import re
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ocr_daemon.config import Limits
from ocr_daemon.engines import images, pdf
from ocr_daemon.engines.base import OcrResult
from ocr_daemon.errors import CorruptInput, InputError
from ocr_daemon.pool import LocalSlot
from tests.conftest import render_page
from tests.cutting_engine import CUT_TO
from tests.harness import files_under, make_config, start, wait_for, write_config

LINES = [
    "Invoice number 4711 from the harbour office",
    "The quick brown fox jumps over the lazy dog",
    "Pack my box with five dozen liquor jugs",
    "How vexingly quick daft zebras jump",
    "Sphinx of black quartz judge my vow",
    "Five quacking zephyrs jolt my wax bed",
    "The five boxing wizards jump quickly",
    "Jackdaws love my big sphinx of quartz",
]
PADDING = 64 << 20
TRUNCATED = "PDF is truncated: no %%EOF marker at its end"
_SPAWN = multiprocessing.get_context("spawn")


def text_pdf(pages: int = 1) -> bytes:
    rendered = [render_page([f"Page {n + 1}", *LINES], size=(1800, 900)) for n in range(pages)]
    out = io.BytesIO()
    rendered[0].save(out, "PDF", save_all=True, append_images=rendered[1:], resolution=200.0)
    return out.getvalue()


def padded_pdf(padding: int = PADDING) -> bytes:
    """`text_pdf()` plus an incremental update adding one unreferenced stream of random bytes."""
    base = text_pdf()
    prev = int(re.findall(rb"startxref\s+(\d+)", base)[-1])
    number = int(re.findall(rb"/Size\s+(\d+)", base)[-1])
    root = re.findall(rb"/Root\s+(\d+ \d+ R)", base)[-1]
    junk = os.urandom(padding)
    obj = b"%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (number, padding, junk)
    xref = len(base) + len(obj)
    tail = (
        b"xref\n%d 1\n%010d 00000 n \ntrailer\n<< /Size %d /Root %s /Prev %d >>\n"
        b"startxref\n%d\n%%%%EOF\n" % (number, len(base), number + 1, root, prev, xref)
    )
    return base + obj + tail


def holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has a descriptor on `path` (a mapping keeps its descriptor too)."""
    fds = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{fds}/{name}") == str(path):
                return True
        except OSError:
            continue
    return False


def cut_once_open(pid: int, path: Path, running: Any) -> bool:
    """Truncate `path` to `CUT_TO` bytes as soon as `pid` holds it open; False if `running()`
    turned false first (the reader finished without the test ever seeing the file open)."""
    while running():
        if holds_open(pid, path):
            os.truncate(path, CUT_TO)
            return True
        time.sleep(0.0005)
    return False


# -- vetting -----------------------------------------------------------------------------------


def _vet_and_report(path: str, conn: Connection) -> None:
    """In a spawned process, as a worker vets: report what vetting made of the file."""
    try:
        vetted = images.vet(Path(path), Limits())
        conn.send(("pdf", len(getattr(vetted, "data", b""))))
    except InputError as exc:
        conn.send((exc.reason, exc.message))


def test_a_pdf_cut_while_it_is_vetted_is_read_whole_or_corrupt_never_a_dead_process(
    tmp_path: Path,
) -> None:
    """Before the fix the process died of SIGBUS (exit code -7), every time in 5 runs."""
    path = tmp_path / "scan.pdf"
    data = padded_pdf()
    path.write_bytes(data)
    parent, child = _SPAWN.Pipe(duplex=False)
    reader = _SPAWN.Process(target=_vet_and_report, args=(str(path), child))
    reader.start()
    child.close()
    assert reader.pid is not None
    cut = cut_once_open(reader.pid, path, reader.is_alive)
    reader.join(timeout=60)

    assert cut, "the vetting process never held the file open"
    assert reader.exitcode == 0, f"the vetting process died: exit code {reader.exitcode}"
    outcome = parent.recv()
    assert outcome in (("pdf", len(data)), ("corrupt", TRUNCATED)) or (
        outcome[0] == "corrupt" and outcome[1].startswith("file changed while it was read")
    ), outcome


@pytest.mark.parametrize("change", ["cut", "grown"])
def test_a_pdf_that_changes_during_its_read_is_corrupt_not_half_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Deterministic: the file is cut (or appended to) between its open and its read."""
    path = tmp_path / "scan.pdf"
    path.write_bytes(text_pdf(pages=2))
    inode, real_read = path.stat().st_ino, os.read

    def changing_read(fd: int, n: int) -> bytes:
        if os.fstat(fd).st_ino == inode and not changed:
            changed.append(change)
            if change == "cut":
                os.truncate(path, CUT_TO)
            else:
                with path.open("ab") as fh:
                    fh.write(b"% more from the writer\n")
        return real_read(fd, n)

    changed: list[str] = []
    monkeypatch.setattr(os, "read", changing_read)
    with pytest.raises(CorruptInput, match="file changed while it was read"):
        images.vet(path, Limits())
    assert changed == [change]


def test_pdf_pages_are_rendered_from_the_vetted_bytes_not_the_file(tmp_path: Path) -> None:
    """Cut between vetting and rendering: pdfium still renders every page of what was vetted
    (before the fix it reopened the path, and failed on the cut file)."""
    path = tmp_path / "scan.pdf"
    path.write_bytes(text_pdf(pages=3))
    vetted = images.vet(path, Limits())
    os.truncate(path, CUT_TO)

    assert isinstance(vetted, images.PdfInput)
    pages = list(pdf.render_pages(vetted, Limits()))
    assert len(pages) == 3
    assert pdf.render_page(vetted, 2, Limits()).size == pages[2].size


# -- a real Aspose worker ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_aspose_worker_reading_a_pdf_cut_mid_read_survives(tmp_path: Path) -> None:
    """The worker the daemon spawns, with the real engine. Before the fix: `WorkerCrashed`,
    "worker process died (killed by SIGBUS)", in 3 runs of 3."""
    config = make_config(tmp_path, engine="aspose", orientation=False, ocr_timeout_seconds=300)
    path = config.inbox / "scan.pdf"
    path.write_bytes(padded_pdf())
    slot = LocalSlot(0, config)

    async def scenario() -> tuple[bool, OcrResult | BaseException, bool, bool]:
        await slot.start()
        pid = slot.pid
        assert isinstance(pid, int)
        try:
            job = asyncio.create_task(slot.run(1, path, timeout_s=300))
            cut = await asyncio.to_thread(cut_once_open, pid, path, lambda: not job.done())
            try:
                outcome: OcrResult | BaseException = await job
            except Exception as exc:  # which one is the point
                outcome = exc
            return cut, outcome, slot.alive(), slot.pid == pid
        finally:
            await slot.stop(grace_s=5)

    cut, outcome, alive, same_worker = asyncio.run(scenario())

    assert cut, "the worker never held the file open"
    assert isinstance(outcome, OcrResult | CorruptInput), repr(outcome)
    if isinstance(outcome, OcrResult):  # cut after the read: the bytes read are recognised
        assert outcome.pages[0].split()[:2] == ["Page", "1"], outcome.pages
    assert alive and same_worker, "the worker died"


# -- the daemon with the real Aspose engine ----------------------------------------------------


@pytest.mark.slow
def test_a_pdf_cut_while_the_worker_reads_it_fails_as_corrupt_after_settling_again(
    tmp_path: Path, daemon_factory: list[Any]
) -> None:
    """Before the fix: `file.retry` with reason `worker_crashed` (SIGBUS), a restarted worker,
    and only then the verdict."""
    config = write_config(tmp_path, engine="aspose", workers=1, settle_seconds=0.3,
                          orientation=False)  # fmt: skip
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    worker = int(str(daemon.events("worker.started")[-1]["pid"]))
    path = tmp_path / "inbox/scan.pdf"
    (tmp_path / "inbox/.scan.tmp").write_bytes(padded_pdf())
    (tmp_path / "inbox/.scan.tmp").rename(path)

    assert cut_once_open(worker, path, path.exists), "the worker never opened it"
    wait_for((tmp_path / "failed/scan.pdf.error.json").exists, timeout=120)

    record = error_record_at(tmp_path, "scan.pdf")
    assert (record["reason"], record["message"]) == ("corrupt", TRUNCATED)
    assert [e["reason"] for e in daemon.events("file.changed")] == [
        "modified or replaced during OCR"
    ], "the changed input went back to settling once"
    assert daemon.events("file.retry") == [], "no crash, no retry"
    assert [e["pid"] for e in daemon.events("worker.started")] == [worker], "the worker lived"
    assert daemon.status().get("state") == "running"


@pytest.mark.slow
def test_a_pdf_cut_after_it_settled_fails_as_corrupt_and_the_daemon_lives(
    tmp_path: Path, daemon_factory: list[Any]
) -> None:
    """Cut by the `CutBeforeReading` double in the worker, after the daemon saw the file settle
    and before the engine opens it. A good PDF dropped afterwards is still read."""
    config = write_config(tmp_path, engine="tests.cutting_engine:CutBeforeReading", workers=1,
                          settle_seconds=0.3, orientation=False)  # fmt: skip
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    (tmp_path / "inbox/cut-scan.pdf").write_bytes(text_pdf(pages=3))
    wait_for((tmp_path / "failed/cut-scan.pdf.error.json").exists, timeout=120)
    (tmp_path / "inbox/good.pdf").write_bytes(text_pdf())
    wait_for((tmp_path / "outbox/good.txt").exists, timeout=120)

    record = error_record_at(tmp_path, "cut-scan.pdf")
    assert (record["reason"], record["message"]) == ("corrupt", TRUNCATED)
    assert len(daemon.events("file.changed")) == 1, "the cut input went back to settling once"
    assert daemon.events("file.retry") == [], "no crash, no retry"
    assert len(daemon.events("worker.started")) == 1, "the worker lived"
    assert (tmp_path / "outbox/good.txt").read_text().split()[:2] == ["Page", "1"]
    assert files_under(tmp_path / "failed") == ["cut-scan.pdf", "cut-scan.pdf.error.json"]
    assert daemon.status().get("state") == "running"


def error_record_at(root: Path, name: str) -> dict[str, Any]:
    """`failed/NAME.error.json` of a daemon run from `write_config(root)`."""
    record: dict[str, Any] = json.loads((root / "failed" / f"{name}.error.json").read_text())
    return record


# -- images --------------------------------------------------------------------------------------


def _decode_and_report(path: str, conn: Connection) -> None:
    """In a spawned process, as an engine reads an image: vet it, then decode every frame."""
    try:
        vetted = images.vet(Path(path), Limits())
        assert isinstance(vetted, images.ImageInput)
        conn.send(("decoded", [page.size for page in vetted.pages()]))
    except InputError as exc:
        conn.send((exc.reason, exc.message))


def maps(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` memory-mapped."""
    try:
        return str(path) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def cut_once_mapped(pid: int, path: Path, running: Any) -> bool:
    """Truncate `path` to `CUT_TO` bytes if `pid` ever maps it; whether it did."""
    while running():
        if maps(pid, path):
            os.truncate(path, CUT_TO)
            return True
        time.sleep(0.0005)
    return False


def test_an_uncompressed_image_is_never_mapped_so_a_cut_cannot_kill_its_reader(
    tmp_path: Path,
) -> None:
    """Given a file name, Pillow maps an uncompressed greyscale TIFF, and a cut under the
    mapping killed the reader with SIGBUS (this test: exit code -7 before the fix). Images are
    now read once and decoded from memory: the file is never mapped."""
    path = tmp_path / "scan.tif"
    Image.new("L", (9000, 9000), 255).save(path, compression=None)  # 81 MB, uncompressed
    parent, child = _SPAWN.Pipe(duplex=False)
    reader = _SPAWN.Process(target=_decode_and_report, args=(str(path), child))
    reader.start()
    child.close()
    assert reader.pid is not None
    mapped = cut_once_mapped(reader.pid, path, reader.is_alive)
    reader.join(timeout=120)

    assert reader.exitcode == 0, f"the reading process died: exit code {reader.exitcode}"
    assert not mapped, "the reader mapped the file"
    assert parent.recv() == ("decoded", [(9000, 9000)])


def test_image_pages_are_decoded_from_the_vetted_bytes_not_the_file(tmp_path: Path) -> None:
    """Cut between vetting and decoding: every frame that was vetted still decodes (before,
    `pages()` reopened the path and found the cut file)."""
    path = tmp_path / "scan.tif"
    frames = [render_page([f"Page {n + 1}", *LINES], size=(1200, 600)) for n in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    vetted = images.vet(path, Limits())
    os.truncate(path, CUT_TO)
    assert isinstance(vetted, images.ImageInput)
    assert [page.size for page in vetted.pages()] == [(1200, 600)] * 3
