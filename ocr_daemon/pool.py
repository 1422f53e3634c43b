"""Worker processes: spawn, warm up, dispatch one job at a time, time out, replace, recycle.

Each `LocalSlot` owns at most one spawned worker process (see `worker.py`) and runs one job at a
time on it. A worker that dies while holding a job (segfault, abort, OOM kill) raises
`WorkerCrashed` for that job only; one that runs past the timeout is SIGKILLed (a recognition cannot
be interrupted any other way) and raises `WorkerTimeout`. Either way the slot starts a fresh worker
for its next job. Workers are recycled after ``max_jobs_per_worker`` jobs to bound memory."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ocr_daemon import worker
from ocr_daemon.config import Config
from ocr_daemon.engines.base import EngineInfo, EngineSettings
from ocr_daemon.errors import OcrDaemonError, WorkerCrashed, WorkerTimeout
from ocr_daemon.formats import TXT_ONLY, Recognized, Rendering
from ocr_daemon.systemd import MAIN_PROCESS_VARIABLES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ocr_daemon.slots import Slot

log = structlog.get_logger()
WARM_UP_TRIES = 3  # an engine process killed while warming up at start is started again
_SPAWN = multiprocessing.get_context("spawn")
REAP_SECONDS = 5.0  # how long a killed or exiting worker may take to be seen gone


def choose_worker_count(config: Config) -> tuple[int, str]:
    """`config.workers`, or (when 0) one per CPU capped by memory; returns it and why."""
    if config.cluster.url and not config.cluster.local_workers:
        return 0, "cluster.local_workers = false: every job goes to the worker hosts"
    if config.workers > 0:
        return config.workers, "configured"
    cpus = len(os.sched_getaffinity(0))
    memory_mb = available_memory_mb()
    by_memory = memory_mb // config.worker_memory_mb if memory_mb else cpus
    count = max(1, min(cpus, by_memory))
    why = f"{cpus} CPUs, {memory_mb} MB available at {config.worker_memory_mb} MB per worker"
    if by_memory < 1:
        why += ": less memory than one worker needs, running one anyway"
    return count, why


def available_memory_mb() -> int:
    """MemAvailable, capped by this cgroup's memory.max (a systemd MemoryMax=) if lower."""
    avail = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) // 1024
    limit = _cgroup_limit_mb()
    return min(avail, limit) if limit else avail


def _cgroup_limit_mb() -> int:
    with contextlib.suppress(OSError, ValueError):
        cgroup = Path("/proc/self/cgroup").read_text().strip().split("::")[-1]
        raw = Path("/sys/fs/cgroup", cgroup.lstrip("/"), "memory.max").read_text().strip()
        if raw != "max":
            return int(raw) // (1024 * 1024)
    return 0


