"""Nothing holds the daemon's event loop: under load no callback spends over 50 ms of CPU on it,
and the watchdog ping keeps its 1 s rhythm.

The daemon runs as a subprocess with ``OCR_DAEMON_LOOP_DEBUG=1`` (asyncio's debug mode; each
callback over 50 ms of wall time is logged as ``loop.slow_callback``, with the CPU time it spent:
the test judges that, since on a shared 2-core machine the wall time also counts the waits for a
core that other tests cause) under a fake service manager: a datagram
socket as ``NOTIFY_SOCKET`` and a 2 s ``WATCHDOG_USEC``, so it pings every second. The load is the
engine double's (this tests the loop, not OCR): 1,000 small files, engine processes SIGKILLed
mid-batch, a folder of 10,000 files moved into the inbox in one rename.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ocr_daemon.errors import WorkerTimeout
from ocr_daemon.pool import LocalSlot
from tests.harness import DaemonProcess, files_under, make_config, start, wait_for, write_config

pytestmark = pytest.mark.serial  # it measures the loop: alone, not beside other tests
WATCHDOG_USEC = 2_000_000  # the daemon pings every 1 s
RHYTHM_SLACK_SECONDS = 0.2
SLOW_CALLBACK_SECONDS = 0.05


class FakeServiceManager:
    """The service manager's end of sd_notify: every datagram, with its arrival time."""

    def __init__(self, address: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(address))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode(errors="replace")))

    def pings(self) -> list[float]:
        return [at for at, message in self.received if message == "WATCHDOG=1"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    found = FakeServiceManager(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("OCR_DAEMON_LOOP_DEBUG", "1")
    yield found
    found.close()


def worker_pids(daemon: DaemonProcess) -> list[int]:
    workers = daemon.status().get("workers") or []
    assert isinstance(workers, list)
    return [w["pid"] for w in workers if isinstance(w.get("pid"), int)]


def kill_an_engine(daemon: DaemonProcess) -> None:
    pid = wait_for(lambda: worker_pids(daemon), timeout=30)[0]
    os.kill(pid, signal.SIGKILL)


def make_folder(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"m{i:05}.png").write_bytes(b"m")
    return root


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_no_callback_holds_the_loop_and_the_watchdog_keeps_rhythm(
    tmp_path: Path, daemon_factory: list[DaemonProcess], manager: FakeServiceManager
) -> None:
    config = write_config(tmp_path, settle_seconds=0.2, workers=2, max_attempts=5)
    moved = make_folder(tmp_path / "staging" / "moved-in", 10_000)  # same filesystem: one rename
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    inbox = tmp_path / "inbox"
    for i in range(1000):
        (inbox / f"small-{i:04}.png").write_bytes(b"s" * (i % 50 + 1))
    outbox = tmp_path / "outbox"
    for done_at in (100, 300, 600):  # polled gently: the test must not starve the daemon's CPU
        wait_for(lambda n=done_at: len(files_under(outbox)) >= n, timeout=120, interval=0.2)
        kill_an_engine(daemon)
    moved.rename(inbox / "moved-in")
    wait_for(lambda: len(files_under(outbox)) == 11_000, timeout=600, interval=1)
    time.sleep(3)  # idle for a few pings, too
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    # the loop's own CPU time per callback: wall time on this shared 2-core machine also counts
    # the time the loop's thread waited for a core while other tests ran
    slow = [(e["cpu_seconds"], e["callback"], e["then_waits_at"][-3:])
            for e in daemon.events("loop.slow_callback")
            if float(e["cpu_seconds"]) > SLOW_CALLBACK_SECONDS]  # fmt: skip
    pings = manager.pings()
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(pings)]
    late = [g for g in gaps if abs(g - WATCHDOG_USEC / 2e6) > RHYTHM_SLACK_SECONDS]
    assert len(daemon.events("worker.replacing")) >= 3, "the engine kills were noticed"
    assert len(gaps) > 10, manager.received[:20]
    assert (slow, late) == ([], []), (
        "callbacks held the event loop:\n"
        + "".join(f"{s:.3f} s of CPU {c}\n    then at {w}\n" for s, c, w in sorted(slow)[::-1][:20])
        + f"watchdog pings out of their 1 s rhythm: {late} (longest gap {max(gaps)} s)"
    )


def hold_the_exit_pipe(process: Any) -> int:
    """Open, as a second writer, the pipe whose closing tells the daemon that `process` has
    exited, as a child the engine left behind would hold it: the process then dies at once on
    SIGKILL, but the daemon sees it exit only after its join times out (5 s)."""
    inode = os.fstat(process.sentinel).st_ino
    fds = Path(f"/proc/{process.pid}/fd")
    write_end = next(fd for fd in fds.iterdir() if os.readlink(fd) == f"pipe:[{inode}]")
    return os.open(write_end, os.O_WRONLY | os.O_CLOEXEC)


async def longest_stall_while(work: Any) -> float:
    """Run `work`; the longest the loop went without running a 10 ms ticker meanwhile."""
    gaps, last = [0.0], [time.monotonic()]

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - last[0])
            last[0] = time.monotonic()

    ticking = asyncio.create_task(ticker())
    try:
        await work
    finally:
        ticking.cancel()
    return max(*gaps, time.monotonic() - last[0])  # a stall at the very end counts too


def test_killing_an_engine_that_is_slow_to_be_reaped_never_stalls_the_loop(
    tmp_path: Path,
) -> None:
    """A hung job is killed at its timeout; reaping the killed engine takes 5 s here (its exit
    pipe is held open), and all that time the loop keeps running."""
    slot = LocalSlot(0, make_config(tmp_path))

    async def scenario() -> tuple[float, BaseException | None]:
        await slot.start()
        held = hold_the_exit_pipe(slot.process)
        try:
            job = slot.run(1, tmp_path / "hang.png", timeout_s=0.5)
            outcome: list[BaseException] = []

            async def run() -> None:
                try:
                    await job
                except WorkerTimeout as exc:
                    outcome.append(exc)

            stall = await longest_stall_while(run())
        finally:
            os.close(held)
            await slot.stop(grace_s=0)
        return stall, outcome[0] if outcome else None

    (tmp_path / "inbox" / "hang.png").write_bytes(b"h")
    stall, error = asyncio.run(scenario())
    assert isinstance(error, WorkerTimeout)
    assert stall < 0.1, f"the loop stood still for {stall:.2f} s while the engine was reaped"
