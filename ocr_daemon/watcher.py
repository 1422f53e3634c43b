"""When an inbox file is complete, and handing it on once (which entries are candidates at all:
`inbox`).

Three sources feed one settle tracker: a scan of the whole inbox at start, one long-lived
`watchfiles.awatch` (polling on network and FUSE filesystems, where inotify misses remote writes),
and a periodic reconciliation scan so an event lost to an inotify overflow or a remount never
strands a file. A file is complete once it has been quiet (no event, same size, mtime and inode)
for ``settle_seconds`` and is non-empty. Symlinks, FIFOs, sockets and devices are never opened.

The filesystem work (walks, and the name check and lstat of each watch event) runs in threads;
the loop keeps only the bookkeeping, `SLICE` entries a step, so neither a folder of 10,000 moved
in nor a burst of events holds it. A look taken in a thread may be a moment old when it is
noted: that can only restart a quiet period, never hand a file on early, because
`_check_settled` looks again and hands on only a file whose identity is still the one noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# watchfiles imports anyio and its asyncio backend on an awatch's first step, on the loop (20 ms
# of CPU): imported here, with the daemon, the loop never pays for it
import anyio._backends._asyncio  # noqa: F401
import structlog
import watchfiles
from watchfiles._rust_notify import WatchfilesRustInternalError

from ocr_daemon import safefs
from ocr_daemon.config import Config
from ocr_daemon.inbox import InboxFilter, remote_filesystem, scan, special_reason
from ocr_daemon.status import Waiting

log = structlog.get_logger()

Emit = Callable[[PurePosixPath, safefs.Identity], Awaitable[None]]
Inode = tuple[int, int]
Look = tuple[PurePosixPath, os.stat_result | None]  # None: gone
SLICE = 128  # entries noted per loop step: a slice's bookkeeping stays well under 10 ms


@dataclass
class _Pending:
    identity: safefs.Identity
    quiet_since: float
    first_seen: float
    warned: bool = False


@dataclass
class Settler:
    """Candidates that are not complete yet, and when each is next due for a look."""

    settle_seconds: float
    pending: dict[PurePosixPath, _Pending] = field(default_factory=dict)

    def touch(self, rel: PurePosixPath, st: os.stat_result, quiet_since: float) -> None:
        ident = safefs.Identity.of(st)
        entry = self.pending.get(rel)
        if entry is None or entry.identity != ident or quiet_since > entry.quiet_since:
            first_seen = entry.first_seen if entry else time.monotonic()
            warned = entry.warned if entry else False
            self.pending[rel] = _Pending(ident, quiet_since, first_seen, warned)

    def next_due(self) -> float | None:
        if not self.pending:
            return None
        return min(p.quiet_since for p in self.pending.values()) + self.settle_seconds

    def due(self, now: float) -> list[PurePosixPath]:
        return [r for r, p in self.pending.items() if now - p.quiet_since >= self.settle_seconds]

    def waiting(self, held: Mapping[PurePosixPath, str]) -> list[Waiting]:
        """Each candidate, since when it was first seen, and why it waits (`held`: the reason of
        a verdict held back while the file may still grow)."""
        wall = time.time() - time.monotonic()  # first_seen is monotonic; Waiting is wall clock
        return [
            Waiting(str(rel), wall + p.first_seen, _why(p, held.get(rel)))
            for rel, p in self.pending.items()
        ]


def _why(pending: _Pending, held: str | None) -> str:
    if held:
        return f"held verdict ({held}): failed only if it stays unchanged for corrupt_grace_seconds"
    if pending.identity.size == 0:
        return "settling: empty, waiting for content"
    return "settling: waiting until it has not changed for settle_seconds"


class InboxWatcher:
    """Finds complete candidates in the inbox and hands each to `emit` once.

    `emit` is awaited (so a full queue applies back-pressure); `is_busy(rel)` says whether a file
    is already queued or in flight, so it is not tracked again.
    """

    UNSETTLED_WARNING_SECONDS = 300.0
    UNDECODABLE_PAUSE = 1.0

    def __init__(
        self,
        config: Config,
        emit: Emit,
        is_busy: Callable[[PurePosixPath], bool],
        *,
        wait_for_content: bool = True,
    ) -> None:
        self.config = config
        self.wait_for_content = wait_for_content
        self.rules = InboxFilter(config.ignore_patterns)
        self.settler = Settler(config.settle_seconds)
        self.emit = emit
        self.is_busy = is_busy
        self._wake = asyncio.Event()
        self._skipped: set[PurePosixPath] = set()
        self._walks: set[asyncio.Task[None]] = set()
        self._rescan_task: asyncio.Task[None] | None = None
        self._rescan_wanted = False
        self._undecodable_warned = self._undecodable_last = -1e9
        self.scanning = False
        self.polling = self._choose_polling()

    def _choose_polling(self) -> bool:
        if self.config.force_polling is not None:
            return self.config.force_polling
        fstype = remote_filesystem(self.config.inbox.resolve())
        if fstype:
            log.info(
                "watcher.polling", reason=f"inbox is on {fstype}, inotify misses remote writes"
            )
        return fstype is not None

    def reconfigure(self, config: Config) -> None:
        """Apply the live-reloadable keys (settle time, ignore patterns)."""
        self.config = config
        self.rules = InboxFilter(config.ignore_patterns)
        self.settler.settle_seconds = config.settle_seconds
        self._wake.set()

    # -- sources -------------------------------------------------------------------------------

    async def scan(self, *, trust_mtime: bool) -> int:
        """Offer every candidate now in the inbox; returns how many were found.

        Streams: with `trust_mtime` (start-up and reconciliation scans) a file whose mtime is
        already older than the settle time is handed on at once — `emit` blocks while the queue is
        full, so a backlog of any size keeps memory flat — and only younger files are tracked.
        """
        self.scanning = True
        try:
            entries = scan(self.config.inbox, self.rules)
            found = 0
            while batch := await asyncio.to_thread(_take, entries, SLICE):
                for rel, st in batch:
                    if self._consider(rel, st):
                        found += 1
                        await self._offer(rel, st, trust_mtime)
            self._wake.set()
            return found
        finally:
            self.scanning = False

    async def _offer(self, rel: PurePosixPath, st: os.stat_result, trust_mtime: bool) -> None:
        age = max(0.0, time.time() - st.st_mtime) if trust_mtime else 0.0
        settled = age >= self.settler.settle_seconds and st.st_size > 0
        if settled and rel not in self.settler.pending:
            await self.emit(rel, safefs.Identity.of(st))
        else:
            self.settler.touch(rel, st, quiet_since=time.monotonic() - age)

    def _consider(self, rel: PurePosixPath, st: os.stat_result) -> bool:
        reason = special_reason(st)
        if reason is not None:
            if rel not in self._skipped:
                self._skipped.add(rel)
                log.warning("file.skipped", path=str(rel), reason=reason)
            return False
        return not self.is_busy(rel)

    def on_change(self, path: str) -> None:
        """A watch event for `path`: (re)start its quiet period (looked at here, on the loop:
        for one path; a watch batch is looked at in threads, see `_take_in`)."""
        for rel, st in self._look([path]):
            self._note(rel, st)

    async def _take_in(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        """A batch of watch events: looked at in one thread hop, noted on the loop a slice at a
        time (other tasks run between slices)."""
        if not changes:
            return
        looks = await asyncio.to_thread(self._look, (path for _change, path in changes))
        for start in range(0, len(looks), SLICE):
            if start:
                await asyncio.sleep(0)
            for rel, st in looks[start : start + SLICE]:
                self._note(rel, st)

    def _look(self, paths: Iterable[str]) -> list[Look]:
        """Each of `paths` (once) that may be a candidate by name, with its lstat: the
        filesystem work, and for a watch batch the per-event work too, done in a thread."""
        looks: list[Look] = []
        for path in dict.fromkeys(paths):
            try:
                rel = PurePosixPath(Path(path).relative_to(self.config.inbox))
            except ValueError:
                continue
            if rel.parts and self.rules.ignored_reason(rel) is None:
                looks.append((rel, safefs.lstat_in(self.config.inbox, rel)))
        return looks

    def _note(self, rel: PurePosixPath, st: os.stat_result | None) -> None:
        """What a watch event's look found: gone, a folder moved in, or a quiet period to
        (re)start (bookkeeping only)."""
        if st is None:
            self.settler.pending.pop(rel, None)
        elif stat.S_ISDIR(st.st_mode):
            self._track_new_dir(rel)
        elif self._consider(rel, st):
            self.settler.touch(rel, st, quiet_since=time.monotonic())
            self._wake.set()

    def _track_new_dir(self, rel: PurePosixPath) -> None:
        # A folder moved into the inbox brings files the watch never saw being created. It is
        # walked in a thread, in batches like `scan`: 10,000 files must not stall the loop.
        task = asyncio.get_running_loop().create_task(self._walk_new_dir(rel))
        self._walks.add(task)
        task.add_done_callback(self._walks.discard)
        task.add_done_callback(_report_failure)

    async def _walk_new_dir(self, rel: PurePosixPath) -> None:
        now = time.monotonic()
        entries = scan(self.config.inbox, self.rules, top=rel)
        while batch := await asyncio.to_thread(_take, entries, SLICE):
            for path, st in batch:
                if self._consider(path, st):
                    self.settler.touch(path, st, quiet_since=now)
        self._wake.set()

    # -- loops ---------------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """One long-lived awatch; restarted (with a rescan) if the inbox disappears and returns,
        and at once when watchfiles cannot decode an event's path (see `_undecodable`)."""
        restarted = False
        try:
            while not stop.is_set():
                await self._wait_for_inbox(stop)
                inbox_st = self.config.inbox.stat()
                # a remounted tmpfs root is inode 1 again:
                inode = (inbox_st.st_dev, inbox_st.st_ino)
                changes_iter = watchfiles.awatch(
                    self.config.inbox, watch_filter=None, stop_event=stop, debounce=400, step=50,
                    force_polling=self.polling, poll_delay_ms=500, recursive=True,
                    ignore_permission_denied=True, rust_timeout=5_000, yield_on_timeout=True,
                )  # fmt: skip
                if restarted:  # a new folder, or events lost with an undecodable batch
                    self._rescan()  # its first step runs after `async for` below armed the watch
                restarted = True
                if await self._follow(changes_iter, inode) and not stop.is_set():
                    log.warning("watcher.restarting", inbox=str(self.config.inbox))
                    await asyncio.sleep(1.0)
        finally:
            if self._rescan_task is not None:
                self._rescan_task.cancel()

    async def _follow(
        self, changes_iter: AsyncIterator[set[tuple[watchfiles.Change, str]]], inode: Inode
    ) -> bool:
        """Feed one awatch's events to `_take_in`; True when a pause should precede a restart."""
        try:
            async for changes in changes_iter:
                await self._take_in(changes)
                if not _same_dir(self.config.inbox, inode):
                    break
        except Exception as exc:
            cause = _watch_error(exc)
            if cause is None:
                raise
            if not _undecodable(cause):
                log.error("watcher.error", error=str(cause))
                return True
            await self._undecodable_pause(cause)
            return False
        return True

    def _rescan(self) -> None:
        """Scan the whole inbox in a task of its own; asked again while one runs, it runs once
        more after it (a scan is never cut short: each one's own reads can end the next watch)."""
        self._rescan_wanted = True
        if self._rescan_task is None or self._rescan_task.done():
            self._rescan_task = asyncio.get_running_loop().create_task(
                self._rescans(), name="rescan"
            )
            self._rescan_task.add_done_callback(_report_failure)

    async def _rescans(self) -> None:
        while self._rescan_wanted:
            self._rescan_wanted = False
            await self.scan(trust_mtime=False)

    async def _undecodable_pause(self, cause: BaseException) -> None:
        """One warning a minute, and at most one restart every UNDECODABLE_PAUSE seconds: a
        folder whose name is not UTF-8 ends every new watch at once (watchfiles decodes even the
        open events of its own crawl and of our scans), so the watch then works as a poll."""
        now = time.monotonic()
        if now - self._undecodable_warned >= 60.0:
            self._undecodable_warned = now
            log.warning(
                "watcher.undecodable", error=str(cause),
                action="watch restarted, the inbox rescanned to find the file",
            )  # fmt: skip
        wait = self._undecodable_last + self.UNDECODABLE_PAUSE - now
        self._undecodable_last = now
        if wait > 0:
            await asyncio.sleep(wait)

    async def _wait_for_inbox(self, stop: asyncio.Event) -> None:
        warned = False
        while not self.config.inbox.is_dir() and not stop.is_set():
            if not warned:
                log.error("inbox.missing", inbox=str(self.config.inbox))
                warned = True
            await asyncio.sleep(1.0)
        if warned:
            log.info("inbox.back", inbox=str(self.config.inbox))
            await self.scan(trust_mtime=False)

    async def reconcile(self, stop: asyncio.Event) -> None:
        """The periodic full scan that catches whatever the watch missed."""
        interval = self.config.rescan_interval_seconds
        while interval > 0 and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if not stop.is_set() and self.config.inbox.is_dir():
                found = await self.scan(trust_mtime=True)
                log.debug("inbox.rescanned", candidates=found)
            interval = self.config.rescan_interval_seconds

    async def settle(self, stop: asyncio.Event) -> None:
        """Hand on each candidate once it has been quiet for the settle time."""
        while not stop.is_set():
            due_at = self.settler.next_due()
            timeout = None if due_at is None else max(0.0, due_at - time.monotonic())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            for rel in self.settler.due(time.monotonic()):
                await self._check_settled(rel)

    async def _check_settled(self, rel: PurePosixPath) -> None:
        entry = self.settler.pending.get(rel)
        if entry is None:
            return
        st = safefs.lstat_in(self.config.inbox, rel)
        if st is None or not self._consider(rel, st):
            del self.settler.pending[rel]
            return
        ident = safefs.Identity.of(st)
        if ident == entry.identity and ident.size > 0:
            del self.settler.pending[rel]
            await self.emit(rel, ident)
            return
        now = time.monotonic()
        if ident != entry.identity:
            self.settler.touch(rel, st, quiet_since=now)
        elif self.wait_for_content:
            entry.quiet_since = now  # empty: keep waiting for content
        else:
            del self.settler.pending[rel]
            log.warning("file.skipped", path=str(rel), reason="empty file, left in the inbox")
            return
        self._warn_if_stuck(rel, ident)

    def _warn_if_stuck(self, rel: PurePosixPath, ident: safefs.Identity) -> None:
        entry = self.settler.pending[rel]
        if entry.warned:
            return
        if time.monotonic() - entry.first_seen > self.UNSETTLED_WARNING_SECONDS:
            entry.warned = True
            reason = "empty: waiting for content" if ident.size == 0 else "still being written"
            log.warning("file.unsettled", path=str(rel), reason=reason, size=ident.size)


