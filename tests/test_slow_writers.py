"""Slow writers (issue 12, finding 2): a scanner uploading over SMB, FTP or NFS stalls mid-file for
seconds. Its half-written file reads as corrupt; it must not be moved to failed/ while its writer
goes on writing into it there. Real daemon, real Aspose engine, writers that keep the file open
across the pause as a network upload does.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from ocr_daemon.config import Config, load_config
from ocr_daemon.errors import ConfigError
from tests.conftest import render_page
from tests.harness import (
    DaemonProcess,
    error_record,
    files_under,
    make_config,
    run_once,
    start,
    wait_for,
    write_config,
)

SETTLE = 0.5
REALISTIC_GRACE = Config().corrupt_grace_seconds  # the shipped default


def page(tag: str) -> list[str]:
    return [f"{tag} alpha line number {i} of a slow upload" for i in range(6)]


def multipage_tiff(tags: tuple[str, ...]) -> bytes:
    pages = [render_page(page(tag)) for tag in tags]
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


def png(tag: str) -> bytes:
    out = io.BytesIO()
    render_page(page(tag)).save(out, format="PNG")
    return out.getvalue()


def stalling_writer(path: Path, data: bytes, cut: int, pause_s: float | None) -> threading.Thread:
    """Write `data` to `path` in chunks through one descriptor, stalling `pause_s` after `cut`
    bytes (None: never finish, the upload died there). Returns the started thread."""

    def write_chunks(fd: int, part: bytes) -> None:
        step = max(1, len(part) // 4)
        for start_at in range(0, len(part), step):
            os.write(fd, part[start_at : start_at + step])
            time.sleep(0.05)

    def run() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_chunks(fd, data[:cut])
            if pause_s is None:
                return
            time.sleep(pause_s)
            write_chunks(fd, data[cut:])
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, name=f"writer-{path.name}")
    thread.start()
    return thread


def pages_of(sidecar: Path) -> list[str]:
    return [p.split()[0] if p.split() else "" for p in sidecar.read_text().split("\f")]


def deferred(daemon: DaemonProcess, name: str) -> list[dict[str, object]]:
    return [e for e in daemon.events("file.verdict_deferred") if e["path"] == name]


@pytest.mark.slow
def test_writers_that_stall_mid_file_lose_nothing(tmp_path: Path, daemon_factory: list) -> None:
    """A 1.5 s stall (3x the settle time) in a 3-page TIFF and a 20 s stall in a PNG, both with
    the shipped grace window: each gets one complete sidecar, nothing reaches failed/."""
    config = write_config(
        tmp_path, engine="aspose", workers=2, settle_seconds=SETTLE,
        corrupt_grace_seconds=REALISTIC_GRACE,
    )  # fmt: skip
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    inbox = tmp_path / "inbox"
    tiff, single = multipage_tiff(("First", "Second", "Third")), png("Single")
    writers = [
        stalling_writer(inbox / "three.tif", tiff, len(tiff) * 2 // 5, pause_s=3 * SETTLE),
        stalling_writer(inbox / "stall.png", single, len(single) // 2, pause_s=20.0),
    ]
    for writer in writers:
        writer.join()

    outbox = tmp_path / "outbox"
    failed = tmp_path / "failed"
    wait_for(lambda: len(files_under(outbox)) == 2 or files_under(failed), timeout=90)
    assert files_under(failed) == []
    assert pages_of(outbox / "three.txt") == ["First", "Second", "Third"]
    assert pages_of(outbox / "stall.txt") == ["Single"]
    assert (tmp_path / "processed/three.tif").read_bytes() == tiff
    assert (tmp_path / "processed/stall.png").read_bytes() == single
    # the stall was really seen, and held rather than failed
    assert [e["reason"] for e in deferred(daemon, "stall.png")] == ["corrupt"]
    assert daemon.events("file.failed") == []


@pytest.mark.slow
def test_a_file_cut_short_for_good_fails_once_the_grace_window_passed(
    tmp_path: Path, daemon_factory: list
) -> None:
    """An upload that died half way still reaches failed/ as corrupt: not before it has been
    unchanged for corrupt_grace_seconds, and not much later either."""
    grace = 4.0
    config = write_config(
        tmp_path, engine="aspose", workers=1, settle_seconds=SETTLE, corrupt_grace_seconds=grace
    )
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    data = png("Dead")
    path = tmp_path / "inbox/dead.png"
    stalling_writer(path, data, len(data) // 2, pause_s=None).join()
    last_change = path.stat().st_mtime

    record = tmp_path / "failed/dead.png.error.json"
    wait_for(record.exists, timeout=grace + 30, interval=0.1)
    failed_after = record.stat().st_mtime - last_change

    assert error_record(Config(failed=tmp_path / "failed"), "dead.png")["reason"] == "corrupt"
    assert grace <= failed_after < grace + 10, failed_after
    assert len(deferred(daemon, "dead.png")) == 1
    assert (tmp_path / "failed/dead.png").read_bytes() == data[: len(data) // 2]
    assert files_under(tmp_path / "outbox") == []


def test_once_waits_out_the_grace_window_before_failing_a_fresh_file(tmp_path: Path) -> None:
    """`once` on a file that was just written and reads as corrupt (the engine double says so):
    it holds the verdict for the window, then fails the file and exits 1, leaving nothing."""
    config = make_config(tmp_path, settle_seconds=0.3, corrupt_grace_seconds=2.0)
    (config.inbox / "scan-corrupt.png").write_bytes(b"\x89PNG half of a scan")
    started = time.monotonic()

    assert run_once(config) == 1

    assert time.monotonic() - started >= 2.0
    assert error_record(config, "scan-corrupt.png")["reason"] == "corrupt"
    assert files_under(config.inbox) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", r"bad value for 'corrupt_grace_seconds': expected a number of seconds"),
        (-1, r"bad value for 'corrupt_grace_seconds'"),
        (0.2, r"key 'corrupt_grace_seconds' \(0.2\) must be 0 \(off\) or at least settle"),
    ],
)
def test_a_bad_grace_window_names_the_key(tmp_path: Path, value: object, message: str) -> None:
    path = write_config(tmp_path, settle_seconds=SETTLE, corrupt_grace_seconds=value)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
