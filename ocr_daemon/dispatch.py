"""From a complete file to its outcome: the bounded queue, one dispatch loop per worker slot, and
what follows a result — commit, retry with backoff, or fail.

A file enters with `enqueue` (the watcher's `emit`) and is *busy* until it has an outcome, so it
is never queued twice. Its job carries the file's effective configuration (the first matching
per-folder rule merged over the defaults), worked out once as the job is made. Each job is a
recipe of two steps: `_process` recognises it and returns an `Outcome` value, and `_follow` acts
on that value. Permanent input errors fail at once (`Failed`); worker crashes and timeouts are
retried up to ``max_attempts`` (`Retry`, then `Failed`). A `Succeeded` or `Failed` outcome is
written by `commit`, off the event loop; outputs that cannot be written now (not writable, disk
full) keep the same outcome and are retried with backoff by one loop while the input stays where
it is.

A verdict a partial file can also produce (corrupt, unsupported, empty, engine error) stands only
once the file has been unchanged for ``corrupt_grace_seconds``: a scanner writing over SMB, FTP or
NFS stalls mid-file for seconds, and the file it is still writing must not be moved to failed/.
Until then the verdict is *held* (`Deferred`): the file goes back to the watcher to settle, due
again when the window has passed. If it changed meanwhile it is recognised anew; if not, the held
verdict (given on these very bytes: same size, mtime and inode) is committed without recognising
them again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, assert_never

import structlog

from ocr_daemon import safefs
from ocr_daemon.config import Config
from ocr_daemon.engines.base import EngineSettings, OcrResult
from ocr_daemon.errors import (
    CorruptInput,
    EmptyInput,
    InputError,
    OcrDaemonError,
    OutputError,
    RecognitionFailed,
    TransientError,
    UnsupportedInput,
)
from ocr_daemon.formats import Recognized, Rendering
from ocr_daemon.journal import JobRecord, Journal
from ocr_daemon.outputs import AlreadyFinished, Failure, InputChanged, Outputs
from ocr_daemon.slots import Slot
from ocr_daemon.status import Counts, Waiting

log = structlog.get_logger()
MAX_BACKOFF_SECONDS = 300.0
# Verdicts that a file cut short (still being written) can earn as well as a really bad one.
# Not too_large (a partial file is smaller), missing, nor a cluster's delivery verdict.
PARTIAL_FILE_VERDICTS = (CorruptInput, UnsupportedInput, EmptyInput, RecognitionFailed)
MAX_HELD = 10_000  # held verdicts remembered; one forgotten only means recognising it again


@dataclass
class Job:
    """One file on its way to an outcome, with the configuration that applies to it."""

    record: JobRecord
    effective: Config  # the config with this file's per-folder rule (if any) merged in
    engine: EngineSettings | None  # how to recognise it, when its rule chooses; else the slot's
    first_seen: float = field(default_factory=time.time)
    commit_tries: int = 0

    @property
    def rendering(self) -> Rendering:
        return Rendering(self.effective.outputs, self.effective.pdf_format == "pdfa-2b")


@dataclass(frozen=True)
class Held:
    """A verdict kept back while its file may still grow (see the module docstring)."""

    identity: safefs.Identity
    error: InputError
    since: float  # time.monotonic() when this verdict on this identity was first held
    first_seen: float


# -- outcomes: what `_process` returns and `_follow` acts on -------------------------------------


@dataclass(frozen=True)
class Succeeded:
    recognized: Recognized
    seconds: float


@dataclass(frozen=True)
class Failed:
    error: OcrDaemonError
    attempts: int


@dataclass(frozen=True)
class Deferred:
    """A verdict held while the file may still be being written: settle it again later."""

    held: Held
    stat: os.stat_result
    unchanged_seconds: float
    recheck_in_seconds: float


@dataclass(frozen=True)
class Retry:
    """A worker crash or timeout with attempts left: recognise the file again later."""

    error: TransientError
    attempts: int


@dataclass(frozen=True)
class Fatal:
    """The engine can no longer start: nothing more can be done."""

    error: OcrDaemonError


Outcome = Succeeded | Failed | Deferred | Retry | Fatal
FinalOutcome = Succeeded | Failed  # the outcomes `commit` writes


@dataclass
class Hooks:
    """What the dispatcher tells the daemon: a fatal error, a changed input, an outcome, and a
    file to settle again whose verdict is held (`hold(rel, st, due_in_seconds)`)."""

    fatal: Callable[[OcrDaemonError], None]
    changed: Callable[[PurePosixPath], None]
    outcome: Callable[[], None]
    hold: Callable[[PurePosixPath, os.stat_result, float], None]


class Dispatcher:
    def __init__(
        self, config: Config, journal: Journal, counts: Counts, hooks: Hooks, *, once: bool
    ) -> None:
        self.config = config
        self.journal = journal
        self.outputs = Outputs(config, journal)
        self.counts = counts
        self.hooks = hooks
        self.once = once
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=config.queue_size)
        self.busy: set[PurePosixPath] = set()
        self.delayed: set[asyncio.Task[None]] = set()
        self.held: dict[PurePosixPath, Held] = {}
        self.in_hand: set[int] = set()  # slots whose job has no outcome yet (OCR or commit)
        self.retrying: dict[PurePosixPath, Waiting] = {}  # waiting out a retry's back-off

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.outputs.config = config

    def idle(self) -> bool:
        return not (self.busy or self.delayed)

    def cancel_delayed(self) -> None:
        for task in self.delayed:
            task.cancel()

    # -- intake --------------------------------------------------------------------------------

    async def enqueue(self, rel: PurePosixPath, identity: safefs.Identity) -> None:
        """Queue a complete file (waits while the queue is full), unless it has an outcome."""
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
        await self.queue.put(self._job(record))

    def _job(self, record: JobRecord) -> Job:
        """The job for `record`, with the configuration its path gets, worked out once."""
        effective, rule = self.config.for_path(record.rel)
        engine = EngineSettings.of(effective) if rule and rule.sets_engine() else None
        return Job(record, effective, engine)

    # -- dispatch ------------------------------------------------------------------------------

    async def serve(self, slot: Slot, stop: asyncio.Event) -> None:
        """Feed `slot` one job at a time until `stop` is set."""
        while not stop.is_set():
            job = await self.queue.get()
            if stop.is_set():
                self.busy.discard(job.record.rel)
                return
            self.in_hand.add(slot.index)
            try:
                outcome = await self._process(slot, job)
                await self._follow(job, outcome, slot)
            except Exception as exc:  # a bug, not a bad file: exit rather than run half-blind
                self.busy.discard(job.record.rel)
                self.hooks.fatal(
                    OcrDaemonError(f"dispatch-{slot.index} died on {job.record.rel}: {exc!r}")
                )
                return
            finally:
                self.in_hand.discard(slot.index)
            self.hooks.outcome()

    async def _process(self, slot: Slot, job: Job) -> Outcome:
        """Recognise the job's file (or take the verdict held on these very bytes)."""
        self.retrying.pop(job.record.rel, None)
        held = self.held.pop(job.record.rel, None)
        if held is not None and held.identity == job.record.identity:
            job.first_seen = held.first_seen
            return await self._judge(job, held.error, held)  # the same bytes: no need to re-read
        path = self.config.inbox / job.record.rel
        timeout_s = job.effective.ocr_timeout_seconds
        started = time.monotonic()
        try:
            recognized = await slot.run(job.record.id, path, timeout_s, job.engine, job.rendering)
        except InputError as exc:
            return await self._judge(job, exc, None)
        except TransientError as exc:
            return await self._retry_or_fail(job, exc)
        except OcrDaemonError as exc:
            return Fatal(exc)
        return Succeeded(recognized, time.monotonic() - started)

    async def _follow(self, job: Job, outcome: Outcome, slot: Slot) -> None:
        """Act on an outcome: commit it, hold it, recognise the file again later, or stop."""
        match outcome:
            case Succeeded() | Failed():
                await self.commit(job, outcome, slot)
            case Deferred():
                self._defer(job, outcome, slot)
            case Retry():
                self._retry(job, outcome, slot)
            case Fatal():
                self.busy.discard(job.record.rel)
                self.hooks.fatal(outcome.error)
            case _:
                assert_never(outcome)

    # -- deciding the outcome ------------------------------------------------------------------

    async def _judge(self, job: Job, error: InputError, held: Held | None) -> Failed | Deferred:
        """A permanent verdict: fail the input now, or hold the verdict while it may grow."""
        due = await asyncio.to_thread(self._grace_left, job, error, held)
        if due is None:
            return Failed(error, job.record.attempts + 1)
        st, unchanged_s, left_s = due
        since = held.since if held else time.monotonic()
        verdict = Held(job.record.identity, error, since, job.first_seen)
        return Deferred(verdict, st, unchanged_s, left_s)

    def _grace_left(
        self, job: Job, error: InputError, held: Held | None
    ) -> tuple[os.stat_result, float, float] | None:
        """None when the verdict may be committed now (a changed or vanished input is then found
        by the commit and goes back to settling); else the file's stat, how long it has been
        unchanged and how long it must stay so. Unchanged means: its last change (mtime or
        ctime, the later) is that old, or this daemon has held a verdict on this very identity
        that long, whichever is longer (a clock ahead of ours cannot hold a file for ever)."""
        grace = self.config.corrupt_grace_seconds
        if grace <= 0 or not isinstance(error, PARTIAL_FILE_VERDICTS):
            return None
        st = safefs.lstat_in(self.config.inbox, job.record.rel)
        if st is None or safefs.Identity.of(st) != job.record.identity:
            return None
        changed_ago = time.time() - max(st.st_mtime, st.st_ctime)
        held_for = time.monotonic() - held.since if held else 0.0
        unchanged = max(changed_ago, held_for, 0.0)
        return None if unchanged >= grace else (st, unchanged, grace - unchanged)

    async def _retry_or_fail(self, job: Job, error: TransientError) -> Retry | Failed:
        attempts = await asyncio.to_thread(self.journal.add_attempt, job.record.id)
        job.record = dataclasses.replace(job.record, attempts=attempts)
        if attempts >= self.config.max_attempts:
            return Failed(error, attempts)
        return Retry(error, attempts)

    # -- acting on it --------------------------------------------------------------------------

    def _defer(self, job: Job, deferred: Deferred, slot: Slot) -> None:
        rel, error = job.record.rel, deferred.held.error
        self._remember_held(rel, deferred.held)
        self.busy.discard(rel)
        log.info(
            "file.verdict_deferred", path=str(rel), reason=error.reason, error=error.message,
            why="the file may still be being written",
            unchanged_seconds=round(deferred.unchanged_seconds, 1),
            corrupt_grace_seconds=self.config.corrupt_grace_seconds,
            recheck_in_seconds=round(deferred.recheck_in_seconds, 1), worker=slot.pid,
        )  # fmt: skip
        self.hooks.hold(rel, deferred.stat, deferred.recheck_in_seconds)

    def _remember_held(self, rel: PurePosixPath, held: Held) -> None:
        self.held[rel] = held
        while len(self.held) > MAX_HELD:
            del self.held[next(iter(self.held))]

    def _retry(self, job: Job, retry: Retry, slot: Slot) -> None:
        delay = self._backoff(retry.attempts)
        self.counts.retries += 1
        log.warning(
            "file.retry", path=str(job.record.rel), reason=retry.error.reason,
            error=retry.error.message, attempt=retry.attempts, retry_in_seconds=delay,
            worker=slot.pid,
        )  # fmt: skip
        why = f"retrying after an error ({retry.error.reason}), attempt {retry.attempts + 1}"
        self.retrying[job.record.rel] = Waiting(str(job.record.rel), job.first_seen, why)
        self._later(self._requeue(job, delay))

    async def _requeue(self, job: Job, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.queue.put(job)

    # -- committing ----------------------------------------------------------------------------

    async def commit(self, job: Job, outcome: FinalOutcome, slot: Slot) -> None:
        """Write the outcome now; when the outputs cannot be written now (not writable, full),
        keep it and try again with backoff in the background while the input stays put."""
        error = await self._write(job, outcome, slot)
        if error is not None and self._may_retry(job, error):
            self._later(self._commit_with_backoff(job, outcome, slot))

    async def _commit_with_backoff(self, job: Job, outcome: FinalOutcome, slot: Slot) -> None:
        """The one retry loop of a commit: wait, write the same outcome again, until it is
        written (or `once` gives up)."""
        while True:
            await asyncio.sleep(self._backoff(job.commit_tries))
            error = await self._write(job, outcome, slot)
            if error is None or not self._may_retry(job, error):
                return

    async def _write(self, job: Job, outcome: FinalOutcome, slot: Slot) -> OutputError | None:
        """One try at committing the outcome off the loop, then its canonical event; the error
        when the outputs cannot be written now."""
        try:
            written = await asyncio.to_thread(self._commit_in_thread, job, outcome, slot)
        except InputChanged as exc:
            await self._input_changed(job, exc)
            return None
        except AlreadyFinished:
            self.busy.discard(job.record.rel)
            log.warning("file.duplicate_dropped", path=str(job.record.rel),
                        reason="its outcome is already committed")  # fmt: skip
            return None
        except OutputError as exc:
            return exc
        self.busy.discard(job.record.rel)
        if isinstance(outcome, Succeeded):
            self._done(job, outcome, slot, written)
        else:
            self._failed(job, outcome, slot, written)
        return None

    def _commit_in_thread(self, job: Job, outcome: FinalOutcome, slot: Slot) -> PurePosixPath:
        if isinstance(outcome, Succeeded):
            recognized = outcome.recognized
            return self.outputs.commit_success(
                job.record, recognized.result, job.rendering, recognized.renders,
                effective=job.effective,
            )  # fmt: skip
        engine = f"{slot.info.name} {slot.info.version}" if slot.info else self.config.engine
        failure = Failure(outcome.error, outcome.attempts, job.first_seen, engine)
        return self.outputs.commit_failure(job.record, failure, effective=job.effective)

    def _may_retry(self, job: Job, error: OutputError) -> bool:
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
            return False
        return True

    def _done(self, job: Job, outcome: Succeeded, slot: Slot, sidecar: PurePosixPath) -> None:
        self.counts.done += 1
        result = outcome.recognized.result
        self.counts.pages += result.page_count
        empty = result.empty_pages
        (log.warning if empty else log.info)(
            "file.done", path=str(job.record.rel), sidecar=str(sidecar), pages=result.page_count,
            chars=result.chars, seconds=round(outcome.seconds, 3), attempt=job.record.attempts + 1,
            worker=slot.pid, evaluation_mode=result.evaluation_mode,
            outputs=list(job.rendering.formats),
            **_empty_pages_fields(empty, result),
        )  # fmt: skip

    def _failed(self, job: Job, outcome: Failed, slot: Slot, record: PurePosixPath) -> None:
        error = outcome.error
        self.counts.failed += 1
        self.counts.last_error = f"{job.record.rel}: {error.reason}"
        log.error(
            "file.failed", path=str(job.record.rel), reason=error.reason, error=error.message,
            record=str(record), attempts=outcome.attempts, worker=slot.pid,
        )  # fmt: skip

    async def _input_changed(self, job: Job, exc: InputChanged) -> None:
        rel = job.record.rel
        self.busy.discard(rel)
        if exc.vanished:
            await asyncio.to_thread(self.journal.finish, job.record.id, "gone")
            log.warning("file.vanished", path=str(rel), reason="deleted before its outcome")
        else:
            log.warning("file.changed", path=str(rel), reason="modified or replaced during OCR")
            self.hooks.changed(rel)

    def _backoff(self, attempt: int) -> float:
        base = self.config.retry_backoff_seconds
        return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempt - 1)))

    def waiting(self) -> list[Waiting]:
        """The files queued for an engine process or waiting out a retry's back-off."""
        queued: list[Job] = list(getattr(self.queue, "_queue", ()))  # asyncio.Queue's own deque
        why = "queued: waiting for a free engine process"
        return [
            *(Waiting(str(job.record.rel), job.first_seen, why) for job in queued),
            *self.retrying.values(),
        ]

    def held_reasons(self) -> dict[PurePosixPath, str]:
        return {rel: held.error.reason for rel, held in self.held.items()}

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, counted as delayed (not idle) until it ends."""
        task = asyncio.create_task(work)
        self.delayed.add(task)
        task.add_done_callback(self.delayed.discard)


def _empty_pages_fields(empty: tuple[int, ...], result: OcrResult) -> dict[str, object]:
    """What `file.done` says of pages that came back without text (nothing when none did)."""
    if not empty:
        return {}
    why = "no text recognised: blank, or unreadable for the engine (handwriting, a photo)"
    if result.evaluation_mode:
        why += "; in evaluation mode a short page can come back as nothing"
    return {"empty_pages": list(empty), "why": why}
