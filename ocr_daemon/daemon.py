"""The asyncio lifecycle: recover, start workers, scan, watch, queue, dispatch, dispose, drain.

Data flows one way: `InboxWatcher` → bounded FIFO queue → one dispatcher per worker `Slot` →
`Outputs` (sidecar, disposal, failure records). The main process never imports the engine.
Signal handlers (installed by the CLI) only set `stop`/`force`/`reload` events; everything else
follows from awaiting them, so tests can stop the daemon by setting an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import structlog

from ocr_daemon import fsops
from ocr_daemon.config import Config
from ocr_daemon.errors import (
    ConfigError,
    ExitCode,
    InputError,
    OcrDaemonError,
    OutputError,
    TransientError,
)
from ocr_daemon.journal import JobRecord, Journal
from ocr_daemon.outputs import Failure, InputChanged, Outputs
from ocr_daemon.pool import Pool, Slot, choose_worker_count
from ocr_daemon.rules import EngineSettings, config_for
from ocr_daemon.seam import OcrResult
from ocr_daemon.status import Counts, write_status
from ocr_daemon.systemd import Notifier
from ocr_daemon.watcher import InboxWatcher

log = structlog.get_logger()
MAX_BACKOFF_SECONDS = 300.0
STATUS_REFRESH_SECONDS = 10.0


@dataclass
class Job:
    record: JobRecord
    first_seen: float = field(default_factory=time.time)
    commit_tries: int = 0


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        once: bool = False,
        notifier: Notifier | None = None,
        reload_config: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.once = once
        self.notifier = notifier or Notifier({})
        self.reload_config = reload_config
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.reload = asyncio.Event()
        self.counts = Counts()
        self.fatal: OcrDaemonError | None = None
        self.journal = Journal(config.state_dir)
        self.outputs = Outputs(config, self.journal)
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=config.queue_size)
        self.busy: set[PurePosixPath] = set()
        self.watcher = InboxWatcher(
            config, self._enqueue, self.busy.__contains__, wait_for_content=not once
        )
        self.pool: Pool | None = None
        self._delayed: set[asyncio.Task[None]] = set()
        self._intake: list[asyncio.Task[None]] = []
        self._dispatchers: dict[asyncio.Task[None], Slot] = {}
        self._scan: asyncio.Task[None] | None = None
        self._status_written = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (or, in `once` mode, until the inbox is done); returns an exit code."""
        try:
            await self._startup()
            await self._main_loop()
        finally:
            await self._shutdown()
        if self.fatal is not None:
            return int(self.fatal.exit_code)
        return int(ExitCode.FILES_FAILED if self.once and self.counts.failed else ExitCode.OK)

    async def _startup(self) -> None:
        for folder in (self.config.inbox, self.config.outbox, self.config.processed,
                       self.config.failed, self.config.state_dir):  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
        self.journal.open()
        self._recover()
        size, why = choose_worker_count(self.config)
        self.pool = Pool(self.config, size)
        info = await self.pool.start()
        self._log_started(size, why, info.licensed, f"{info.name} {info.version}")

    def _recover(self) -> None:
        """Finish (or undo) the outcomes a crash interrupted, before anything new starts."""
        for record in self.journal.interrupted():
            try:
                finished = self.outputs.finish(record)
            except OutputError as exc:
                log.error("journal.recovery_failed", path=str(record.rel), error=str(exc))
                continue
            log.info("journal.recovered", path=str(record.rel), finished=finished)

    def _log_started(self, workers: int, why: str, licensed: bool, engine: str) -> None:
        cfg = self.config
        log.info(
            "daemon.started", inbox=str(cfg.inbox), outbox=str(cfg.outbox),
            processed=str(cfg.processed), failed=str(cfg.failed), state_dir=str(cfg.state_dir),
            engine=engine, licence="licensed" if licensed else "evaluation", workers=workers,
            workers_reason=why, polling=self.watcher.polling, settle_seconds=cfg.settle_seconds,
            on_success=cfg.on_success, once=self.once,
        )  # fmt: skip
        if not licensed:
            log.warning(
                "engine.evaluation_mode",
                message="no Aspose licence: every page is cut to at most 300 characters and ends "
                "with a '*** Trial Licenses ***' notice; set license_file in the config or "
                "OCR_DAEMON_LICENSE_FILE to lift this",
            )

    async def _main_loop(self) -> None:
        assert self.pool is not None
        self._intake = [asyncio.create_task(self.watcher.settle(self.stop), name="settle")]
        if not self.once:
            self._intake += [
                asyncio.create_task(self.watcher.watch(self.stop), name="watch"),
                asyncio.create_task(self.watcher.reconcile(self.stop), name="reconcile"),
            ]
        self._dispatchers = {
            asyncio.create_task(self._dispatch(slot), name=f"dispatch-{slot.index}"): slot
            for slot in self.pool.slots
        }
        # The start-up scan streams into the queue (it waits while the queue is full), so it runs
        # beside the dispatchers; READY follows once it is under way.
        self._scan = asyncio.create_task(self._startup_scan(), name="startup-scan")
        self.counts.state = "running"
        self._publish_status()
        self.notifier.ready()
        ticker = asyncio.create_task(self._tick(), name="tick")
        reloader = asyncio.create_task(self._reloads(), name="reload")
        try:
            await self.stop.wait()
        finally:
            ticker.cancel()
            reloader.cancel()

    async def _startup_scan(self) -> None:
        found = await self.watcher.scan(trust_mtime=True)
        log.info("inbox.scanned", candidates=found)
        self._stop_if_done()

    async def _shutdown(self) -> None:
        self.counts.state = "draining"
        self.stop.set()
        self.notifier.stopping()
        for task in [*self._intake, *([self._scan] if self._scan else [])]:
            task.cancel()
        for task in self._delayed:
            task.cancel()
        abandoned = await self._drain()
        if self.pool is not None:
            await self.pool.close(grace_s=0 if self.force.is_set() else 5.0)
        self.counts.state = "stopped"
        if self.pool is not None:  # else the state lock was never ours, nor is status.json
            with contextlib.suppress(OSError):
                self._publish_status()
        self.journal.close()
        log.info(
            "daemon.stopped", done=self.counts.done, failed=self.counts.failed,
            abandoned=abandoned, left_in_queue=self.queue.qsize(),
        )  # fmt: skip

    async def _drain(self) -> int:
        """Let in-flight jobs finish up to the shutdown deadline (or a second signal)."""
        busy = [t for t, s in self._dispatchers.items() if s.busy]
        for task in self._dispatchers:
            if task not in busy:
                task.cancel()
        if busy and not self.force.is_set():
            timeout = self.config.shutdown_timeout_seconds
            self.notifier.extend_timeout(timeout + 15)
            log.info("daemon.draining", in_flight=len(busy), timeout_seconds=timeout)
            waiter = asyncio.create_task(asyncio.wait(busy))
            force = asyncio.create_task(self.force.wait())
            await asyncio.wait([waiter, force], timeout=timeout, return_when="FIRST_COMPLETED")
            waiter.cancel()
            force.cancel()
        unfinished = [t for t in self._dispatchers if not t.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*self._dispatchers, return_exceptions=True)
        return len([t for t in unfinished if t in busy])

    def _slots(self) -> list[Slot]:
        return self.pool.slots if self.pool else []

    # -- intake --------------------------------------------------------------------------------

    async def _enqueue(self, rel: PurePosixPath, identity: fsops.Identity) -> None:
        record = await asyncio.to_thread(self.journal.begin, rel, identity)
        if record.state in ("done", "failed"):
            return  # already handled (on_success = "keep" leaves inputs in place)
        if record.state == "committing":
            try:
                if await asyncio.to_thread(self.outputs.finish, record):
                    return
            except OutputError as exc:  # the reconciliation scan will offer it again
                log.error("journal.recovery_failed", path=str(rel), error=str(exc))
                return
        self.busy.add(rel)
        await self.queue.put(Job(record))

    # -- dispatch ------------------------------------------------------------------------------

    async def _dispatch(self, slot: Slot) -> None:
        while not self.stop.is_set():
            job = await self.queue.get()
            if self.stop.is_set():
                self.busy.discard(job.record.rel)
                return
            try:
                await self._process(slot, job)
                self._stop_if_done()
            except Exception as exc:  # a bug, not a bad file: exit rather than run half-blind
                self.busy.discard(job.record.rel)
                self._die(
                    OcrDaemonError(f"dispatch-{slot.index} died on {job.record.rel}: {exc!r}")
                )
                return

    async def _process(self, slot: Slot, job: Job) -> None:
        path = self.config.inbox / job.record.rel
        effective, _ = config_for(self.config, job.record.rel)
        settings = EngineSettings.of(effective)
        started = time.monotonic()
        try:
            result = await slot.run(job.record.id, path, effective.ocr_timeout_seconds, settings)
        except InputError as exc:
            await self._fail(job, exc, slot, job.record.attempts + 1)
        except TransientError as exc:
            await self._retry_or_fail(job, exc, slot)
        except OcrDaemonError as exc:  # the engine can no longer start: nothing can be done
            self.busy.discard(job.record.rel)
            self._die(exc)
        else:
            await self._succeed(job, result, slot, time.monotonic() - started)

    async def _succeed(self, job: Job, result: OcrResult, slot: Slot, seconds: float) -> None:
        rel = job.record.rel
        try:
            sidecar = await asyncio.to_thread(self.outputs.commit_success, job.record, result)
        except InputChanged as exc:
            self._input_changed(job, exc)
            return
        except OutputError as exc:
            self._retry_commit(job, lambda: self._succeed(job, result, slot, seconds), exc)
            return
        self.busy.discard(rel)
        self.counts.done += 1
        log.info(
            "file.done", path=str(rel), sidecar=str(sidecar), pages=result.page_count,
            chars=result.chars, seconds=round(seconds, 3), attempt=job.record.attempts + 1,
            worker=slot.pid, evaluation_mode=result.evaluation_mode,
        )  # fmt: skip

    async def _fail(self, job: Job, error: OcrDaemonError, slot: Slot, attempts: int) -> None:
        rel = job.record.rel
        engine = f"{slot.info.name} {slot.info.version}" if slot.info else self.config.engine
        failure = Failure(error, attempts, job.first_seen, engine)
        try:
            record = await asyncio.to_thread(self.outputs.commit_failure, job.record, failure)
        except InputChanged as exc:
            self._input_changed(job, exc)
            return
        except OutputError as exc:
            self._retry_commit(job, lambda: self._fail(job, error, slot, attempts), exc)
            return
        self.busy.discard(rel)
        self.counts.failed += 1
        self.counts.last_error = f"{rel}: {error.reason}"
        log.error(
            "file.failed", path=str(rel), reason=error.reason, error=error.message,
            record=str(record), attempts=failure.attempts, worker=slot.pid,
        )  # fmt: skip

    async def _retry_or_fail(self, job: Job, error: TransientError, slot: Slot) -> None:
        attempts = await asyncio.to_thread(self.journal.add_attempt, job.record.id)
        job.record = _with_attempts(job.record, attempts)
        if attempts >= self.config.max_attempts:
            await self._fail(job, error, slot, attempts)
            return
        delay = self._backoff(attempts)
        self.counts.retries += 1
        log.warning(
            "file.retry", path=str(job.record.rel), reason=error.reason, error=error.message,
            attempt=attempts, retry_in_seconds=delay, worker=slot.pid,
        )  # fmt: skip
        self._later(delay, lambda: self._requeue(job))

    async def _requeue(self, job: Job) -> None:
        await self.queue.put(job)

    def _retry_commit(self, job: Job, again: Callable[[], Any], error: OutputError) -> None:
        """Outputs not writable or full: keep the result, try again later; input stays put."""
        job.commit_tries += 1
        delay = self._backoff(job.commit_tries)
        self.counts.last_error = f"{job.record.rel}: {error.reason}"
        log.warning(
            "file.retry", path=str(job.record.rel), reason=error.reason, error=error.message,
            retry_in_seconds=delay,
        )  # fmt: skip
        if self.once and job.commit_tries >= self.config.max_attempts:
            self.busy.discard(job.record.rel)  # `once` gives up; the input stays in the inbox
            self.counts.failed += 1
            return
        self._later(delay, again)

    def _input_changed(self, job: Job, exc: InputChanged) -> None:
        rel = job.record.rel
        self.busy.discard(rel)
        if exc.vanished:
            self.journal.finish(job.record.id, "gone")
            log.warning("file.vanished", path=str(rel), reason="deleted before its outcome")
        else:
            log.warning("file.changed", path=str(rel), reason="modified or replaced during OCR")
            self.watcher.on_change(str(self.config.inbox / rel))

    def _backoff(self, attempt: int) -> float:
        base = self.config.retry_backoff_seconds
        return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempt - 1)))

    def _later(self, delay: float, action: Callable[[], Any]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        task = asyncio.create_task(run())
        self._delayed.add(task)
        task.add_done_callback(self._delayed.discard)

    def _die(self, exc: OcrDaemonError) -> None:
        log.critical("daemon.fatal", error=str(exc), reason=exc.reason)
        self.fatal = exc
        self.stop.set()

    # -- housekeeping --------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Status once a second; the watchdog ping only while the daemon is really healthy."""
        interval = self.notifier.watchdog_interval_seconds()
        period = min(1.0, interval) if interval else 1.0
        last = ""
        while True:
            await asyncio.sleep(period)
            self._check_intake()
            self._stop_if_done()
            try:
                line = self._publish_status(previous=last)
            except OSError as exc:  # state folder full or gone: keep checking health regardless
                if last:
                    log.warning("status.unwritable", error=str(exc))
                line = ""
            last = line
            if interval and self._healthy():
                self.notifier.watchdog()

    def _check_intake(self) -> None:
        for task in [*self._intake, *([self._scan] if self._scan else [])]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                self._die(OcrDaemonError(f"{task.get_name()} task died: {exc!r}"))

    def _healthy(self) -> bool:
        intake_alive = all(not t.done() for t in self._intake)
        return intake_alive and self.pool is not None and self.pool.healthy()

    def _stop_if_done(self) -> None:
        """In `once` mode, stop as soon as the start-up scan's files all have an outcome."""
        if self.once and self._scan is not None and self._scan.done() and self._idle():
            self.stop.set()

    def _idle(self) -> bool:
        pending = self.busy or self.watcher.settler.pending or self.watcher.scanning
        return not (pending or self._delayed)

    def _publish_status(self, previous: str = "") -> str:
        """STATUS= and status.json when something changed (the file at least every 10 s)."""
        self._update_counts()
        line = self.counts.one_line()
        if line != previous:
            self.notifier.status(line)
        if line != previous or time.monotonic() - self._status_written >= STATUS_REFRESH_SECONDS:
            write_status(self.config.state_dir, self.counts, self._status_extra())
            self._status_written = time.monotonic()
        return line

    def _update_counts(self) -> None:
        slots = self._slots()
        self.counts.queued = self.queue.qsize()
        self.counts.in_flight = sum(1 for s in slots if s.busy)
        self.counts.retrying = len(self._delayed)
        self.counts.settling = len(self.watcher.settler.pending)
        self.counts.workers = [
            {"slot": s.index, "pid": s.pid, "jobs_done": s.jobs_done, "busy": s.busy} for s in slots
        ]

    def _status_extra(self) -> dict[str, Any]:
        info = self.pool.info if self.pool else None
        extra: dict[str, Any] = {
            "inbox": str(self.config.inbox),
            "engine": f"{info.name} {info.version}" if info else self.config.engine,
            "licence": ("licensed" if info.licensed else "evaluation mode: output truncated")
            if info
            else "",
        }
        if self.pool is not None and self.pool.cluster is not None:
            extra["cluster"] = self.pool.cluster.status()
        return extra

    async def _reloads(self) -> None:
        while True:
            await self.reload.wait()
            self.reload.clear()
            self.notifier.reloading()
            self._apply_reload()
            self.notifier.ready()

    def _apply_reload(self) -> None:
        if self.reload_config is None:
            return
        try:
            new = self.reload_config()
        except ConfigError as exc:
            self.counts.last_error = f"config reload: {exc}"
            log.error("config.reload_failed", error=str(exc), kept="previous config")
            return
        fixed = ("inbox", "outbox", "processed", "failed", "state_dir", "engine", "workers",
                 "aspose", "queue_size")  # fmt: skip
        changed = [k for k in fixed if getattr(new, k) != getattr(self.config, k)]
        if changed:
            log.warning("config.restart_required", keys=changed, kept="previous values")
            new = new.replace(**{k: getattr(self.config, k) for k in changed})
        self.config = new
        self.outputs.config = new
        self.watcher.reconfigure(new)
        log.info("config.reloaded", source=str(new.source))


def _with_attempts(record: JobRecord, attempts: int) -> JobRecord:
    return dataclasses.replace(record, attempts=attempts)
