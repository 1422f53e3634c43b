"""The state journal: an SQLite file in the state directory that makes "exactly once" hold across
crashes. The inbox stays the source of truth; the journal only remembers what is needed to finish
or undo an outcome that was interrupted.

A job row goes ``active`` (seen, maybe being recognised; attempts counted) → ``committing``
(output names reserved, outputs about to be written) → ``done`` or ``failed``. An input with
several outputs (``outputs = ["txt", "json", ...]``) reserves the whole set at once (``members``)
and is marked ``staged`` once every member's temp file is durable: from then on the set is
finished after a crash, before it, undone. After a crash,
`Journal.interrupted()` lists committing rows; the daemon finishes each (its output exists) or
returns it to active (it does not). Paths are stored as bytes, so any file name round-trips.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from ocr_daemon.errors import AlreadyRunning
from ocr_daemon.safefs import Identity

State = Literal["active", "committing", "done", "failed", "gone"]
Outcome = Literal["done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    rel BLOB NOT NULL,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    output BLOB,
    moved_to BLOB,
    reason TEXT,
    members BLOB,
    staged INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_rel ON jobs (rel);
DROP INDEX IF EXISTS jobs_open;
-- Outcomes in progress are few; every new outcome checks its names against them, so this index
-- keeps that check independent of the journal's size (without it: a table scan per file).
CREATE INDEX IF NOT EXISTS jobs_committing ON jobs (id) WHERE state = 'committing';
"""


@dataclass(frozen=True)
class JobRecord:
    id: int
    rel: PurePosixPath
    identity: Identity
    state: State
    attempts: int
    outcome: Outcome | None = None
    output: PurePosixPath | None = None
    moved_to: PurePosixPath | None = None
    reason: str | None = None
    members: tuple[PurePosixPath, ...] = ()  # every output of a set (`output` first); () for one
    staged: bool = False  # all members' temp files are durable: finish the set, never undo it


