"""The daemon's flow, in-process with `once` and the engine double at the seam: what ends where."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from structlog.testing import capture_logs

from ocr_daemon.daemon import Daemon
from ocr_daemon.errors import AlreadyRunning
from ocr_daemon.journal import JobRecord, Journal
from ocr_daemon.outputs import Outputs
from tests.harness import error_record, files_under, make_config, run_once


def drop(inbox: Path, rel: str, data: bytes = b"scan-bytes") -> Path:
    path = inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_files_become_sidecars_and_inputs_move_to_processed(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    for rel in ("a.png", "nested/deeper/b.jpg", "space name ü.tif"):
        drop(config.inbox, rel)

    assert run_once(config) == 0

    assert files_under(config.outbox) == ["a.txt", "nested/deeper/b.txt", "space name ü.txt"]
    assert files_under(config.processed) == ["a.png", "nested/deeper/b.jpg", "space name ü.tif"]
    assert files_under(config.inbox) == []
    text = (config.outbox / "nested/deeper/b.txt").read_text(encoding="utf-8")
    assert text == "text of b.jpg (10 bytes)"


def test_ignored_and_special_entries_are_left_alone(tmp_path: Path) -> None:
    config = make_config(tmp_path, ignore_patterns=("*.skipme",))
    ignored = [".hidden.png", "._mac.png", "x.png.part", "y.tmp", "z.crdownload", "w.filepart",
               "backup.png~", ".~lock.doc#", "Thumbs.db", ".DS_Store", "@eaDir/thumb.png",
               "mine.skipme"]  # fmt: skip
    for rel in ignored:
        drop(config.inbox, rel)
    os.symlink("/etc/hostname", config.inbox / "link.png")
    os.mkfifo(config.inbox / "pipe.png")
    drop(config.inbox, "real.png")

    assert run_once(config) == 0

    assert files_under(config.outbox) == ["real.txt"]
    left = files_under(config.inbox)
    assert sorted(left) == sorted([*ignored, "link.png", "pipe.png"])


def test_name_collisions_never_overwrite(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    drop(config.inbox, "scan.png", b"1")
    drop(config.inbox, "scan.jpg", b"22")
    (config.outbox).mkdir(parents=True)
    (config.outbox / "scan.txt").write_text("an older sidecar")

    assert run_once(config) == 0

    assert (config.outbox / "scan.txt").read_text() == "an older sidecar"
    texts = {(config.outbox / n).read_text() for n in ("scan (2).txt", "scan (3).txt")}
    assert texts == {"text of scan.png (1 bytes)", "text of scan.jpg (2 bytes)"}

    drop(config.inbox, "scan.png", b"333")  # a new file under an old name
    assert run_once(config) == 0
    assert (config.outbox / "scan (4).txt").read_text() == "text of scan.png (3 bytes)"
    assert files_under(config.processed) == ["scan (2).png", "scan.jpg", "scan.png"]


def test_crash_and_hang_are_retried_then_failed_others_done(tmp_path: Path) -> None:
    config = make_config(tmp_path, max_attempts=2, ocr_timeout_seconds=2.0)
    for rel in ("good1.png", "crash.png", "segv.png", "oom.png", "hang.png", "good2.png"):
        drop(config.inbox, rel)

    assert run_once(config) == 1

    assert files_under(config.outbox) == ["good1.txt", "good2.txt"]
    reasons = {n: error_record(config, n)["reason"] for n in ("crash.png", "segv.png", "oom.png")}
    assert reasons == dict.fromkeys(reasons, "worker_crashed")
    assert "SIGABRT" in error_record(config, "crash.png")["message"]
    assert "SIGSEGV" in error_record(config, "segv.png")["message"]
    assert "SIGKILL" in error_record(config, "oom.png")["message"]
    hang = error_record(config, "hang.png")
    assert (hang["reason"], hang["attempts"]) == ("timeout", 2)
    assert files_under(config.inbox) == []


def test_permanent_input_error_fails_at_once_with_record(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    drop(config.inbox, "sub/corrupt.png")

    assert run_once(config) == 1

    record = error_record(config, "sub/corrupt.png")
    assert record["reason"] == "corrupt"
    assert record["attempts"] == 1
    assert record["file"] == "sub/corrupt.png"
    assert (config.failed / "sub/corrupt.png").exists()


@pytest.mark.parametrize("mode", ["keep", "delete"])
def test_on_success_keep_and_delete(tmp_path: Path, mode: str) -> None:
    config = make_config(tmp_path, on_success=mode)
    drop(config.inbox, "a.png")

    assert run_once(config) == 0
    assert run_once(config) == 0  # a kept input is not processed again

    assert files_under(config.outbox) == ["a.txt"]
    assert files_under(config.inbox) == (["a.png"] if mode == "keep" else [])
    assert files_under(config.processed) == []


def test_empty_file_is_left_in_the_inbox(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    drop(config.inbox, "empty.png", b"")
    drop(config.inbox, "full.png")

    assert run_once(config) == 0
    assert files_under(config.outbox) == ["full.txt"]
    assert files_under(config.inbox) == ["empty.png"]


def test_outputs_get_configured_mode(tmp_path: Path) -> None:
    config = make_config(tmp_path, output_mode=0o600)
    drop(config.inbox, "a.png")
    run_once(config)
    assert (config.outbox / "a.txt").stat().st_mode & 0o777 == 0o600


def test_second_daemon_on_same_state_dir_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = Journal(config.state_dir)
    first.open()
    try:
        with pytest.raises(AlreadyRunning, match="another ocr-daemon"):
            run_once(config)
    finally:
        first.close()


def test_stop_during_a_commit_still_logs_and_counts_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that comes while a finished job's outputs are being written (in a thread, after
    its engine is free again) waits for that commit: its `file.done` is logged and counted."""
    config = make_config(tmp_path, workers=1)
    committing = threading.Event()
    commit_success = Outputs.commit_success

    def slow_commit(self: Outputs, record: JobRecord, *args: Any, **kwargs: Any) -> PurePosixPath:
        committing.set()
        time.sleep(0.5)  # the stop arrives now
        return commit_success(self, record, *args, **kwargs)

    monkeypatch.setattr(Outputs, "commit_success", slow_commit)
    drop(config.inbox, "a.png")

    async def stop_mid_commit() -> tuple[Daemon, int]:
        daemon = Daemon(config)
        running = asyncio.create_task(daemon.run())
        assert await asyncio.to_thread(committing.wait, 30)
        daemon.stop.set()
        return daemon, await running

    with capture_logs() as logged:
        daemon, code = asyncio.run(stop_mid_commit())

    assert code == 0
    assert files_under(config.outbox) == ["a.txt"]
    assert [e["path"] for e in logged if e["event"] == "file.done"] == ["a.png"]
    assert daemon.counts.done == 1


