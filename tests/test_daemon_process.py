"""The daemon as a real process: files dropped while it runs, real signals, SIGKILL and restart.

These use the engine double (instant, or `slow`/`hang` by name) so that timing is under the
test's control; `test_real_engine.py` covers the same paths with Aspose.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import files_under, start, subprocess_env, wait_for, write_config

pytestmark = pytest.mark.slow


def test_files_dropped_while_running_every_way(tmp_path: Path, daemon_factory: list) -> None:
    config = write_config(tmp_path)
    inbox = tmp_path / "inbox"
    (inbox / "before.png").write_bytes(b"present at start")
    daemon = start(daemon_factory, config)
    daemon.wait_running()

    # write-then-rename, from a hidden temp name in the inbox itself
    (inbox / ".renamed.png.tmp").write_bytes(b"x" * 100)
    os.rename(inbox / ".renamed.png.tmp", inbox / "renamed.png")
    # a folder created after start, with a file in it
    (inbox / "new/deeper").mkdir(parents=True)
    (inbox / "new/deeper/nested.png").write_bytes(b"nested")
    # slow in-place write: 8 chunks, 0.3 s apart (longer than settle would be without activity)
    writer = threading.Thread(target=_slow_write, args=(inbox / "slow-write.png", 8, 0.3))
    writer.start()
    # a burst
    for i in range(200):
        (inbox / f"burst-{i:03}.png").write_bytes(b"b" * (i + 1))
    writer.join()

    expected = 204
    wait_for(lambda: len(files_under(tmp_path / "outbox")) >= expected, timeout=120)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    outbox = files_under(tmp_path / "outbox")
    assert len(outbox) == expected
    assert (tmp_path / "outbox/slow-write.txt").read_text() == "text of slow-write.png (800 bytes)"
    assert (tmp_path / "outbox/new/deeper/nested.txt").exists()
    assert (tmp_path / "outbox/burst-199.txt").read_text() == "text of burst-199.png (200 bytes)"
    assert files_under(inbox) == []
    done = [e for e in daemon.events() if e["event"] == "file.done"]
    assert len(done) == expected and len({e["path"] for e in done}) == expected


def _slow_write(path: Path, chunks: int, pause: float) -> None:
    with open(path, "wb") as fh:
        for _ in range(chunks):
            fh.write(b"s" * 100)
            fh.flush()
            time.sleep(pause)


def test_sigterm_during_a_job_lets_it_finish(tmp_path: Path, daemon_factory: list) -> None:
    config = write_config(tmp_path, settle_seconds=0.2)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    (tmp_path / "inbox/slow.png").write_bytes(b"takes two seconds")
    wait_for(lambda: daemon.status().get("in_flight") == 1, timeout=30, interval=0.02)

    daemon.signal(signal.SIGTERM)

    assert daemon.wait() == 0
    assert (tmp_path / "outbox/slow.txt").read_text().startswith("text of slow.png")
    assert any(e["event"] == "daemon.stopped" and e["abandoned"] == 0 for e in daemon.events())


def test_second_signal_stops_at_once_and_loses_nothing(
    tmp_path: Path, daemon_factory: list
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2, shutdown_timeout_seconds=120)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    (tmp_path / "inbox/hang.png").write_bytes(b"never returns")
    wait_for(lambda: daemon.status().get("in_flight") == 1, timeout=30, interval=0.02)

    daemon.signal(signal.SIGTERM)
    time.sleep(0.5)
    t0 = time.monotonic()
    daemon.signal(signal.SIGINT)

    assert daemon.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 10
    assert files_under(tmp_path / "inbox") == ["hang.png"]
    assert files_under(tmp_path / "outbox") == []


def test_sigkill_at_random_points_then_restart_gives_exactly_one_outcome_each(
    tmp_path: Path, daemon_factory: list
) -> None:
    config = write_config(tmp_path, settle_seconds=0.1, workers=2)
    inputs = [f"f{i:03}.png" for i in range(120)]
    for name in inputs:
        (tmp_path / "inbox" / name).write_bytes(name.encode())
    rng = random.Random(1234)
    for _round in range(6):
        daemon = start(daemon_factory, config)
        daemon.wait_running()
        time.sleep(rng.uniform(0.0, 0.6))
        daemon.signal(signal.SIGKILL)
        daemon.wait()

    final = start(daemon_factory, config, command="once")
    assert final.wait(timeout=120) == 0

    outbox = files_under(tmp_path / "outbox")
    assert outbox == sorted(n.replace(".png", ".txt") for n in inputs), "one sidecar per input"
    assert files_under(tmp_path / "processed") == inputs
    assert files_under(tmp_path / "inbox") == []
    for name in inputs:
        sidecar = (tmp_path / "outbox" / name.replace(".png", ".txt")).read_text()
        assert sidecar == f"text of {name} ({len(name)} bytes)"


def test_sighup_with_broken_config_keeps_the_old_one(tmp_path: Path, daemon_factory: list) -> None:
    config = write_config(tmp_path)
    daemon = start(daemon_factory, config)
    daemon.wait_running()

    config.write_text(config.read_text() + "no_such_key = 1\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "config.reload_failed" for e in daemon.events()))
    (tmp_path / "inbox/after.png").write_bytes(b"still working")
    wait_for((tmp_path / "outbox/after.txt").exists)

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    failed = next(e for e in daemon.events() if e["event"] == "config.reload_failed")
    assert "no_such_key" in str(failed["error"])


def test_bad_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, settle_secnds=1)
    proc = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "run", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 78
    assert "settle_secnds" in proc.stderr and str(config) in proc.stderr


def test_outbox_inside_inbox_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, outbox="inbox/out")
    proc = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "run", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 78
    assert "inside the inbox" in proc.stderr


def test_sigusr1_dumps_threads_and_tasks_and_changes_nothing(
    tmp_path: Path, daemon_factory: list
) -> None:
    """For a daemon that stopped making progress: `systemctl kill -s USR1` reaches every process
    of the service; the daemon writes its stacks, its workers ignore it, and work goes on."""
    config = write_config(tmp_path, settle_seconds=0.2)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    (tmp_path / "inbox/slow.png").write_bytes(b"takes two seconds")
    wait_for(lambda: daemon.status().get("in_flight") == 1, timeout=30, interval=0.02)
    workers = sorted(int(w["pid"]) for w in daemon.status()["workers"])  # type: ignore[union-attr]

    for pid in [daemon.proc.pid, *workers]:
        os.kill(pid, signal.SIGUSR1)
    dumped = wait_for(lambda: daemon.events("process.tasks"))

    tasks = dumped[0]["tasks"]
    assert {"tick", "dispatch-0", "dispatch-1", "settle"} <= set(tasks), tasks
    assert any("dispatch.py" in frame for frame in tasks["dispatch-0"] + tasks["dispatch-1"])
    log_text = (tmp_path / "daemon.log").read_text()
    assert "Thread 0x" in log_text and "(most recent call first)" in log_text
    wait_for((tmp_path / "outbox/slow.txt").exists, timeout=30)
    assert sorted(int(w["pid"]) for w in daemon.status()["workers"]) == workers  # type: ignore[union-attr]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
