"""Hostile and broken inputs through the real engine and the real daemon.

One module-scoped batch drops every static case into one inbox and runs the daemon once
(``once`` mode, in-process, Aspose, two workers): each case then asserts its own outcome — done
(sidecar read correctly), failed with a precise ``reason`` in its ``.error.json``, or left alone by
rule — and the batch as a whole asserts the daemon survived and nothing else was touched. Cases
whose timing matters (deleted, replaced or growing while queued or in OCR) use the engine double's
``slow`` marker to hold a job in flight. The last section gives every resource limit its test.
The outcome table in docs/robustness.md is filled from a run of this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from PIL import Image
from structlog.testing import capture_logs

from ocr_daemon import safefs
from ocr_daemon.config import AsposeSettings, Config, Limits
from ocr_daemon.daemon import Daemon
from ocr_daemon.engines.images import MIN_SIDE_PX
from tests import hostile_files as hf
from tests.harness import error_record, files_under, make_config, run_once, wait_for

LIMITS = Limits(max_file_bytes=8 * 1024 * 1024, max_pixels=100_000_000, max_pages=20)
DONE = "done"
LEFT = "left"
CORRUPT = "failed:corrupt"


@dataclass(frozen=True)
class Case:
    """One input: where it goes, how it is made, what should become of it."""

    rel: bytes
    what: str
    expect: str | frozenset[str]  # "done", "left", "failed:<reason>", or a set of those
    data: Callable[[], bytes] | None = None  # None: `create` makes it
    create: Callable[[bytes, bytes], None] | None = None  # (inbox, rel)
    words: tuple[str, ...] | None = hf.FIRST_WORDS  # first words of a "done" sidecar
    message: str = ""  # in the error record's message

    @property
    def id(self) -> str:
        return os.fsdecode(self.rel).replace("\n", "\\n")[:60]


def _fmt_cases() -> list[Case]:
    exts = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "BMP": "bmp", "GIF": "gif",
            "WEBP": "webp", "PDF": "pdf"}  # fmt: skip
    cases = []
    for fmt, ext in exts.items():
        cases += [
            Case(f"empty/empty-{ext}.{ext}".encode(), f"0-byte .{ext}", LEFT, lambda: b""),
            Case(
                f"truncated/cut-{ext}.{ext}".encode(), f"{fmt} cut in half", CORRUPT,
                lambda fmt=fmt: hf.truncated(hf.good(fmt)),  # type: ignore[misc]
            ),
            Case(
                f"flipped/flipped-{ext}.{ext}".encode(), f"{fmt} with 32 bytes inverted",
                frozenset({DONE, CORRUPT}),
                lambda fmt=fmt: hf.bit_flipped(hf.good(fmt)),  # type: ignore[misc]
                words=None,
            ),
        ]  # fmt: skip
    return cases


def _dir_named_like_an_image(inbox: bytes, rel: bytes) -> None:
    hf.write_at(inbox, rel + b"/inside.png", hf.good("PNG"))


def _empty_dir_named_like_an_image(inbox: bytes, rel: bytes) -> None:
    with hf.dir_fd(inbox, rel.split(b"/"), create=True):
        pass


def _sparse_huge(inbox: bytes, rel: bytes) -> None:
    hf.sparse_at(inbox, rel, hf.good("PNG")[:64], 5 * 1024**3)


LONG = b"n" * 251 + b".png"  # 255 bytes
DEEP = b"/".join(b"level%02d" % i for i in range(40)) + b"/deep.png"
OVER_PATH_MAX = b"/".join([b"d" * 250] * 17) + b"/far.png"  # 4.3 KB below the inbox

CASES: list[Case] = [
    # controls
    Case(b"control.png", "good PNG page (control)", DONE, lambda: hf.good("PNG")),
    Case(b"control-pdf.pdf", "good PDF page (control)", DONE, lambda: hf.good("PDF")),
    *_fmt_cases(),
    # content that does not match its name
    Case(b"lies/png-named.pdf", "PNG named .pdf", DONE, lambda: hf.good("PNG")),
    Case(b"lies/pdf-named.jpg", "PDF named .jpg", DONE, lambda: hf.good("PDF")),
    Case(b"unsupported/notes.png", "text named .png", "failed:unsupported",
         lambda: hf.TEXT, message="content is text"),
    Case(b"unsupported/archive.pdf", "ZIP named .pdf", "failed:unsupported",
         lambda: hf.ZIP, message="ZIP archive"),
    Case(b"unsupported/photo.heic", "HEIC (ISO media)", "failed:unsupported",
         lambda: hf.HEIC, message="ISO media"),
    Case(b"unsupported/program.png", "ELF executable named .png", "failed:unsupported",
         lambda: hf.ELF, message="unrecognised binary data"),
    # limits
    Case(b"limits/bomb-10G-pixels.png", "PNG header 100000x100000 (1e10 px)", "failed:too_large",
         lambda: hf.png_header_only(100_000, 100_000), message="decompression bomb"),
    Case(b"limits/bomb-120M-pixels.png", "PNG header 12000x10000, over max_pixels",
         "failed:too_large", lambda: hf.png_header_only(12_000, 10_000),
         message="over limits.max_pixels = 100000000"),
    Case(b"limits/bomb-in-frame-2.tif", "TIFF: frame 1 fine, frame 2 is 12000x10000",
         "failed:too_large", lambda: hf.tiff([(64, 64), (12_000, 10_000)]),
         message="frame 2 is 12000x10000"),
    Case(b"limits/huge-sparse.png", "5 GiB sparse file with a PNG header", "failed:too_large",
         create=_sparse_huge, message="over limits.max_file_bytes = 8388608"),
    Case(b"limits/just-over.png", "valid PNG padded to max_file_bytes + 1", "failed:too_large",
         lambda: hf.good("PNG").ljust(LIMITS.max_file_bytes + 1, b"\0"),
         message="over limits.max_file_bytes"),
    Case(b"limits/3000-frames.tif", "TIFF with 3000 frames", "failed:too_large",
         lambda: hf.tiff([(64, 64)] * 3000), message="3000 frames, over limits.max_pages = 20"),
    Case(b"limits/ifd-loop.tif", "TIFF whose IFD chain loops back", frozenset({DONE, CORRUPT}),
         lambda: hf.tiff([(300, 200)] * 3, loop=True), words=None),
    Case(b"limits/5000-pages.pdf", "PDF with 5000 pages", "failed:too_large",
         lambda: hf.pdf_many_pages(5000), message="5000 pages, over limits.max_pages = 20"),
    Case(b"limits/count-lies.pdf", "PDF saying /Count 1, holding 25 pages", DONE,
         lambda: hf.pdf_count_lies(25), words=None),
    Case(b"limits/count-indirect.pdf", "PDF of 25 pages, /Count an indirect object",
         "failed:too_large", lambda: hf.pdf_count_indirect(25),
         message="PDF has over limits.max_pages = 20 pages"),
    Case(b"pdf/zero-pages.pdf", "PDF with /Count 0", "failed:empty",
         hf.pdf_zero_pages, message="PDF has no pages"),
    Case(b"pdf/encrypted.pdf", "PDF with an /Encrypt dictionary", "failed:unsupported",
         hf.pdf_encrypted, message="password"),
    # odd images
    Case(b"modes/1-bit.png", "1-bit PNG", DONE, lambda: hf.encode(hf.page().convert("1"), "PNG")),
    Case(b"modes/cmyk.jpg", "CMYK JPEG", DONE,
         lambda: hf.encode(hf.page().convert("CMYK"), "JPEG")),
    Case(b"modes/16-bit.png", "16-bit greyscale PNG", DONE, hf.sixteen_bit_png),
    Case(b"modes/palette-transparent.png", "palette PNG, background transparent", DONE,
         hf.palette_with_transparency_png),
    Case(b"modes/la.png", "grey + alpha (LA) PNG", DONE,
         lambda: hf.encode(hf.page().convert("LA"), "PNG")),
    Case(b"modes/exif-rotated.jpg", "JPEG stored sideways, EXIF Orientation 6", DONE,
         hf.exif_rotated_jpeg),
    Case(b"sizes/1x1.png", "1x1 pixel", "failed:empty",
         lambda: hf.encode(hf.page().resize((1, 1)), "PNG"),
         message=f"too small to hold text (minimum {MIN_SIDE_PX} px"),
    Case(b"sizes/30000x20.png", "30000x20 strip with a line of text", "failed:too_large",
         hf.long_strip_png, message="aspect ratio over limits.max_aspect_ratio = 100"),
    # names
    Case(b"names/scan with  spaces .png", "spaces", DONE, lambda: hf.good("PNG")),
    Case(b"names/it's a \"quoted\" `scan`.png", "quotes and backticks", DONE,
         lambda: hf.good("PNG")),
    Case(b"names/line\nbreak.png", "newline in the name", DONE, lambda: hf.good("PNG")),
    Case(b"names/-rf --help.png", "leading dashes", DONE, lambda: hf.good("PNG")),
    Case(b"names/caf\xe9-latin1.png", "non-UTF-8 name (Latin-1 byte)", DONE,
         lambda: hf.good("PNG")),
    Case(b"names/bad-\xff\xfe-bytes.png", "non-UTF-8 name, content that fails",
         "failed:unsupported", lambda: hf.TEXT, message="content is text"),
    Case(b"names/" + LONG, "255-byte name", DONE, lambda: hf.good("PNG")),
    Case(b"names/" + DEEP, "40 folders deep", DONE, lambda: hf.good("PNG")),
    Case(b"names/folder.png", "a directory named like an image, holding one",
         DONE, create=_dir_named_like_an_image),
    Case(b"names/empty-folder.tif", "an empty directory named like an image", LEFT,
         create=_empty_dir_named_like_an_image, words=None),
    Case(b"names/" + OVER_PATH_MAX, "file 4.3 KB deep, past PATH_MAX", LEFT,
         lambda: hf.good("PNG"), words=None),
    # the same content twice
    Case(b"twins/first.png", "same bytes as twins/second.png", DONE, lambda: hf.good("PNG")),
    Case(b"twins/second.png", "same bytes as twins/first.png", DONE, lambda: hf.good("PNG")),
]  # fmt: skip


@dataclass
class Batch:
    config: Config
    code: int
    logs: list[dict[str, Any]]
    originals: dict[bytes, bytes] = field(default_factory=dict)


def _b(path: Path) -> bytes:
    return os.fsencode(str(path))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    root = tmp_path_factory.mktemp("hostile")
    config = make_config(
        root, engine="aspose", workers=2, ocr_timeout_seconds=120.0, max_attempts=2,
        limits=LIMITS, aspose=AsposeSettings(language="LATIN"),
    )  # fmt: skip
    inbox = _b(config.inbox)
    originals: dict[bytes, bytes] = {}
    for case in CASES:
        if case.create is not None:
            case.create(inbox, case.rel)
        else:
            assert case.data is not None
            originals[case.rel] = case.data()
            hf.write_at(inbox, case.rel, originals[case.rel])
    with capture_logs() as logs:
        code = run_once(config)
    return Batch(config, code, logs, originals)


def _rel(rel: bytes) -> PurePosixPath:
    return PurePosixPath(os.fsdecode(rel))


def _sidecar(rel: bytes) -> bytes:
    return os.fsencode(str(safefs.numbered(_rel(rel).with_suffix(".txt"), 1)))


def _record(rel: bytes) -> bytes:
    path = _rel(rel)
    return os.fsencode(str(path.with_name(safefs.fit_name(path.name, ".error.json"))))


def observe(batch: Batch, case: Case) -> tuple[str, str]:
    """(outcome, detail): done + sidecar text, failed:<reason> + message, left, or missing."""
    cfg = batch.config
    if hf.read_at(_b(cfg.inbox), case.rel) is not None:
        return LEFT, ""
    if case.create is _empty_dir_named_like_an_image:
        return ("left" if (cfg.inbox / os.fsdecode(case.rel)).is_dir() else "missing"), ""
    if case.create is _dir_named_like_an_image:
        rel = case.rel + b"/inside.png"
        text = hf.read_at(_b(cfg.outbox), _sidecar(rel))
        return (DONE, text.decode()) if text is not None else ("missing", "")
    raw = hf.read_at(_b(cfg.failed), _record(case.rel))
    if raw is not None:
        record = json.loads(raw)
        return f"failed:{record['reason']}", record["message"]
    text = hf.read_at(_b(cfg.outbox), _sidecar(case.rel))
    if text is not None and hf.read_at(_b(cfg.processed), case.rel) is not None:
        return DONE, text.decode()
    return "missing", ""


@pytest.mark.slow
def test_daemon_survives_the_batch_and_reports_failures(batch: Batch) -> None:
    events = [e["event"] for e in batch.logs]
    assert "daemon.fatal" not in events
    assert events[-1] == "daemon.stopped"
    assert batch.code == 1, "once mode exits 1 when any file failed"
    failed = sum(1 for e in batch.logs if e["event"] == "file.failed")
    assert failed == sum(1 for c in CASES if observe(batch, c)[0].startswith("failed:"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_outcome(batch: Batch, case: Case) -> None:
    outcome, detail = observe(batch, case)
    allowed = {case.expect} if isinstance(case.expect, str) else case.expect
    assert outcome in allowed, f"{case.what}: {outcome} {detail!r}"
    if outcome == DONE and case.words:
        assert detail.split()[:3] == list(case.words), detail
    if outcome.startswith("failed:"):
        assert case.message in detail, detail
        assert case.rel.decode("utf-8", "backslashreplace") == json.loads(
            hf.read_at(_b(batch.config.failed), _record(case.rel)) or b"{}"
        ).get("file")
    if outcome == LEFT and case.rel in batch.originals:
        assert hf.read_at(_b(batch.config.inbox), case.rel) == batch.originals[case.rel]


@pytest.mark.slow
def test_nothing_else_is_touched(batch: Batch) -> None:
    """Every sidecar, processed input and failure belongs to exactly one case; nothing doubled."""
    cfg = batch.config
    outcomes = {c.rel: observe(batch, c)[0] for c in CASES}
    done = [r for r, o in outcomes.items() if o == DONE]
    failed = [r for r, o in outcomes.items() if o.startswith("failed:")]
    assert len(files_under(cfg.outbox)) == len(done)
    assert len(files_under(cfg.processed)) == len(done)
    assert len(files_under(cfg.failed)) == 2 * len(failed)
    assert not any("(2)" in name for name in files_under(cfg.outbox) + files_under(cfg.failed))
    twins = [
        hf.read_at(_b(cfg.outbox), _sidecar(b"twins/" + n)) for n in (b"first.png", b"second.png")
    ]
    assert twins[0] == twins[1] is not None


# -- files that change while queued or in OCR (engine double: `slow` holds a job 2 s) ---------


class InThread:
    """The daemon in `once` mode on a thread, so the test can act while a job is in flight."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.daemon: Daemon | None = None
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, name="daemon")

    def _run(self) -> None:
        async def main() -> int:
            self.daemon = Daemon(self.config, once=True)
            return await self.daemon.run()

        self.code = asyncio.run(main())

    def busy(self) -> int:
        pool = self.daemon.pool if self.daemon else None
        return sum(1 for slot in pool.slots if slot.busy) if pool else 0

    def __enter__(self) -> InThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive() and self.daemon is not None and exc[0] is not None:
            self.daemon.stop.set()  # a failed assertion: stop rather than hang
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()