@pytest.mark.parametrize("on_success", ["move", "delete"])
def test_an_input_rewritten_after_its_sidecar_gets_one_sidecar_for_its_new_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_success: str
) -> None:
    """Found by the soak: a writer that changed the file between its sidecar and its move left
    a sidecar of the old (partial) bytes and, read again, a second one. Now the first is
    withdrawn and the file is read again as it now is: one sidecar, of the whole file."""
    config = make_config(tmp_path, workers=1, on_success=on_success)
    path = drop(config.inbox, "scan.png", b"half")
    write = Outputs._write
    rewritten: list[Path] = []

    def write_then_writer_goes_on(
        self: Outputs, job: JobRecord, root: Path, rel: PurePosixPath, data: bytes, *, mode: int
    ) -> bool:
        published = write(self, job, root, rel, data, mode=mode)
        if not rewritten:
            rewritten.append(path)
            with path.open("ab") as fh:
                fh.write(b" and the rest")
        return published

    monkeypatch.setattr(Outputs, "_write", write_then_writer_goes_on)
    with capture_logs() as logged:
        assert run_once(config) == 0

    assert files_under(config.outbox) == ["scan.txt"]
    assert (config.outbox / "scan.txt").read_text() == "text of scan.png (17 bytes)"
    events = [e["event"] for e in logged if e["event"].startswith(("file.", "output."))]
    assert events == ["output.withdrawn", "file.changed", "file.done"]
    assert files_under(config.inbox) == []