def _report_failure(task: asyncio.Task[None]) -> None:
    """A background walk or rescan that failed: said, not lost (the periodic scan retries)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("watcher.scan_failed", task=task.get_name(), error=repr(task.exception()))


def _watch_error(exc: BaseException) -> BaseException | None:
    """The error that ended an awatch, if it is one a restart can cure; None for anything else.
    watchfiles raises from inside an anyio task group, so the error comes wrapped in a group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, (FileNotFoundError, RuntimeError, OSError)) else None


def _undecodable(exc: BaseException) -> bool:
    """Whether watchfiles gave up on a path that is not UTF-8 (any name Linux allows is).

    Its Rust side turns each event path into a str and cannot for such a name: it records
    "Unable to decode path ... to string", drops the rest of that batch, and its next watch call
    raises WatchfilesRustInternalError, which ends the whole awatch (watchfiles 1.x, src/lib.rs).
    It cannot be made to carry bytes, so the boundary is here: restart the watch at once and
    rescan the inbox, whose walk (os.scandir with str paths) round-trips such names losslessly.
    """
    return isinstance(exc, WatchfilesRustInternalError) and "Unable to decode path" in str(exc)


def _same_dir(path: Path, inode: Inode) -> bool:
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino) == inode
    except OSError:
        return False


def _take(
    entries: Iterator[tuple[PurePosixPath, os.stat_result]], count: int
) -> list[tuple[PurePosixPath, os.stat_result]]:
    return [entry for _, entry in zip(range(count), entries, strict=False)]