def _grow(path: Path, chunks: int, pause: float) -> threading.Thread:
    def write() -> None:
        stop = threading.Event()
        for _ in range(chunks):
            with open(path, "ab") as fh:
                fh.write(b"+" * 100)
            stop.wait(pause)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(".new-" + path.name)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sidecar_text(config: Config, name: str) -> str:
    return (config.outbox / PurePosixPath(name).with_suffix(".txt")).read_text()


@pytest.mark.slow
def test_files_deleted_replaced_or_growing_while_queued(tmp_path: Path) -> None:
    config = make_config(tmp_path, workers=1)
    for name in ("a-slow-hold.png", "b-deleted.png", "c-replaced.png", "d-growing.png"):
        (config.inbox / name).write_bytes(b"0123456789")
    with InThread(config) as run:
        wait_for(lambda: run.busy() == 1, timeout=60, interval=0.02)  # a holds the only worker
        (config.inbox / "b-deleted.png").unlink()
        _replace(config.inbox / "c-replaced.png", b"new content, 26 bytes long")
        _grow(config.inbox / "d-growing.png", chunks=5, pause=0.2).join()
    assert run.code == 0
    assert files_under(config.outbox) == ["a-slow-hold.txt", "c-replaced.txt", "d-growing.txt"]
    assert _sidecar_text(config, "c-replaced.png") == "text of c-replaced.png (26 bytes)"
    assert _sidecar_text(config, "d-growing.png") == "text of d-growing.png (510 bytes)"
    assert (config.processed / "c-replaced.png").read_bytes() == b"new content, 26 bytes long"
    assert files_under(config.failed) == [] and files_under(config.inbox) == []


