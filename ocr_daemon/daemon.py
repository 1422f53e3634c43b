"""The asyncio lifecycle: recover, start workers, scan, watch, queue, dispatch, dispose, drain.

Data flows one way: `InboxWatcher` → bounded FIFO queue → one dispatcher per worker `Slot` →
`Outputs` (sidecar, disposal, failure records). The main process never imports the engine.
Signal handlers (installed by the CLI) only set `stop`/`force`/`reload` events; everything else
follows from awaiting them, so tests can stop the daemon by setting an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import structlog

from ocr_daemon import folders
from ocr_daemon.config import Config
from ocr_daemon.dispatch import Dispatcher, Hooks
from ocr_daemon.engines.base import EVALUATION_MODE, EVALUATION_REMEDY, EngineInfo
from ocr_daemon.errors import (
    ConfigError,
    ExitCode,
    OcrDaemonError,
    OutputError,
)
from ocr_daemon.journal import Journal
from ocr_daemon.pool import Pool, choose_worker_count
from ocr_daemon.slots import Slot
from ocr_daemon.status import Counts, Progress, oldest, write_status
from ocr_daemon.systemd import Notifier
from ocr_daemon.watcher import InboxWatcher

if TYPE_CHECKING:
    from ocr_daemon.cluster.coordinator import Coordinator

log = structlog.get_logger()
STATUS_REFRESH_SECONDS = 10.0
DRAINING = (
    "finishing the files in flight; a second Ctrl+C (or signal) stops at once, and unfinished"
    " files stay in the inbox, to be OCRed at the next start"
)


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
        self.progress = Progress()
        self.fatal: OcrDaemonError | None = None
        self.journal = Journal(config.state_dir)
        hooks = Hooks(
            fatal=self._die, changed=self._retrack, outcome=self._stop_if_done, hold=self._resettle
        )
        self.jobs = Dispatcher(config, self.journal, self.counts, hooks, once=once)
        self.watcher = InboxWatcher(
            config, self.jobs.enqueue, self.jobs.busy.__contains__, wait_for_content=not once
        )
        self.pool: Pool | None = None
        self.cluster: Coordinator | None = None
        self._intake: list[asyncio.Task[None]] = []
        self._dispatchers: dict[asyncio.Task[None], Slot] = {}
        self._scan: asyncio.Task[None] | None = None
        self._status_written = 0.0
        self._started = False
        # status.json has a thread of its own: in the shared default executor, a burst of journal
        # and commit work (thousands of files) made the tick, and so the watchdog ping, wait
        self._status_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status")

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (or, in `once` mode, until the inbox is done); returns an exit code."""
        folders.create_folders(self.config)  # before the try: nothing started, nothing to stop
        try:
            await self._startup()
            await self._main_loop()
        finally:
            await self._shutdown()
        if self.fatal is not None:
            return int(self.fatal.exit_code)
        return int(ExitCode.FILES_FAILED if self.once and self.counts.failed else ExitCode.OK)

    async def _startup(self) -> None:
        self.journal.open()
        self._recover()
        size, why = choose_worker_count(self.config)
        self.cluster = self._coordinator(first_index=size)
        self.pool = Pool(self.config, size, self.cluster.slots if self.cluster else ())
        info = await self.pool.start()
        self._log_started(size, why, info)
        self._started = True  # from now on, a stop is worth a `daemon.stopped`

    def _coordinator(self, first_index: int) -> Coordinator | None:
        """With ``cluster.url`` set: the coordinator whose remote slots follow the local ones."""
        if not self.config.cluster.url:
            return None
        from ocr_daemon.cluster.coordinator import Coordinator  # noqa: PLC0415 - imports nats

        return Coordinator(self.config, first_index=first_index, journal=self.journal)

    def _recover(self) -> None:
        """Finish (or undo) the outcomes a crash interrupted, before anything new starts."""
        for record in self.journal.interrupted():
            try:
                finished = self.jobs.outputs.finish(record)
            except OutputError as exc:
                log.error("journal.recovery_failed", path=str(record.rel), error=str(exc))
                continue
            log.info("journal.recovered", path=str(record.rel), finished=finished)

    def _log_started(self, workers: int, why: str, info: EngineInfo) -> None:
        cfg = self.config
        log.info(
            "daemon.started", inbox=str(cfg.inbox), outbox=str(cfg.outbox),
            processed=str(cfg.processed), failed=str(cfg.failed), state_dir=str(cfg.state_dir),
            engine=f"{info.name} {info.version}", licence=info.licence, workers=workers,
            evaluation_mode=not info.licensed,
            workers_reason=why, polling=self.watcher.polling, settle_seconds=cfg.settle_seconds,
            on_success=cfg.on_success, once=self.once,
        )  # fmt: skip
        if not info.licensed:
            log.warning("engine.evaluation_mode", message=f"{EVALUATION_MODE}; {EVALUATION_REMEDY}")

    async def _main_loop(self) -> None:
        assert self.pool is not None
        self._intake = [asyncio.create_task(self.watcher.settle(self.stop), name="settle")]
        if not self.once:
            self._intake += [
                asyncio.create_task(self.watcher.watch(self.stop), name="watch"),
                asyncio.create_task(self.watcher.reconcile(self.stop), name="reconcile"),
            ]
        self._dispatchers = {
            asyncio.create_task(
                self.jobs.serve(slot, self.stop), name=f"dispatch-{slot.index}"
            ): slot
            for slot in self.pool.slots
        }
        # The start-up scan streams into the queue (it waits while the queue is full), so it runs
        # beside the dispatchers; READY follows once it is under way.
        self._scan = asyncio.create_task(self._startup_scan(), name="startup-scan")
        self.counts.state = "running"
        await self._publish_status()
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
        for task in self._intake_tasks():
            task.cancel()
        self.jobs.cancel_delayed()
        abandoned = await self._drain()
        if self.pool is not None:
            await self.pool.close(grace_s=0 if self.force.is_set() else 5.0)
        self.counts.state = "stopped"
        if self.pool is not None:  # else the state lock was never ours, nor is status.json
            with contextlib.suppress(OSError):
                await self._publish_status()
        self._status_thread.shutdown(wait=True)
        self.journal.close()
        if not self._started:  # refused (already running, licence, engine): the error says why
            return
        log.info(
            "daemon.stopped", done=self.counts.done, failed=self.counts.failed,
            abandoned=abandoned, left_in_queue=self.jobs.queue.qsize(),
        )  # fmt: skip

    async def _drain(self) -> int:
        """Let in-flight jobs finish up to the shutdown deadline (or a second signal). A job is
        in flight from the queue until its outcome is committed and logged, not only while its
        slot recognises it: a dispatcher cancelled mid-commit would leave the commit to finish
        in its thread with no `file.done` for it."""
        in_hand = self.jobs.in_hand
        busy = [t for t, s in self._dispatchers.items() if s.index in in_hand]
        for task in self._dispatchers:
            if task not in busy:
                task.cancel()
        if busy and not self.force.is_set():
            timeout = self.config.shutdown_timeout_seconds
            self.notifier.extend_timeout(timeout + 15)
            log.info(
                "daemon.draining", in_flight=len(busy), timeout_seconds=timeout, message=DRAINING
            )
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

    def _retrack(self, rel: PurePosixPath) -> None:
        """A file changed while it was being recognised: watch it settle again."""
        self.watcher.on_change(str(self.config.inbox / rel))

    def _resettle(self, rel: PurePosixPath, st: os.stat_result, due_in_seconds: float) -> None:
        """A file whose verdict is held: it settles again, handed on in `due_in_seconds` (never
        sooner than the settle time); a change restarts its quiet period as usual."""
        settler = self.watcher.settler
        quiet_since = time.monotonic() + due_in_seconds - settler.settle_seconds
        settler.touch(rel, st, quiet_since=quiet_since)
        self._retrack(rel)  # wakes the settle loop; a file changed since `st` starts afresh

    def _die(self, exc: OcrDaemonError) -> None:
        log.critical("daemon.fatal", error=str(exc), reason=exc.reason)
        self.fatal = exc
        self.stop.set()

    # -- housekeeping --------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Status once a second; the watchdog ping only while the daemon is really healthy. The
        ping goes first and ticks keep to a fixed schedule, so a slow status write never
        delays one."""
        interval = self.notifier.watchdog_interval_seconds()
        period = min(1.0, interval) if interval else 1.0
        last = ""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + period, loop.time())
            await asyncio.sleep(due - loop.time())
            self._check_intake()
            self._stop_if_done()
            if interval and self._healthy():
                self.notifier.watchdog()
            try:
                line = await self._publish_status(previous=last)
            except OSError as exc:  # state folder full or gone: keep checking health regardless
                if last:
                    log.warning("status.unwritable", error=str(exc))
                line = ""
            last = line
            self._report_progress()

    def _report_progress(self) -> None:
        fields = self.progress.fields(self.counts, time.monotonic())
        if fields is not None:
            log.info("progress", **fields)

    def _check_intake(self) -> None:
        for task in self._intake_tasks():
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                self._die(OcrDaemonError(f"{task.get_name()} task died: {exc!r}"))

    def _intake_tasks(self) -> list[asyncio.Task[None]]:
        return [*self._intake, *([self._scan] if self._scan else [])]

    def _healthy(self) -> bool:
        intake_alive = all(not t.done() for t in self._intake)
        return intake_alive and self.pool is not None and self.pool.healthy()

    def _stop_if_done(self) -> None:
        """In `once` mode, stop as soon as the start-up scan's files all have an outcome."""
        if self.once and self._scan is not None and self._scan.done() and self._idle():
            self.stop.set()

    def _idle(self) -> bool:
        watcher = self.watcher
        return self.jobs.idle() and not (watcher.settler.pending or watcher.scanning)

    async def _publish_status(self, previous: str = "") -> str:
        """STATUS= and status.json when something changed (the file at least every 10 s). The
        file is written in a thread: on a disk busy with commits a write can take 0.2 s, which
        the loop (and the watchdog ping after it) must not wait out."""
        self._update_counts()
        line = self.counts.one_line()
        if line != previous:
            self.notifier.status(line)
        if line != previous or time.monotonic() - self._status_written >= STATUS_REFRESH_SECONDS:
            # the loop only rebinds the counts' fields (never mutates a list in place): safe
            extra = self._status_extra()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self._status_thread, write_status, self.config.state_dir, self.counts, extra
            )
            self._status_written = time.monotonic()
        return line

    def _update_counts(self) -> None:
        slots = self._slots()
        self.counts.queued = self.jobs.queue.qsize()
        self.counts.in_flight = sum(1 for s in slots if s.busy)
        self.counts.retrying = len(self.jobs.delayed)
        self.counts.settling = len(self.watcher.settler.pending)
        waiting = self.watcher.settler.waiting(self.jobs.held_reasons()) + self.jobs.waiting()
        self.counts.waiting = oldest(waiting)
        self.counts.workers = [
            {"slot": s.index, "pid": s.pid, "jobs_done": s.jobs_done, "busy": s.busy} for s in slots
        ]
        if self.cluster is not None:
            self.counts.hosts = self.cluster.hosts.summary()

    def _status_extra(self) -> dict[str, Any]:
        info = self.pool.info if self.pool else None
        extra: dict[str, Any] = {
            "inbox": str(self.config.inbox),
            "engine": f"{info.name} {info.version}" if info else self.config.engine,
            "licence": info.licence if info else "",
        }
        if self.cluster is not None:
            extra["cluster"] = self.cluster.status()
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
                 "aspose", "tesseract", "queue_size", "cluster")  # fmt: skip
        changed = [k for k in fixed if getattr(new, k) != getattr(self.config, k)]
        if changed:
            log.warning("config.restart_required", keys=changed, kept="previous values")
            new = new.replace(**{k: getattr(self.config, k) for k in changed})
        self.config = new
        self.jobs.reconfigure(new)
        self.watcher.reconfigure(new)
        log.info("config.reloaded", source=str(new.source))
