"""Exactly once across crashes: an outcome interrupted at each step is finished or redone, never
doubled. The interruption is made by stopping partway through `Outputs`' own steps."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path, PurePosixPath

from ocr_daemon import fsops
from ocr_daemon.journal import Journal
from tests.harness import files_under, make_config, run_once


def _interrupted(tmp_path: Path, *, write_sidecar: bool, leave_temp: bool):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    src = config.inbox / "doc.png"
    src.write_bytes(b"abc")
    journal = Journal(config.state_dir)
    journal.open()
    rel = PurePosixPath("doc.png")
    record = journal.begin(rel, fsops.Identity.of(os.lstat(src)))
    journal.reserve(record.id, "done", PurePosixPath("doc.txt"), PurePosixPath("doc.png"))
    config.outbox.mkdir(parents=True)
    if leave_temp:
        (config.outbox / f"{fsops.TEMP_PREFIX}{record.id}").write_text("half")
    if write_sidecar:
        fsops.write_new(config.outbox, PurePosixPath("doc.txt"), b"first result", 0o640, "x")
    journal.close()  # the "crash": nothing after this step ran
    return config


def test_crash_after_reserving_before_writing_redoes_once(tmp_path: Path) -> None:
    config = _interrupted(tmp_path, write_sidecar=False, leave_temp=True)
    assert run_once(config) == 0
    assert files_under(config.outbox) == ["doc.txt"]
    assert (config.outbox / "doc.txt").read_text() == "text of doc.png (3 bytes)"
    assert files_under(config.processed) == ["doc.png"]


def test_crash_after_sidecar_before_disposal_finishes_without_second_sidecar(
    tmp_path: Path,
) -> None:
    config = _interrupted(tmp_path, write_sidecar=True, leave_temp=False)
    assert run_once(config) == 0
    assert files_under(config.outbox) == ["doc.txt"]
    assert (config.outbox / "doc.txt").read_text() == "first result"
    assert files_under(config.processed) == ["doc.png"]
    assert files_under(config.inbox) == []


def test_corrupt_journal_is_set_aside_and_nothing_is_lost(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config.state_dir.mkdir(parents=True)
    (config.state_dir / Journal.FILE).write_bytes(b"this is not sqlite" * 100)
    (config.inbox / "a.png").write_bytes(b"1")

    assert run_once(config) == 0

    assert files_under(config.outbox) == ["a.txt"]
    kept = [p.name for p in config.state_dir.iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1
    sqlite3.connect(config.state_dir / Journal.FILE).execute("SELECT 1 FROM jobs").fetchall()


def test_deleted_journal_between_runs_is_recreated(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (config.inbox / "a.png").write_bytes(b"1")
    assert run_once(config) == 0
    (config.state_dir / Journal.FILE).unlink()
    (config.inbox / "b.png").write_bytes(b"2")
    assert run_once(config) == 0
    assert files_under(config.outbox) == ["a.txt", "b.txt"]


def test_crash_between_link_and_unlink_of_the_input_finishes_the_move(tmp_path: Path) -> None:
    config = _interrupted(tmp_path, write_sidecar=True, leave_temp=False)
    config.processed.mkdir(parents=True)
    os.link(config.inbox / "doc.png", config.processed / "doc.png")  # the move's first half

    assert run_once(config) == 0

    assert files_under(config.outbox) == ["doc.txt"]
    assert files_under(config.processed) == ["doc.png"]
    assert files_under(config.inbox) == []