@pytest.mark.slow
def test_files_deleted_replaced_or_growing_during_ocr(tmp_path: Path) -> None:
    config = make_config(tmp_path, workers=3)
    names = ("slow-deleted.png", "slow-replaced.png", "slow-growing.png", "control.png")
    for name in names:
        (config.inbox / name).write_bytes(b"0123456789")
    with capture_logs() as logs, InThread(config) as run:
        wait_for(lambda: run.busy() == 3, timeout=60, interval=0.02)
        (config.inbox / "slow-deleted.png").unlink()
        _replace(config.inbox / "slow-replaced.png", b"replaced while in OCR")
        _grow(config.inbox / "slow-growing.png", chunks=3, pause=0.2).join()
    assert run.code == 0
    assert files_under(config.outbox) == ["control.txt", "slow-growing.txt", "slow-replaced.txt"]
    assert _sidecar_text(config, "slow-replaced.png") == "text of slow-replaced.png (21 bytes)"
    assert _sidecar_text(config, "slow-growing.png") == "text of slow-growing.png (310 bytes)"
    assert files_under(config.failed) == [] and files_under(config.inbox) == []
    events = {(e["event"], e.get("path")) for e in logs}
    assert ("file.vanished", "slow-deleted.png") in events
    assert ("file.changed", "slow-replaced.png") in events
    assert ("file.changed", "slow-growing.png") in events