class LocalSlot:
    """One worker process and the job it is running (a `slots.Slot`)."""

    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        self.config = config
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.jobs_done = 0
        self.info: EngineInfo | None = None
        self.busy = False
        self.broken = False
        self.last_pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The current worker's pid, or the last one's after it died or was killed."""
        return self.process.pid if self.process else self.last_pid

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    async def start(self) -> EngineInfo:
        """Spawn a worker and wait until its engine is warm."""
        parent, child = _SPAWN.Pipe()
        process = _SPAWN.Process(
            target=worker.serve, args=(child, self.config), name=f"ocr-worker-{self.index}",
            daemon=True,
        )  # fmt: skip
        _start_with_env(process)  # from the loop thread: PDEATHSIG follows the spawning thread
        child.close()
        self.process, self.conn, self.jobs_done = process, parent, 0
        self.last_pid = process.pid
        message = await self._receive(self.config.ocr_timeout_seconds, what="warm-up")
        if isinstance(message, worker.Failed):
            await self.kill()
            raise message.error
        assert isinstance(message, worker.Ready)
        self.info = message.info
        log.info("worker.started", slot=self.index, pid=process.pid, engine=self.info.name)
        return message.info

    async def run(
        self,
        job_id: int,
        path: Path,
        timeout_s: float,
        settings: EngineSettings | None = None,
        rendering: Rendering = TXT_ONLY,
    ) -> Recognized:
        """Recognise `path` on this slot's worker, starting a fresh one if needed; `settings`
        (default: the config's) choose the engine and languages for this file, `rendering` the
        formats the worker renders beside the text."""
        if not self.alive() or self.jobs_done >= self.config.max_jobs_per_worker:
            await self._replace("recycled" if self.alive() else "restarted")
        assert self.conn is not None
        self.busy = True
        try:
            try:
                job = (job_id, str(path), settings or EngineSettings.of(self.config), rendering)
                self.conn.send(job)
            except OSError:  # it died after the alive() check (EPIPE): a crash like any other
                raise await self._crashed(str(path)) from None
            message = await self._receive(timeout_s, what=str(path))
        finally:
            self.busy = False
        self.jobs_done += 1
        if isinstance(message, worker.Failed):
            raise message.error
        assert isinstance(message, worker.Done) and message.job_id == job_id
        return Recognized(message.result, message.renders)

    async def _receive(self, timeout_s: float, what: str) -> object:
        assert self.conn is not None and self.process is not None
        try:
            await asyncio.wait_for(_readable(self.conn), timeout=timeout_s)
            return self.conn.recv()
        except TimeoutError:
            await self.kill()
            raise WorkerTimeout(f"no result after {timeout_s:g} s; worker killed", what) from None
        except (EOFError, OSError):
            raise await self._crashed(what) from None

    async def _crashed(self, what: str) -> WorkerCrashed:
        code = await asyncio.to_thread(self._reap)
        return WorkerCrashed(f"worker process died ({_describe_exit(code)})", what)

    async def _replace(self, why: str) -> None:
        log.info("worker.replacing", slot=self.index, pid=self.pid, reason=why)
        await self.stop(grace_s=5.0)
        try:
            await self.start()
        except OcrDaemonError:
            self.broken = True
            raise
        self.broken = False

    def _reap(self) -> int | None:
        """Wait (in a thread: it can take seconds) for the worker's exit; its exit code."""
        if self.process is None:
            return None
        self.process.join(timeout=REAP_SECONDS)
        return self.process.exitcode

    async def kill(self) -> None:
        """SIGKILL the worker and reap it off the event loop: a killed process can take seconds
        to be seen gone (a core dump, a large heap to free, a child left holding its pipes)."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        await asyncio.to_thread(self._reap)
        self._close()

    async def stop(self, grace_s: float) -> None:
        """Ask the worker to exit after its current job; SIGKILL after `grace_s`."""
        if self.process is None:
            return
        if self.conn is not None and not self.busy:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        await asyncio.to_thread(self.process.join, grace_s)
        await self.kill()

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn = None, None


def _start_with_env(process: BaseProcess) -> None:
    # Workers must never see the service manager's notify socket or watchdog settings; spawn
    # copies os.environ, so hide them for the duration of the start.
    saved = {k: os.environ.pop(k) for k in MAIN_PROCESS_VARIABLES if k in os.environ}
    try:
        process.start()
    finally:
        os.environ.update(saved)


async def _readable(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Pool:
    """The slots, started together; knows which engine they run: `size` local ones, followed by
    the `remote` slots the caller composed in (a cluster coordinator's)."""

    def __init__(self, config: Config, size: int, remote: Sequence[Slot] = ()) -> None:
        self.slots: list[Slot] = [LocalSlot(i, config) for i in range(size)]
        self.slots += remote
        self.info: EngineInfo | None = None

    async def start(self) -> EngineInfo:
        """Start every worker; the first error (e.g. engine unavailable) is raised."""
        results = await asyncio.gather(*(_warm(s) for s in self.slots), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close(grace_s=0)
            raise errors[0]
        first = results[0]
        assert isinstance(first, EngineInfo)
        self.info = first
        return first

    def healthy(self) -> bool:
        """The pool can take work: no slot has failed to (re)start its worker."""
        return not any(s.broken for s in self.slots)

    async def close(self, grace_s: float) -> None:
        await asyncio.gather(*(s.stop(grace_s) for s in self.slots))


async def _warm(slot: Slot) -> EngineInfo:
    """Start `slot`'s engine process; one killed while it warms up (the OOM killer, an operator's
    kill, a bad moment) is started again, as a running one would be, up to `WARM_UP_TRIES`
    times in all: a crash during start-up must not stop the daemon when a retry would do."""
    for attempt in range(1, WARM_UP_TRIES + 1):
        try:
            return await slot.start()
        except WorkerCrashed as exc:
            if attempt == WARM_UP_TRIES:
                raise
            log.warning(
                "worker.warm_up_crashed", slot=slot.index, error=exc.message, attempt=attempt,
                tries=WARM_UP_TRIES,
            )  # fmt: skip
    raise AssertionError("unreachable")
