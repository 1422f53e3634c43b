"""Injected faults: after each, no input is lost, none is processed twice, and the daemon either
recovers by itself or exits non-zero (so systemd restarts it) — never alive but blind.

Already covered elsewhere and not repeated here: a worker that segfaults, aborts, hangs or is
OOM-killed (test_daemon_flow.test_crash_and_hang_are_retried_then_failed_others_done), SIGHUP
with a broken config (test_daemon_process.test_sighup_with_broken_config_keeps_the_old_one), an
outcome interrupted at each commit step and a corrupt or deleted journal (test_recovery).

The daemon runs as a subprocess with the engine double. Permission faults need a daemon that
permissions apply to: tests run as root, so those daemons run as ``nobody`` under the system
Python 3.11 (the venv's interpreter lives under /root, which ``nobody`` cannot enter), with the
venv's site-packages on PYTHONPATH. Mount faults mount a small tmpfs (root only; skipped if the
mount fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from ocr_daemon import safefs
from ocr_daemon.errors import WorkerCrashed
from ocr_daemon.journal import Journal
from ocr_daemon.pool import LocalSlot
from tests.fault_engine import BROKEN_MARKER
from tests.harness import (
    REPO,
    DaemonProcess,
    files_under,
    make_config,
    run_once,
    start,
    subprocess_env,
    wait_for,
    write_config,
)
from tests.test_hostile_inputs import InThread

pytestmark = pytest.mark.slow
NOBODY = 65534
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
FOLDERS = ("inbox", "outbox", "processed", "failed", "state")


def worker_pids(daemon: DaemonProcess, *, busy: bool | None = None) -> list[int]:
    workers = daemon.status().get("workers") or []
    assert isinstance(workers, list)
    return [w["pid"] for w in workers if w["pid"] and (busy is None or w["busy"] == busy)]


def drop(root: Path, name: str, data: bytes = b"scan") -> None:
    tmp = root / "inbox" / f".{name}.part"
    tmp.write_bytes(data)
    os.rename(tmp, root / "inbox" / name)


def sidecar(root: Path, name: str) -> Path:
    return root / "outbox" / Path(name).with_suffix(".txt")


# -- workers killed or frozen from outside -------------------------------------------------


def test_idle_workers_killed_by_pid_are_replaced_on_the_next_job(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    daemon = start(daemon_factory, write_config(tmp_path))
    daemon.wait_running()
    pids = wait_for(lambda: len(worker_pids(daemon, busy=False)) == 2 and worker_pids(daemon))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    drop(tmp_path, "one.png")
    drop(tmp_path, "two.png")

    wait_for(
        lambda: sidecar(tmp_path, "one.png").exists() and sidecar(tmp_path, "two.png").exists()
    )
    assert not daemon.events("file.retry"), "an idle worker's death costs no attempt"
    replaced = daemon.events("worker.replacing")
    assert {e["reason"] for e in replaced} == {"restarted"} and len(replaced) >= 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert files_under(tmp_path / "outbox") == ["one.txt", "two.txt"]


def test_busy_worker_killed_by_pid_is_retried_once(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    daemon = start(daemon_factory, write_config(tmp_path, settle_seconds=0.2))
    daemon.wait_running()
    drop(tmp_path, "slow-victim.png")
    busy = wait_for(lambda: worker_pids(daemon, busy=True), interval=0.02)
    os.kill(busy[0], signal.SIGKILL)

    wait_for(sidecar(tmp_path, "slow-victim.png").exists)
    retry = daemon.events("file.retry")
    assert [(e["reason"], e["attempt"]) for e in retry] == [("worker_crashed", 1)]
    assert "SIGKILL" in str(retry[0]["error"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert files_under(tmp_path / "outbox") == ["slow-victim.txt"]
    assert files_under(tmp_path / "processed") == ["slow-victim.png"]


def test_frozen_worker_sigstop_times_out_and_is_replaced(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2, ocr_timeout_seconds=5)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    drop(tmp_path, "slow-frozen.png")
    busy = wait_for(lambda: worker_pids(daemon, busy=True), interval=0.02)
    os.kill(busy[0], signal.SIGSTOP)

    wait_for(sidecar(tmp_path, "slow-frozen.png").exists, timeout=60)
    assert [e["reason"] for e in daemon.events("file.retry")] == ["timeout"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert files_under(tmp_path / "outbox") == ["slow-frozen.txt"]


def test_engine_that_cannot_restart_makes_the_daemon_exit_69(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2, engine="tests.fault_engine:FaultEngine")
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    (tmp_path / "state" / BROKEN_MARKER).touch()
    drop(tmp_path, "oom-kills-its-worker.png")

    assert daemon.wait(timeout=60) == 69
    fatal = daemon.events("daemon.fatal")
    assert fatal and fatal[0]["reason"] == "engine_unavailable"
    assert files_under(tmp_path / "inbox") == ["oom-kills-its-worker.png"], "the input stays"


# -- SIGKILL of the daemon, many times -----------------------------------------------------


def check_exactly_once(root: Path, inputs: dict[str, bytes]) -> None:
    """The state after any crash: nothing lost, nothing doubled, every outcome matches its input.

    A kill between publishing and disposal may leave the input in the inbox beside its sidecar,
    or (between link and unlink) in both inbox and processed as one inode: the next start
    finishes those from the journal. Hidden temp files are removed at the next start too."""

    def visible(folder: str) -> set[str]:
        return {n for n in files_under(root / folder) if not Path(n).name.startswith(".")}

    inbox, processed, outbox = visible("inbox"), visible("processed"), visible("outbox")
    assert inbox | processed == set(inputs), f"lost: {set(inputs) - inbox - processed}"
    for name in inbox & processed:
        assert (root / "inbox" / name).stat().st_ino == (root / "processed" / name).stat().st_ino
    assert not [n for n in outbox | processed if " (" in n], "an input was processed twice"
    for name in processed:
        assert (root / "processed" / name).read_bytes() == inputs[name]
        assert Path(name).with_suffix(".txt").as_posix() in outbox, f"{name} moved, no sidecar"
    for name in outbox:
        source = Path(name).with_suffix(".png").as_posix()
        text = (root / "outbox" / name).read_text()
        assert text == f"text of {source} ({len(inputs[source])} bytes)"
    assert files_under(root / "failed") == []


def test_sigkill_at_random_points_20_rounds_exactly_once_after_each(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, settle_seconds=0.1)
    rng = random.Random(20)
    inputs: dict[str, bytes] = {}

    def add(prefix: str, count: int) -> None:
        for i in range(count):
            name = f"{prefix}-{i:03}.png"
            inputs[name] = f"{name}:{'x' * rng.randrange(50)}".encode()
            (tmp_path / "inbox" / name).write_bytes(inputs[name])

    add("start", 100)
    for round_no in range(20):
        add(f"r{round_no:02}", 10)
        daemon = start(daemon_factory, config)
        daemon.wait_running()
        rng_delay = rng.uniform(0.0, 0.5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.proc.wait(timeout=rng_delay)  # a random point of the batch
        daemon.signal(signal.SIGKILL)
        daemon.wait()
        check_exactly_once(tmp_path, inputs)

    final = start(daemon_factory, config, command="once")
    assert final.wait(timeout=120) == 0
    check_exactly_once(tmp_path, inputs)
    assert files_under(tmp_path / "inbox") == []
    assert len(files_under(tmp_path / "outbox")) == len(inputs) == 300


# -- full and unwritable outputs -------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem holding `folder`; returns the filler file."""
    filler = folder / ".filler"
    with contextlib.suppress(OSError), open(filler, "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
    return filler


def test_outbox_full_then_space_freed_completes_the_file(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2)
    with tmpfs(tmp_path / "outbox", "64k") as outbox:
        filler = fill(outbox)
        daemon = start(daemon_factory, config)
        daemon.wait_running()
        drop(tmp_path, "scan.png")
        retry = wait_for(lambda: daemon.events("file.retry"))
        assert retry[0]["reason"] == "output_unwritable"
        assert "No space left on device" in str(retry[0]["error"])
        assert files_under(tmp_path / "inbox") == ["scan.png"], "the input waits in the inbox"

        filler.unlink()
        wait_for(sidecar(tmp_path, "scan.png").exists, timeout=60)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        assert files_under(outbox) == ["scan.txt"], "no temp file left behind"
    assert files_under(tmp_path / "processed") == ["scan.png"]


@pytest.fixture
def world_root() -> Iterator[Path]:
    """A folder `nobody` can reach (pytest's tmp_path is private to root)."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"{SYSTEM_PYTHON} not found: needed to run the daemon as nobody")
    closed = next((d for d in (REPO, *REPO.parents) if not d.stat().st_mode & 0o001), None)
    if closed is not None:  # the code and its venv live in the checkout
        pytest.skip(f"nobody cannot enter {closed} (mode {closed.stat().st_mode & 0o777:o}), which "
                    f"holds the checkout {REPO}: clone into a world-searchable folder")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="ocr-daemon-faults-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class UnprivilegedDaemon(DaemonProcess):
    """`ocr-daemon run` as uid/gid nobody, so file permissions apply to it."""

    def __init__(self, config: Path) -> None:  # not super().__init__: that starts as root
        self.root = config.parent
        self.log = open(self.root / "daemon.log", "ab")  # noqa: SIM115
        env = subprocess_env()
        site = [p for p in sys.path if p.endswith("site-packages")]
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *site])
        tessdata = Path(sys.prefix) / "native" / "tessdata"  # found via sys.prefix otherwise
        if tessdata.is_dir():
            env.setdefault("TESSDATA_PREFIX", str(tessdata))
        self.proc = subprocess.Popen(
            [str(SYSTEM_PYTHON), "-m", "ocr_daemon", "run", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
            user=NOBODY, group=NOBODY, extra_groups=[],
        )  # fmt: skip


def give_to_nobody(root: Path, *folders: str) -> None:
    for name in folders:
        (root / name).mkdir(exist_ok=True)
        os.chown(root / name, NOBODY, NOBODY)


@pytest.mark.parametrize("folder", ["outbox", "failed"])
def test_unwritable_output_folder_then_fixed_completes_the_file(
    world_root: Path, daemon_factory: list[DaemonProcess], folder: str
) -> None:
    config = write_config(world_root, settle_seconds=0.2)
    give_to_nobody(world_root, *(f for f in FOLDERS if f != folder))
    (world_root / folder).mkdir(mode=0o755)  # root's: nobody may not write here
    daemon = UnprivilegedDaemon(config)
    daemon_factory.append(daemon)
    daemon.wait_running()
    assert daemon.status().get("state") == "running"
    name = "scan.png" if folder == "outbox" else "corrupt.png"
    drop(world_root, name)
    retry = wait_for(lambda: daemon.events("file.retry"))
    assert retry[0]["reason"] == "output_unwritable"
    assert "Permission denied" in str(retry[0]["error"])
    assert files_under(world_root / "inbox") == [name]

    os.chown(world_root / folder, NOBODY, NOBODY)
    if folder == "outbox":
        wait_for(sidecar(world_root, name).exists, timeout=60)
    else:
        wait_for((world_root / "failed" / f"{name}.error.json").exists, timeout=60)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert files_under(world_root / "inbox") == []
    assert len(files_under(world_root / folder)) == (1 if folder == "outbox" else 2)
    owner = (world_root / folder / files_under(world_root / folder)[0]).stat().st_uid
    assert owner == NOBODY


# -- the inbox goes away ---------------------------------------------------------------------


def test_inbox_deleted_and_recreated_while_running(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    daemon = start(daemon_factory, write_config(tmp_path, settle_seconds=0.2))
    daemon.wait_running()
    drop(tmp_path, "before.png")
    wait_for(sidecar(tmp_path, "before.png").exists)

    shutil.rmtree(tmp_path / "inbox")
    wait_for(lambda: daemon.events("inbox.missing"), timeout=30)
    (tmp_path / "inbox").mkdir()
    drop(tmp_path, "after.png")

    wait_for(sidecar(tmp_path, "after.png").exists, timeout=30)
    assert daemon.events("inbox.back")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_inbox_recreated_before_the_watcher_notices(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    """Deleted and recreated at once, with a file already in the new folder."""
    daemon = start(daemon_factory, write_config(tmp_path, settle_seconds=0.2))
    daemon.wait_running()
    fresh = tmp_path / "inbox.new"
    fresh.mkdir()
    (fresh / "arrived-with-the-folder.png").write_bytes(b"scan")
    shutil.rmtree(tmp_path / "inbox")
    os.rename(fresh, tmp_path / "inbox")

    wait_for(sidecar(tmp_path, "arrived-with-the-folder.png").exists, timeout=30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_inbox_tmpfs_unmounted_and_remounted_while_running(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2)
    inbox = tmp_path / "inbox"
    with tmpfs(inbox, "1m"):
        daemon = start(daemon_factory, config)
        daemon.wait_running()
        drop(tmp_path, "on-first-mount.png")
        wait_for(sidecar(tmp_path, "on-first-mount.png").exists)
    # unmounted: the daemon now sees the empty folder underneath
    drop(tmp_path, "on-bare-folder.png")
    wait_for(sidecar(tmp_path, "on-bare-folder.png").exists, timeout=30)
    with tmpfs(inbox, "1m"):
        drop(tmp_path, "on-second-mount.png")
        wait_for(sidecar(tmp_path, "on-second-mount.png").exists, timeout=30)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert files_under(tmp_path / "processed") == [
        "on-bare-folder.png", "on-first-mount.png", "on-second-mount.png",
    ]  # fmt: skip


# -- the state directory ---------------------------------------------------------------------


def test_state_dir_full_makes_the_daemon_exit_nonzero_losing_nothing(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2)
    with tmpfs(tmp_path / "state", "1m") as state:
        daemon = start(daemon_factory, config)
        daemon.wait_running()
        fill(state)
        for i in range(30):
            drop(tmp_path, f"f{i:02}.png")
        code = daemon.wait(timeout=60)
        assert code != 0, "a daemon that cannot journal must not keep running"
    done = set(files_under(tmp_path / "processed"))
    assert done | set(files_under(tmp_path / "inbox")) == {f"f{i:02}.png" for i in range(30)}
    assert len(files_under(tmp_path / "outbox")) == len(done)


@pytest.mark.parametrize("damage", ["garbage-wal", "zero-length", "directory", "truncated-half"])
def test_damaged_journal_between_runs(tmp_path: Path, damage: str) -> None:
    config = make_config(tmp_path)
    for i in range(40):
        (config.inbox / f"first-{i:02}.png").write_bytes(b"1" * (i + 1))
    assert run_once(config) == 0
    journal = config.state_dir / Journal.FILE
    if damage == "garbage-wal":
        (config.state_dir / f"{Journal.FILE}-wal").write_bytes(os.urandom(64 * 1024))
    elif damage == "zero-length":
        journal.write_bytes(b"")
    elif damage == "directory":
        journal.unlink()
        journal.mkdir()
    else:
        data = journal.read_bytes()
        journal.write_bytes(data[: len(data) // 2])
    for i in range(10):
        (config.inbox / f"second-{i:02}.png").write_bytes(b"2")

    assert run_once(config) == 0
    outbox = files_under(config.outbox)
    assert len(outbox) == 50 and not [n for n in outbox if " (" in n]
    assert files_under(config.inbox) == []


def test_second_daemon_is_refused_with_75_and_leaves_the_first_alone(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path)
    first = start(daemon_factory, config)
    first.wait_running()
    second = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "run", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=False,
    )  # fmt: skip
    assert second.returncode == 75
    assert f"another ocr-daemon (pid {first.proc.pid}) is using this state directory" in (
        second.stderr
    )
    assert first.status().get("state") == "running", "the refused daemon rewrote status.json"
    drop(tmp_path, "still-served.png")
    wait_for(sidecar(tmp_path, "still-served.png").exists)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0


def test_status_file_unwritable_mid_run_does_not_blind_the_daemon(tmp_path: Path) -> None:
    """status.json cannot be replaced any more: once mode must still notice it is done."""
    config = make_config(tmp_path)
    for name in ("slow-a.png", "slow-b.png", "c.png"):
        (config.inbox / name).write_bytes(b"scan")
    with InThread(config) as run:
        wait_for(lambda: run.busy() >= 1, timeout=60, interval=0.02)
        (config.state_dir / ".status.json.tmp").mkdir()  # every later write fails
    assert run.code == 0
    assert files_under(config.outbox) == ["c.txt", "slow-a.txt", "slow-b.txt"]


def test_crash_between_link_and_unlink_of_the_input_finishes_once(tmp_path: Path) -> None:
    """SIGKILL after the input was linked into processed/ but before its inbox name was removed
    (the one step test_recovery does not stop at)."""
    config = make_config(tmp_path)
    src = config.inbox / "doc.png"
    src.write_bytes(b"abc")
    journal = Journal(config.state_dir)
    journal.open()
    record = journal.begin(PurePosixPath("doc.png"), safefs.Identity.of(os.lstat(src)))
    journal.reserve(record.id, "done", PurePosixPath("doc.txt"), PurePosixPath("doc.png"))
    config.outbox.mkdir()
    safefs.write_new(config.outbox, PurePosixPath("doc.txt"), b"first result", 0o640, "x")
    config.processed.mkdir()
    os.link(src, config.processed / "doc.png")
    journal.close()

    assert run_once(config) == 0

    assert files_under(config.inbox) == []
    assert files_under(config.processed) == ["doc.png"]
    assert files_under(config.outbox) == ["doc.txt"]
    assert (config.outbox / "doc.txt").read_text() == "first result"


def test_input_move_blocked_then_fixed_leaves_exactly_one_sidecar(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    """The sidecar is published, then moving the input fails: the retry finishes that outcome
    (the move) instead of committing anew under the next free sidecar name."""
    config = write_config(tmp_path, settle_seconds=0.2, retry_backoff_seconds=0.2)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    processed = tmp_path / "processed"
    shutil.rmtree(processed, ignore_errors=True)
    processed.write_text("a file where the processed folder should be")
    drop(tmp_path, "scan.png")
    retry = wait_for(lambda: daemon.events("file.retry"))
    assert retry[0]["reason"] == "output_unwritable"
    wait_for(lambda: len(daemon.events("file.retry")) >= 3)
    assert files_under(tmp_path / "inbox") == ["scan.png"], "the input waits in the inbox"

    processed.unlink()
    processed.mkdir()
    wait_for((processed / "scan.png").exists, timeout=60)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert files_under(tmp_path / "outbox") == ["scan.txt"], "one sidecar, none numbered"
    assert files_under(tmp_path / "inbox") == []


def test_engine_dead_before_its_job_is_sent_is_a_crash_not_a_dead_dispatcher(
    tmp_path: Path,
) -> None:
    """The engine is SIGKILLed after the slot checked it was alive but before the job went
    down its pipe, so the send fails (EPIPE). That job is a worker crash, retried like any
    other; it used to escape as BrokenPipeError and stop the whole daemon (`daemon.fatal`:
    "dispatch-0 died on ...", seen under test_event_loop's engine kills)."""
    slot = LocalSlot(0, make_config(tmp_path))

    async def scenario() -> BaseException:
        await slot.start()
        assert slot.process is not None
        slot.process.kill()
        stat = Path(f"/proc/{slot.process.pid}/stat")
        wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", timeout=10)
        slot.alive = lambda: True  # type: ignore[method-assign]  # as it was a moment ago
        try:
            await slot.run(1, tmp_path / "inbox" / "a.png", timeout_s=10)
        except Exception as exc:  # which one is the point
            return exc
        finally:
            await slot.stop(grace_s=0)
        raise AssertionError("the job ran on a dead engine")

    error = asyncio.run(scenario())
    assert isinstance(error, WorkerCrashed), repr(error)
    assert "SIGKILL" in str(error)