# -- every resource limit -------------------------------------------------------------------
# max_file_bytes, max_pixels, max_pages (TIFF and PDF, stated and hidden counts) and the
# minimum side are cases of the batch above; the timeout, queue and recycling limits follow.


def test_limits_have_safe_defaults() -> None:
    defaults, config = Limits(), Config()
    assert defaults.max_file_bytes == 256 * 1024 * 1024
    assert defaults.max_pixels == 100_000_000  # A4 at 600 dpi is 35 M
    assert defaults.max_pages == 200
    assert 0 < config.ocr_timeout_seconds <= 600
    assert config.max_attempts == 3 and config.queue_size == 10_000
    assert config.max_jobs_per_worker == 500


@pytest.mark.slow
def test_ocr_timeout_stops_a_pathological_page_in_the_real_engine(tmp_path: Path) -> None:
    """A blank 15000x8 strip: ~1 KB of PNG that keeps Aspose busy for ~45 s (measured)."""
    config = make_config(
        tmp_path, engine="aspose", workers=1, ocr_timeout_seconds=10.0, max_attempts=1,
        aspose=AsposeSettings(language="LATIN"), limits=Limits(max_aspect_ratio=100_000),
    )  # fmt: skip
    hf.write_at(_b(config.inbox), b"strip.png", hf.encode(Image.new("L", (15000, 8), 255), "PNG"))

    assert run_once(config) == 1

    record = error_record(config, "strip.png")
    assert (record["reason"], record["attempts"]) == ("timeout", 1)
    assert "no result after 10 s; worker killed" in record["message"]