_SEP = b"\0"  # between members: the one byte no path holds
_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Serialise journal calls: outcomes are committed from worker threads."""

    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _enc(path: PurePosixPath | None) -> bytes | None:
    return None if path is None else os.fsencode(str(path))


def _dec(raw: bytes | None) -> PurePosixPath | None:
    return None if raw is None else PurePosixPath(os.fsdecode(raw))


def _enc_members(members: tuple[PurePosixPath, ...]) -> bytes | None:
    return _SEP.join(os.fsencode(str(m)) for m in members) if members else None


def _dec_members(raw: bytes | None) -> tuple[PurePosixPath, ...]:
    return tuple(PurePosixPath(os.fsdecode(m)) for m in raw.split(_SEP)) if raw else ()


class Journal:
    """One daemon's journal; holds an exclusive lock on the state directory while open."""

    FILE = "journal.sqlite3"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock_fd = -1
        self._db: sqlite3.Connection | None = None
        self._mutex = threading.RLock()

    def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.state_dir / "lock")
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        path = self.state_dir / self.FILE
        try:
            db = _open_db(path)
        except sqlite3.DatabaseError:
            # Corrupt journal: keep it for inspection, start a new one. The inbox is the source of
            # truth, so the cost is at most re-recognising files whose outcome was interrupted.
            path.rename(path.with_suffix(f".corrupt-{int(time.time())}"))
            db = _open_db(path)
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "journal not open"
        return self._db

    @_locked
    def begin(self, rel: PurePosixPath, identity: Identity) -> JobRecord:
        """The open or finished row for this exact file, or a new active one."""
        row = self.db.execute(
            "SELECT * FROM jobs WHERE rel = ? AND dev = ? AND ino = ? AND size = ? AND mtime_ns = ?"
            " AND state != 'gone' ORDER BY id DESC LIMIT 1",
            (_enc(rel), identity.dev, identity.ino, identity.size, identity.mtime_ns),
        ).fetchone()
        if row is not None:
            return _record(row)
        now = time.time()
        with self.db:
            cur = self.db.execute(
                "INSERT INTO jobs (rel, dev, ino, size, mtime_ns, state, created, updated)"
                " VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                (_enc(rel), identity.dev, identity.ino, identity.size, identity.mtime_ns, now, now),
            )
        assert cur.lastrowid is not None
        return JobRecord(cur.lastrowid, rel, identity, "active", 0)

    @_locked
    def add_attempt(self, job_id: int) -> int:
        with self.db:
            self.db.execute(
                "UPDATE jobs SET attempts = attempts + 1, updated = ? WHERE id = ?",
                (time.time(), job_id),
            )
        row = self.db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return int(row[0])

    @_locked
    def reserve(
        self,
        job_id: int,
        outcome: Outcome,
        output: PurePosixPath,
        moved_to: PurePosixPath | None,
        reason: str | None = None,
        *,
        members: tuple[PurePosixPath, ...] = (),
    ) -> bool:
        """Record the names an outcome will use, before anything is written (`members`: all of
        a set's outputs, `output` among them). Conditional: only an active job can be reserved,
        so a second result for a job (a duplicate from another worker, a retry racing a commit)
        can never start a second outcome; False then."""
        with self.db:
            cursor = self.db.execute(
                "UPDATE jobs SET state = 'committing', outcome = ?, output = ?, moved_to = ?,"
                " reason = ?, members = ?, staged = 0, updated = ?"
                " WHERE id = ? AND state = 'active'",
                (outcome, _enc(output), _enc(moved_to), reason, _enc_members(members),
                 time.time(), job_id),
            )  # fmt: skip
        return cursor.rowcount == 1

    @_locked
    def stage(self, job_id: int) -> None:
        """Every member of the job's set is written to a durable temp file: the point of no
        return (a crash after it finishes the set, before it undoes the set)."""
        with self.db:
            self.db.execute(
                "UPDATE jobs SET staged = 1, updated = ? WHERE id = ? AND state = 'committing'",
                (time.time(), job_id),
            )

    @_locked
    def finish(self, job_id: int, state: State) -> None:
        with self.db:
            self.db.execute(
                "UPDATE jobs SET state = ?, updated = ? WHERE id = ?", (state, time.time(), job_id)
            )

    @_locked
    def reopen(self, job_id: int) -> None:
        """An interrupted outcome that wrote nothing: the job is active again."""
        with self.db:
            self.db.execute(
                "UPDATE jobs SET state = 'active', outcome = NULL, output = NULL, moved_to = NULL,"
                " members = NULL, staged = 0, updated = ? WHERE id = ?",
                (time.time(), job_id),
            )

    @_locked
    def is_reserved(self, output: PurePosixPath) -> bool:
        """Whether another committing job already claimed this output or moved-to name (or has
        it in its set)."""
        raw = _enc(output)
        assert raw is not None
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE state = 'committing' AND (output = ? OR moved_to = ?"
            " OR instr(CAST(? AS BLOB) || members || CAST(? AS BLOB), ?) > 0)",
            (raw, raw, _SEP, _SEP, _SEP + raw + _SEP),
        ).fetchone()
        return row is not None

    @_locked
    def progress(self, job_id: int) -> tuple[int, State] | None:
        """A job's attempts and state; None when the journal has no such job."""
        row = self.db.execute("SELECT attempts, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    @_locked
    def record(self, job_id: int) -> JobRecord | None:
        """The job as the journal has it now (state, reserved outcome); None if unknown."""
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    @_locked
    def interrupted(self) -> list[JobRecord]:
        rows = self.db.execute("SELECT * FROM jobs WHERE state = 'committing' ORDER BY id")
        return [_record(row) for row in rows]


def _open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(_SCHEMA)
    _add_set_columns(db)
    db.execute("SELECT COUNT(*) FROM jobs").fetchone()
    db.isolation_level = "DEFERRED"
    return db


def _add_set_columns(db: sqlite3.Connection) -> None:
    """A journal from before output sets gains their columns (existing rows: single outputs)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "members" not in have:
        db.execute("ALTER TABLE jobs ADD COLUMN members BLOB")
    if "staged" not in have:
        db.execute("ALTER TABLE jobs ADD COLUMN staged INTEGER NOT NULL DEFAULT 0")


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = path.read_text().strip() or "another process"
        raise AlreadyRunning(
            f"another ocr-daemon (pid {holder}) is using this state directory", str(path.parent)
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        rel=PurePosixPath(os.fsdecode(row["rel"])),
        identity=Identity(row["dev"], row["ino"], row["size"], row["mtime_ns"]),
        state=row["state"],
        attempts=row["attempts"],
        outcome=row["outcome"],
        output=_dec(row["output"]),
        moved_to=_dec(row["moved_to"]),
        reason=row["reason"],
        members=_dec_members(row["members"]),
        staged=bool(row["staged"]),
    )
