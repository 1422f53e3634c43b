"""From a complete file to its outcome: the bounded queue, one dispatch loop per worker slot, and
what follows a result — commit, retry with backoff, or fail.

A file enters with `enqueue` (the watcher's `emit`) and is *busy* until it has an outcome, so it
is never queued twice. Permanent input errors fail at once; worker crashes and timeouts are
retried up to ``max_attempts``; outputs that cannot be written now (not writable, disk full) are
retried with backoff while the input stays where it is. Commits run off the event loop.

A verdict a partial file can also produce (corrupt, unsupported, empty, engine error) stands only
once the file has been unchanged for ``corrupt_grace_seconds``: a scanner writing over SMB, FTP or
NFS stalls mid-file for seconds, and the file it is still writing must not be moved to failed/.
Until then the verdict is *held*: the file goes back to the watcher to settle, due again when the
window has passed. If it changed meanwhile it is recognised anew; if not, the held verdict (given
on these very bytes: same size, mtime and inode) is committed without recognising them again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

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
    record: JobRecord
    first_seen: float = field(default_factory=time.time)
    commit_tries: int = 0


@dataclass(frozen=True)
class Held:
    """A verdict kept back while its file may still grow (see the module docstring)."""

    identity: safefs.Identity
    error: InputError
    since: float  # time.monotonic() when this verdict on this identity was first held
    first_seen: float


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
        self.retrying: dict[PurePosixPath, Waiting] = {}  # waiting out a retry's back-off
        self.in_hand: set[int] = set()  # slots whose job has no outcome yet (OCR or commit)

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
        await self.queue.put(Job(record))

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
                await self._process(slot, job)
            except Exception as exc:  # a bug, not a bad file: exit rather than run half-blind
                self.busy.discard(job.record.rel)
                self.hooks.fatal(
                    OcrDaemonError(f"dispatch-{slot.index} died on {job.record.rel}: {exc!r}")
                )
                return
            finally:
                self.in_hand.discard(slot.index)
            self.hooks.outcome()

    async def _process(self, slot: Slot, job: Job) -> None:
        self.retrying.pop(job.record.rel, None)
        held = self.held.pop(job.record.rel, None)
        if held is not None and held.identity == job.record.identity:
            job.first_seen = held.first_seen
            await self._judge(job, held.error, slot, held)  # the same bytes: no need to re-read
            return
        path = self.config.inbox / job.record.rel
        effective, rule = self.config.for_path(job.record.rel)
        settings = EngineSettings.of(effective) if rule and rule.sets_engine() else None
        rendering = Rendering(effective.outputs, effective.pdf_format == "pdfa-2b")
        started = time.monotonic()
        try:
            result = await slot.run(
                job.record.id, path, effective.ocr_timeout_seconds, settings, rendering
            )
        except InputError as exc:
            await self._judge(job, exc, slot, None)
        except TransientError as exc:
            await self._retry_or_fail(job, exc, slot)
        except OcrDaemonError as exc:  # the engine can no longer start: nothing can be done
            self.busy.discard(job.record.rel)
            self.hooks.fatal(exc)
        else:
            await self._succeed(job, result, slot, time.monotonic() - started, rendering)

    # -- outcomes ------------------------------------------------------------------------------

    async def _succeed(
        self, job: Job, recognized: Recognized, slot: Slot, seconds: float, rendering: Rendering
    ) -> None:
        result = recognized.result
        sidecar = await self._commit(
            job,
            lambda: self.outputs.commit_success(job.record, result, rendering, recognized.renders),
            again=lambda: self._succeed(job, recognized, slot, seconds, rendering),
        )
        if sidecar is None:
            return
        self.counts.done += 1
        self.counts.pages += result.page_count
        empty = result.empty_pages
        (log.warning if empty else log.info)(
            "file.done", path=str(job.record.rel), sidecar=str(sidecar), pages=result.page_count,
            chars=result.chars, seconds=round(seconds, 3), attempt=job.record.attempts + 1,
            worker=slot.pid, evaluation_mode=result.evaluation_mode,
            outputs=list(rendering.formats),
            **_empty_pages_fields(empty, result),
        )  # fmt: skip

    async def _judge(self, job: Job, error: InputError, slot: Slot, held: Held | None) -> None:
        """A permanent verdict: fail the input now, or hold the verdict while it may grow."""
        due = await asyncio.to_thread(self._grace_left, job, error, held)
        if due is None:
            await self._fail(job, error, slot, job.record.attempts + 1)
            return
        st, unchanged_s, left_s = due
        rel = job.record.rel
        since = held.since if held else time.monotonic()
        self._remember_held(rel, Held(job.record.identity, error, since, job.first_seen))
        self.busy.discard(rel)
        log.info(
            "file.verdict_deferred", path=str(rel), reason=error.reason, error=error.message,
            why="the file may still be being written", unchanged_seconds=round(unchanged_s, 1),
            corrupt_grace_seconds=self.config.corrupt_grace_seconds,
            recheck_in_seconds=round(left_s, 1), worker=slot.pid,
        )  # fmt: skip
        self.hooks.hold(rel, st, left_s)

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

    def _remember_held(self, rel: PurePosixPath, held: Held) -> None:
        self.held[rel] = held
        while len(self.held) > MAX_HELD:
            del self.held[next(iter(self.held))]

    async def _fail(self, job: Job, error: OcrDaemonError, slot: Slot, attempts: int) -> None:
        engine = f"{slot.info.name} {slot.info.version}" if slot.info else self.config.engine
        failure = Failure(error, attempts, job.first_seen, engine)
        record = await self._commit(
            job,
            lambda: self.outputs.commit_failure(job.record, failure),
            again=lambda: self._fail(job, error, slot, attempts),
        )
        if record is None:
            return
        self.counts.failed += 1
        self.counts.last_error = f"{job.record.rel}: {error.reason}"
        log.error(
            "file.failed", path=str(job.record.rel), reason=error.reason, error=error.message,
            record=str(record), attempts=attempts, worker=slot.pid,
        )  # fmt: skip

    async def _commit(
        self,
        job: Job,
        write: Callable[[], PurePosixPath],
        again: Callable[[], Awaitable[None]],
    ) -> PurePosixPath | None:
        """Run an outcome's writes off the loop; None when it cannot be finished now."""
        try:
            written = await asyncio.to_thread(write)
        except InputChanged as exc:
            await self._input_changed(job, exc)
            return None
        except AlreadyFinished:
            self.busy.discard(job.record.rel)
            log.warning("file.duplicate_dropped", path=str(job.record.rel),
                        reason="its outcome is already committed")  # fmt: skip
            return None
        except OutputError as exc:
            self._retry_commit(job, again, exc)
            return None
        self.busy.discard(job.record.rel)
        return written

    async def _retry_or_fail(self, job: Job, error: TransientError, slot: Slot) -> None:
        attempts = await asyncio.to_thread(self.journal.add_attempt, job.record.id)
        job.record = dataclasses.replace(job.record, attempts=attempts)
        if attempts >= self.config.max_attempts:
            await self._fail(job, error, slot, attempts)
            return
        delay = self._backoff(attempts)
        self.counts.retries += 1
        log.warning(
            "file.retry", path=str(job.record.rel), reason=error.reason, error=error.message,
            attempt=attempts, retry_in_seconds=delay, worker=slot.pid,
        )  # fmt: skip
        why = f"retrying after an error ({error.reason}), attempt {attempts + 1}"
        self.retrying[job.record.rel] = Waiting(str(job.record.rel), job.first_seen, why)
        self._later(delay, lambda: self.queue.put(job))

    def _retry_commit(
        self, job: Job, again: Callable[[], Awaitable[None]], error: OutputError
    ) -> None:
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

    def _later(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        task = asyncio.create_task(run())
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
