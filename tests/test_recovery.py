"""Exactly once across crashes: an outcome interrupted at each step is finished or redone, never
doubled. The interruption is made by stopping partway through `Outputs`' own steps."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ocr_daemon import safefs
from ocr_daemon.config import Config
from ocr_daemon.engines.base import OcrResult
from ocr_daemon.journal import JobRecord, Journal
from ocr_daemon.outputs import AlreadyFinished, Outputs
from tests.harness import files_under, make_config, run_once
from tests.test_faults import tmpfs


def _interrupted(tmp_path: Path, *, write_sidecar: bool, leave_temp: bool):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    src = config.inbox / "doc.png"
    src.write_bytes(b"abc")
    journal = Journal(config.state_dir)
    journal.open()
    rel = PurePosixPath("doc.png")
    record = journal.begin(rel, safefs.Identity.of(os.lstat(src)))
    journal.reserve(record.id, "done", PurePosixPath("doc.txt"), PurePosixPath("doc.png"))
    config.outbox.mkdir(parents=True)
    if leave_temp:
        (config.outbox / f"{safefs.TEMP_PREFIX}{record.id}").write_text("half")
    if write_sidecar:
        safefs.write_new(config.outbox, PurePosixPath("doc.txt"), b"first result", 0o640, "x")
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


def test_crash_after_sidecar_then_the_input_rewritten_withdraws_it_and_reads_anew(
    tmp_path: Path,
) -> None:
    """The sidecar of the old bytes is withdrawn at start; the file as it now is gets the one
    sidecar (before: the old one stayed and the new bytes got `doc (2).txt`)."""
    config = _interrupted(tmp_path, write_sidecar=True, leave_temp=False)
    (config.inbox / "doc.png").write_bytes(b"abc and more")
    assert run_once(config) == 0
    assert files_under(config.outbox) == ["doc.txt"]
    assert (config.outbox / "doc.txt").read_text() == "text of doc.png (12 bytes)"
    assert files_under(config.processed) == ["doc.png"]


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


# -- commits running at the same time (each in its own thread, as the dispatcher runs them) ------


def _jobs(config: Config, names: list[str]) -> tuple[Journal, list[JobRecord]]:
    for folder in (config.outbox, config.processed, config.failed):
        folder.mkdir(parents=True, exist_ok=True)  # the daemon makes them at start
    journal = Journal(config.state_dir)
    journal.open()
    records = []
    for name in names:
        (config.inbox / name).write_bytes(name.encode())
        identity = safefs.Identity.of(os.lstat(config.inbox / name))
        records.append(journal.begin(PurePosixPath(name), identity))
    return journal, records


def _text(name: str) -> OcrResult:
    return OcrResult(pages=(f"text of {name}",), evaluation_mode=False)


def test_two_commits_wanting_one_sidecar_name_both_keep_their_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scan.png and scan.jpg both want scan.txt. Each thread stops just before its reservation
    until the other arrives too (or 1 s passes): unserialised, both would reserve and write the
    same name and one text would be lost."""
    config = make_config(tmp_path)
    journal, records = _jobs(config, ["scan.png", "scan.jpg"])
    both_chose = threading.Barrier(2)
    reserve = journal.reserve

    def reserve_when_both_chose(*args: Any, **kwargs: Any) -> bool:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_chose.wait(timeout=1.0)
        return reserve(*args, **kwargs)

    monkeypatch.setattr(journal, "reserve", reserve_when_both_chose)
    outputs = Outputs(config, journal)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(outputs.commit_success, r, _text(r.rel.name)) for r in records]
        sidecars = [str(f.result(timeout=30)) for f in futures]

    assert sorted(sidecars) == ["scan (2).txt", "scan.txt"]
    texts = sorted((config.outbox / s).read_text() for s in sidecars)
    assert texts == ["text of scan.jpg", "text of scan.png"]
    assert files_under(config.processed) == ["scan.jpg", "scan.png"]
    journal.close()


def test_a_sidecar_name_taken_by_someone_else_before_publishing_moves_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program creates scan.txt between our choice of the name and our link(): its file
    stays as it is and ours becomes scan (2).txt (it used to be skipped as if it were ours)."""
    config = make_config(tmp_path)
    journal, [record] = _jobs(config, ["scan.png"])
    reserve = journal.reserve

    def reserve_then_lose_the_race(*args: Any, **kwargs: Any) -> bool:
        reserved = reserve(*args, **kwargs)
        target = config.outbox / "scan.txt"
        if not target.exists():
            config.outbox.mkdir(parents=True, exist_ok=True)
            target.write_text("someone else's")
        return reserved

    monkeypatch.setattr(journal, "reserve", reserve_then_lose_the_race)
    sidecar = Outputs(config, journal).commit_success(record, _text("scan.png"))

    assert str(sidecar) == "scan (2).txt"
    assert (config.outbox / "scan.txt").read_text() == "someone else's"
    assert (config.outbox / "scan (2).txt").read_text() == "text of scan.png"
    assert files_under(config.inbox) == []
    journal.close()


def test_two_moves_across_filesystems_at_once_each_keep_their_own_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """processed/ on another filesystem: each move copies through a temp file there. The second
    input's whole commit runs just before the first publishes its copy; with one shared temp
    name the first would find its copy gone, or publish the other's bytes."""
    config = make_config(tmp_path)
    journal, records = _jobs(config, ["a.png", "b.png"])
    outputs = Outputs(config, journal)
    publish = safefs._publish
    interleaved: list[str] = []

    def publish_after_the_other_move(dfd: int, tmp: str, name: str) -> None:
        if tmp.startswith(safefs.TEMP_PREFIX + "move") and not interleaved:
            interleaved.append(name)
            outputs.commit_success(records[1], _text("b.png"))
        publish(dfd, tmp, name)

    monkeypatch.setattr(safefs, "_publish", publish_after_the_other_move)
    with tmpfs(config.processed, "1m"):
        outputs.commit_success(records[0], _text("a.png"))

        assert interleaved == ["a.png"]
        assert (config.processed / "a.png").read_bytes() == b"a.png"
        assert (config.processed / "b.png").read_bytes() == b"b.png"
        assert sorted(p.name for p in config.processed.iterdir()) == ["a.png", "b.png"]
    journal.close()


def test_a_second_result_for_a_committed_job_writes_nothing(tmp_path: Path) -> None:
    """The journal's reservation is conditional on the job being active: a duplicate result
    (say, from a worker host that was cut off and came back) cannot start a second outcome."""
    config = make_config(tmp_path)
    journal, [record] = _jobs(config, ["scan.png"])
    outputs = Outputs(config, journal)
    assert str(outputs.commit_success(record, _text("scan.png"))) == "scan.txt"

    with pytest.raises(AlreadyFinished):
        outputs.commit_success(record, _text("scan.png, again"))
    assert not journal.reserve(record.id, "done", PurePosixPath("x.txt"), None)
    assert files_under(config.outbox) == ["scan.txt"]
    assert (config.outbox / "scan.txt").read_text() == "text of scan.png"
    journal.close()