def test_queue_size_applies_back_pressure_without_losing_files(tmp_path: Path) -> None:
    """40 files against a queue of 1: the scan finds the queue full and waits (it would not
    if `queue_size` were ignored: the scan is far faster than the workers), the daemon's own
    queue never holds more than one job, and every file still gets its sidecar."""
    config = make_config(tmp_path, queue_size=1)
    for i in range(40):
        (config.inbox / f"f{i:02}.png").write_bytes(b"x" * (i + 1))
    daemon = Daemon(config, once=True)
    queue, real_put = daemon.jobs.queue, daemon.jobs.queue.put
    found_full, held = [], []

    async def put(job: Any) -> None:
        found_full.append(queue.full())
        await real_put(job)
        held.append(queue.qsize())

    queue.put = put  # type: ignore[method-assign]
    assert asyncio.run(daemon.run()) == 0
    assert files_under(config.outbox) == [f"f{i:02}.txt" for i in range(40)]
    assert len(held) == 40 and max(held) == 1, f"the queue held up to {max(held)} jobs"
    assert any(found_full), "the scan never had to wait for room in the queue"


def test_max_jobs_per_worker_recycles_workers(tmp_path: Path) -> None:
    config = make_config(tmp_path, workers=1, max_jobs_per_worker=2)
    for i in range(5):
        (config.inbox / f"f{i}.png").write_bytes(b"x")
    with capture_logs() as logs:
        assert run_once(config) == 0
    recycled = [e for e in logs if e["event"] == "worker.replacing" and e["reason"] == "recycled"]
    assert len(recycled) == 2
    assert len(files_under(config.outbox)) == 5
