"""Randomized soak: odd byte names, odd write patterns, engine and daemon SIGKILLs, then one
invariant once everything is quiet (issue 12).

Seeded and bounded. The seed is printed with the numbers of cases and kills;
``OCR_DAEMON_SOAK_SEED`` replays a run's choices (names, patterns, pauses, kill decisions — the
instants still depend on the machine's timing) and ``OCR_DAEMON_SOAK_SECONDS`` lengthens it
(default 40 s of chaos with the engine double, plus half as long with the real Aspose engine,
the default engine, on fewer files: about two minutes together).

Each writer decides, from what it saw, what its file must end as:
- ``complete``: the file ended whole (or was taken whole): exactly one outcome, and the right
  one — its sidecar (reading the whole file) in the outbox and the input in processed/;
- ``taken``: the daemon moved the file away while it was still being written: exactly one
  outcome (sidecar + processed/, or failed/ + its record), not necessarily a right one — but
  not failed/ either: ``corrupt_grace_seconds`` (3 x settle) outlasts every writer's pause
  (2 x settle at most), so a file cut short is held, not failed, and there are attempts to
  spare for the worker kills (the double reads anything, so its partial files are taken
  often; with Aspose only a partial file that decodes can be);
- ``deleted``: unlinked by its writer: no outcome (a sidecar alone only if the delete raced the
  commit, which the daemon then logs as ``file.vanished_at_disposal``);
- ``skipped``: replaced by a symlink or a FIFO: left in the inbox, no outcome (same race).

After quiescence (writers done, the daemon restarted and idle, the inbox holding only the
symlinks and FIFOs): those invariants, nothing else in outbox/processed/failed, no temp files,
the daemon alive, and it never exited or logged ``daemon.fatal`` by itself.

Two daemon defects it found (issue 12), both fixed and each with its own test since: a worker
SIGKILLed during the daemon's start-up warm-up made the whole daemon exit 75; a file that changed
between its sidecar and its move to processed/ was finished as if it had vanished, then read
again: two sidecars, the first from the bytes before the change.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import stat
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ocr_daemon import safefs
from tests import hostile_files as hf
from tests.harness import DaemonProcess, start, write_config

pytestmark = [pytest.mark.slow, pytest.mark.serial]

FORMATS = {"PNG": b".png", "JPEG": b".jpg", "TIFF": b".tif", "BMP": b".bmp", "GIF": b".gif"}
PIECES = [b"caf\xe9", b"\xff\xfe", b"tab\t", b"new\nline", b"-", b" sp ", b"back\\x", b"UP", b"z"]
FOLDERS = [b"", b"", b"sub", b"d\xe9p", b"a/b c", b"-x/\tq"]
PATTERNS = ["rename", "chunks", "rewrite", "delete", "truncate", "symlink", "fifo"]
SETTLE = 0.5
GRACE = 3 * SETTLE  # corrupt_grace_seconds: longer than any writer's pause (2 x settle)
MAX_ATTEMPTS = 20  # random worker kills must never use up a valid file's attempts
QUIET_SECONDS = 2.5  # idle this long (status.json is rewritten within 1 s of a change) = quiet
QUIET_TIMEOUT = 90.0  # a loaded box reads a page in 2-4 s with Aspose
# Why nothing may end in failed/: valid images, attempts to spare, and corrupt_grace_seconds
# outlasting every pause of a writer (a file cut short reads as corrupt until it is whole).
FAILED_WHY = {
    "complete": "a complete valid input ended in failed/",
    "taken": "a file whose writer never paused longer than 2 x settle ended in failed/ "
    f"(corrupt_grace_seconds = {GRACE:g} s should have held its verdict until it was whole)",
}
LOGGED = ("file.done", "file.failed", "file.retry", "file.changed", "file.vanished",
          "file.vanished_at_disposal", "file.verdict_deferred", "file.duplicate_dropped",
          "journal.recovered")  # fmt: skip


class Taken(Exception):
    """The daemon moved the file away while its writer was still writing it."""


@dataclass
class Case:
    rel: bytes
    pattern: str
    data: bytes
    outcome: str = "writing"  # complete | taken | deleted | skipped, decided by its writer
    notes: list[str] = field(default_factory=list)


@dataclass
class Leg:
    """One soak run: how long, how many writers, how often the chaos strikes, which engine."""

    seconds: float
    writers: int
    gap: tuple[float, float]  # a writer's pause between two files
    chaos_gap: tuple[float, float]  # pause between two kills
    config: dict[str, object]
    real_engine: bool


@dataclass(frozen=True)
class Kill:
    at: float  # seconds into the run
    target: str  # "worker" | "daemon"
    pid: int
    daemon_pid: int
    daemon_state: str  # the daemon's status.json state then ("starting" before it has one)

    def __str__(self) -> str:
        return (
            f"SIGKILL of {self.target} pid {self.pid} at {self.at:.1f} s "
            f"(daemon pid {self.daemon_pid}, {self.daemon_state})"
        )


@dataclass
class Found:
    """Where one case's input and outputs are, after quiescence."""

    sidecar: bool
    processed: bool
    failed: bool
    record: bool
    inbox: bool
    special: bool  # the inbox entry is a symlink or a FIFO

    def one_outcome(self) -> bool:
        succeeded = self.sidecar and self.processed and not (self.failed or self.record)
        gave_up = self.failed and self.record and not (self.sidecar or self.processed)
        return (succeeded or gave_up) and not self.inbox

    def unfinished_problems(self, outcome: str, raced: bool) -> list[str]:
        """For a file deleted or replaced by its writer: no outcome (a sidecar alone only when
        the delete raced the commit), and the inbox as the writer left it."""
        out = []
        if self.processed or self.failed or self.record or (self.sidecar and not raced):
            out.append("has an outcome")
        if outcome == "skipped" and not self.special:
            out.append("its symlink/FIFO is no longer in the inbox")
        if outcome == "deleted" and self.inbox:
            out.append("deleted, yet in the inbox")
        if outcome not in ("deleted", "skipped"):
            out.append("its writer never finished")
        return out


def sidecar_rel(case: Case) -> bytes:
    return case.rel.rsplit(b".", 1)[0] + b".txt"


def record_rel(case: Case) -> bytes:
    return case.rel + b".error.json"


@functools.cache
def image(fmt: str) -> bytes:
    return hf.good(fmt)


def make_case(rng: random.Random, index: int) -> Case:
    fmt = rng.choice(sorted(FORMATS))
    ext = FORMATS[fmt].upper() if rng.random() < 0.25 else FORMATS[fmt]
    stem = (b"-" if rng.random() < 0.2 else b"") + b"%03d" % index
    stem += b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))
    folder = rng.choice(FOLDERS)
    rel = (folder + b"/" if folder else b"") + stem + ext
    return Case(rel=rel, pattern=rng.choice(PATTERNS), data=image(fmt))


# -- writers -------------------------------------------------------------------------------------


def write_case(inbox: bytes, case: Case, rng: random.Random) -> None:
    """Write `case` by its pattern and set its outcome; never raises for a file the daemon took."""
    path = os.path.join(inbox, case.rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        case.outcome = WRITERS[case.pattern](path, case.data, rng)
    except Taken:
        case.outcome = "taken"
        case.notes.append("taken while writing")
    except FileNotFoundError:  # a whole file, gone before the writer's next step: taken whole
        case.outcome = "complete"
        case.notes.append("taken whole before the writer's last step")


def write_renamed(path: bytes, data: bytes, rng: random.Random) -> str:
    tmp = os.path.join(os.path.dirname(path), b".tmp-%d" % rng.randrange(10**9))
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)
    return "complete"


def write_chunked(path: bytes, data: bytes, rng: random.Random) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    write_chunks(fd, path, data, rng)
    return "complete"


def write_rewritten(path: bytes, data: bytes, rng: random.Random) -> str:
    """Whole, then its first half written again in place (same bytes, new mtime)."""
    write_chunked(path, data, rng)
    time.sleep(rng.uniform(0, 2 * SETTLE))
    fd = os.open(path, os.O_WRONLY)  # never O_CREAT: a file the daemon took stays taken
    try:
        os.write(fd, data[: len(data) // 2])
    finally:
        os.close(fd)
    return "complete"


def write_deleted(path: bytes, data: bytes, rng: random.Random) -> str:
    write_chunked(path, data, rng)
    time.sleep(rng.uniform(0, SETTLE / 2))
    os.unlink(path)
    return "deleted"


def write_truncated(path: bytes, data: bytes, rng: random.Random) -> str:
    """Whole, cut to nothing, then written again in chunks."""
    write_chunked(path, data, rng)
    os.truncate(path, 0)
    time.sleep(rng.uniform(0, SETTLE))
    fd = os.open(path, os.O_WRONLY)
    write_chunks(fd, path, data, rng)
    return "complete"


def write_replaced(path: bytes, data: bytes, rng: random.Random, kind: str) -> str:
    with open(path, "wb") as f:
        f.write(data)
    time.sleep(rng.uniform(0, SETTLE / 2))
    os.unlink(path)
    if kind == "symlink":
        os.symlink(b"/etc/hostname", path)
    else:
        os.mkfifo(path)
    return "skipped"


WRITERS: dict[str, Callable[[bytes, bytes, random.Random], str]] = {
    "rename": write_renamed,
    "chunks": write_chunked,
    "rewrite": write_rewritten,
    "delete": write_deleted,
    "truncate": write_truncated,
    "symlink": functools.partial(write_replaced, kind="symlink"),
    "fifo": functools.partial(write_replaced, kind="fifo"),
}


def write_chunks(fd: int, path: bytes, data: bytes, rng: random.Random) -> None:
    """Write `data` through `fd` in random chunks, sometimes pausing up to 2 x settle; raise
    `Taken` (and close `fd`) as soon as `path` is no longer this file."""
    try:
        at = 0
        while at < len(data):
            step = rng.randint(1, max(1, len(data) // 3))
            os.write(fd, data[at : at + step])
            at += step
            if at < len(data):
                time.sleep(rng.uniform(0, 2 * SETTLE) if rng.random() < 0.3 else 0.01)
            if not same_file(fd, path):
                raise Taken(path)
    finally:
        os.close(fd)


def same_file(fd: int, path: bytes) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


# -- the daemon and its processes ----------------------------------------------------------------


def worker_pids(daemon_pid: int) -> list[int]:
    """The daemon's engine worker processes (its spawned children), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat_line.rsplit(")", 1)[1].split()[1])
        if parent == daemon_pid and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return found


def events(root: Path) -> list[dict[str, object]]:
    """Every JSON log line of every daemon run; a line cut short by a SIGKILL is skipped."""
    found = []
    for line in (root / "daemon.log").read_text(errors="surrogateescape").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def tree(top: bytes) -> list[bytes]:
    """Every non-directory entry below `top`, as relative byte paths."""
    return sorted(
        os.path.relpath(os.path.join(d, n), top) for d, _dirs, names in os.walk(top) for n in names
    )


class Soak:
    def __init__(self, root: Path, seed: int, started: list[DaemonProcess], leg: Leg) -> None:
        self.root, self.broot = root, os.fsencode(root)
        self.seed, self.rng, self.started, self.leg = seed, random.Random(seed), started, leg
        self.config = write_config(
            root, settle_seconds=SETTLE, corrupt_grace_seconds=GRACE, max_attempts=MAX_ATTEMPTS,
            **leg.config,
        )  # fmt: skip
        self.cases: list[Case] = []
        self.kills: list[Kill] = []
        self.exits: list[str] = []  # daemons that exited by themselves, described
        self.writer_errors: list[str] = []
        self.timings: dict[str, float] = {}
        self.began = time.monotonic()
        self.logged_for: dict[str, list[str]] = {}  # a path as logged -> its file.* events
        self.log_from: dict[int, int] = {}  # daemon pid -> where its lines start in daemon.log
        self.daemon = self.start()

    def start(self) -> DaemonProcess:
        log = self.root / "daemon.log"
        offset = log.stat().st_size if log.exists() else 0
        daemon = start(self.started, self.config)
        self.log_from[daemon.proc.pid] = offset
        return daemon

    def path(self, folder: bytes, rel: bytes) -> bytes:
        return os.path.join(self.broot, folder, rel)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        for fmt in FORMATS:  # rendered here: PIL cannot save one image from two threads at once
            image(fmt)
        self.daemon.wait_running()
        self.timings["start"] = time.monotonic() - self.began
        stop = time.monotonic() + self.leg.seconds
        lanes = self.leg.writers
        seeds = [self.rng.randrange(2**32) for _ in range(lanes)]
        threads = [threading.Thread(target=self.writer, args=(s, stop, n, lanes))
                   for n, s in enumerate(seeds)]  # fmt: skip
        for t in threads:
            t.start()
        self.chaos(stop)
        for t in threads:
            t.join()
        self.restart_if_dead()
        self.timings["chaos"] = time.monotonic() - self.began - self.timings["start"]

    def writer(self, seed: int, stop: float, lane: int, lanes: int) -> None:
        rng = random.Random(seed)
        index = lane
        inbox = self.path(b"inbox", b"")
        try:
            while time.monotonic() < stop:
                case = make_case(rng, index)
                index += lanes
                self.cases.append(case)
                write_case(inbox, case, rng)
                time.sleep(rng.uniform(*self.leg.gap))
        except Exception:  # reported by the test, not lost with the thread
            self.writer_errors.append(traceback.format_exc())

    def chaos(self, stop: float) -> None:
        while time.monotonic() < stop:
            time.sleep(self.rng.uniform(*self.leg.chaos_gap))
            if self.restart_if_dead(wait=False):
                continue
            if self.rng.random() < 0.7:
                pids = worker_pids(self.daemon.proc.pid)
                if pids:
                    self.kill("worker", self.rng.choice(pids))
            else:  # at any instant, start-up included: the restart is not waited for
                self.kill("daemon", self.daemon.proc.pid)
                self.daemon.proc.wait()
                self.daemon = self.start()

    def kill(self, target: str, pid: int) -> None:
        state = str(self.daemon.status().get("state") or "starting")
        at = time.monotonic() - self.began
        self.kills.append(Kill(at, target, pid, self.daemon.proc.pid, state))
        os.kill(pid, signal.SIGKILL)

    def restart_if_dead(self, wait: bool = True) -> bool:
        """Restart a daemon that exited by itself (as systemd would); True if it had."""
        died = self.daemon.proc.poll() is not None
        if died:
            self.exits.append(self.describe_exit(self.daemon))
            self.daemon = self.start()
        if wait:
            self.daemon.wait_running()
        return died

    def describe_exit(self, daemon: DaemonProcess) -> str:
        """What a daemon that exited by itself said, and the soak's last kill before it."""
        pid = daemon.proc.pid
        with open(self.root / "daemon.log", "rb") as f:
            f.seek(self.log_from[pid])
            lines = f.read().decode(errors="replace").splitlines()
        said = [ln for ln in lines if ln.startswith("ocr-daemon:") or '"daemon.fatal"' in ln]
        last = [k for k in self.kills if k.daemon_pid == pid][-1:]
        found = (
            f"pid {pid} exit {daemon.proc.returncode} (noticed at "
            f"{time.monotonic() - self.began:.1f} s); it said {said}; the soak's last kill of "
            f"its processes: {[str(k) for k in last] or 'none'}"
        )
        if last and last[0].daemon_state == "starting" and any("warm-up" in s for s in said):
            found += (
                " -- a worker SIGKILLed during the daemon's start-up warm-up ends the whole "
                "daemon (pool.Pool.start raises the WorkerCrashed), while at run time the same "
                "death only replaces that worker"
            )
        return found

    # -- quiescence ------------------------------------------------------------------------------

    def wait_quiet(self) -> None:
        """Until the daemon has been idle for QUIET_SECONDS; fails listing what is pending."""
        deadline = time.monotonic() + QUIET_TIMEOUT
        quiet_since: float | None = None
        while True:
            pending = self.pending()
            now = time.monotonic()
            if pending:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= QUIET_SECONDS:
                self.timings["quiet"] = now - self.began - sum(self.timings.values())
                return
            if now > deadline or self.daemon.proc.poll() is not None:
                raise AssertionError(
                    f"seed {self.seed}: not quiet {QUIET_TIMEOUT:g} s after the chaos ended; "
                    "still pending:\n  " + "\n  ".join(pending[:40])
                )
            time.sleep(0.25)

    def pending(self) -> list[str]:
        if self.daemon.proc.poll() is not None:
            return [f"the daemon exited {self.daemon.proc.returncode}"]
        status = self.daemon.status()
        out = [f"status {k} = {status[k]}" for k in ("queued", "in_flight", "retrying")
               if status.get(k)]  # fmt: skip
        if not status:
            out.append("no status.json from the running daemon")
        elif time.time() - float(status.get("updated", 0)) > 15:  # type: ignore[arg-type]
            out.append(f"status.json not rewritten since {status.get('updated')}: loop stuck?")
        inbox = self.path(b"inbox", b"")
        for rel in tree(inbox):
            if stat.S_ISREG(os.lstat(os.path.join(inbox, rel)).st_mode):
                out.append(f"in the inbox: {rel!r} ({self.pattern_of(rel)})")
        return out

    def pattern_of(self, rel: bytes) -> str:
        return next((f"{c.pattern}, {c.outcome}" for c in self.cases if c.rel == rel), "no case")

    # -- the invariant ---------------------------------------------------------------------------

    def problems(self) -> list[str]:
        logged = events(self.root)
        for e in logged:
            if isinstance(e.get("path"), str) and str(e["event"]).startswith("file."):
                self.logged_for.setdefault(str(e["path"]), []).append(str(e["event"]))
        out = []
        for case in self.cases:
            out += [f"{p}; logged for it: {self.log_of(case)}" for p in self.check(case)]
        expected = {
            b"outbox": {sidecar_rel(c) for c in self.cases},
            b"processed": {c.rel for c in self.cases},
            b"failed": {c.rel for c in self.cases} | {record_rel(c) for c in self.cases},
        }
        for folder, names in expected.items():
            for name in tree(os.path.join(self.broot, folder)):
                if os.path.basename(name).startswith(b"."):
                    out.append(f"temp file left in {folder.decode()}/: {name!r}")
                elif name not in names:
                    out.append(f"unexpected in {folder.decode()}/: {name!r}{self.whose(name)}")
        for name in tree(self.path(b"inbox", b"")):
            if os.path.basename(name).startswith(b"."):
                out.append(f"temp file left in inbox/: {name!r}")
        out += [f"the daemon exited by itself: {e}" for e in self.exits]
        if self.daemon.proc.poll() is not None:
            out.append(f"the daemon is not alive: exit {self.daemon.proc.returncode}")
        out += [f"daemon.fatal logged: {e}" for e in logged if e["event"] == "daemon.fatal"]
        return out

    def log_of(self, case: Case) -> list[str]:
        return self.logged_for.get(safefs.shown(os.fsdecode(case.rel)), [])

    def whose(self, name: bytes) -> str:
        """For a numbered duplicate (``scan (2).txt``): the case it is a second outcome of."""
        first = re.sub(rb" \(\d+\)(?=\.[^./]*$|\.[^./]*\.error\.json$)", b"", name)
        for case in self.cases:
            if first in (case.rel, sidecar_rel(case), record_rel(case)):
                return (
                    f", a second outcome of {case.rel!r} ({case.pattern}, "
                    f"{', '.join([case.outcome, *case.notes])}; logged for it: "
                    f"{self.log_of(case)})"
                )
        return ""

    def check(self, case: Case) -> list[str]:
        raced = "file.vanished_at_disposal" in self.log_of(case)
        found = self.find(case)
        what = f"{case.rel!r} ({case.pattern}, {', '.join([case.outcome, *case.notes])}): {found}"
        if case.outcome in ("complete", "taken"):
            if not found.one_outcome():
                return [f"{what}: not exactly one outcome"]
            if found.failed:
                return [f"{what}: {FAILED_WHY[case.outcome]}: {self.record(case)}"]
            return self.check_right(case, what) if case.outcome == "complete" else []
        return [f"{what}: {p}" for p in found.unfinished_problems(case.outcome, raced)]

    def find(self, case: Case) -> Found:
        inbox = self.path(b"inbox", case.rel)
        try:
            mode: int | None = os.lstat(inbox).st_mode
        except FileNotFoundError:
            mode = None
        return Found(
            sidecar=os.path.lexists(self.path(b"outbox", sidecar_rel(case))),
            processed=os.path.lexists(self.path(b"processed", case.rel)),
            failed=os.path.lexists(self.path(b"failed", case.rel)),
            record=os.path.lexists(self.path(b"failed", record_rel(case))),
            inbox=mode is not None,
            special=mode is not None and (stat.S_ISLNK(mode) or stat.S_ISFIFO(mode)),
        )

    def record(self, case: Case) -> str:
        path = Path(os.fsdecode(self.path(b"failed", record_rel(case))))
        record = json.loads(path.read_text())
        return f"{record['reason']}: {record['message']} (attempts {record['attempts']})"

    def check_right(self, case: Case, what: str) -> list[str]:
        """A complete valid input, processed: its sidecar read the whole file."""
        text = Path(os.fsdecode(self.path(b"outbox", sidecar_rel(case)))).read_bytes().decode()
        if self.leg.real_engine:
            right = any(word in text for word in hf.FIRST_WORDS)
        else:
            right = text.strip().endswith(f"({len(case.data)} bytes)")
        return [] if right else [f"{what}: its sidecar did not read the whole file: {text!r}"]

    def summary(self) -> str:
        outcomes = Counter(c.outcome for c in self.cases)
        patterns = Counter(c.pattern for c in self.cases)
        logged = Counter(str(e["event"]) for e in events(self.root))
        shown = {k: logged[k] for k in LOGGED if logged[k]}
        timings = {k: round(v, 1) for k, v in self.timings.items()}
        kills = Counter(k.target for k in self.kills)
        starting = sum(k.target == "worker" and k.daemon_state == "starting" for k in self.kills)
        return (
            f"soak seed {self.seed}: {len(self.cases)} cases {dict(patterns)}, "
            f"outcomes {dict(outcomes)}; {kills['worker']} worker kills "
            f"({starting} during start-up), {kills['daemon']} daemon kills, "
            f"{len(self.exits)} daemon exits on their own; logged {shown}; "
            f"seconds {timings}"
        )


def soak(root: Path, started: list[DaemonProcess], leg: Leg) -> None:
    seed = int(os.environ.get("OCR_DAEMON_SOAK_SEED") or random.randrange(2**32))
    print(f"soak seed {seed} (replay: OCR_DAEMON_SOAK_SEED={seed})")
    run = Soak(root, seed, started, leg)
    try:
        run.run()
        assert not run.writer_errors, f"seed {seed}: a writer died:\n" + "\n".join(
            run.writer_errors
        )
        run.wait_quiet()
        found = run.problems()
    finally:
        print(run.summary())
    assert not found, f"seed {seed}: " + "\n".join(found[:40])


def soak_seconds() -> float:
    return float(os.environ.get("OCR_DAEMON_SOAK_SECONDS") or 40)


def test_soak_with_the_engine_double(tmp_path: Path, daemon_factory: list[DaemonProcess]) -> None:
    leg = Leg(seconds=soak_seconds(), writers=3, gap=(0, SETTLE), chaos_gap=(0.5, 4.0),
              config={}, real_engine=False)  # fmt: skip
    soak(tmp_path, daemon_factory, leg)


def test_soak_with_the_real_engine(tmp_path: Path, daemon_factory: list[DaemonProcess]) -> None:
    """Aspose, the default engine: a killed worker takes 3-5 s to warm up again here and a page
    1.5-2.5 s to read, so fewer files and kills further apart."""
    leg = Leg(seconds=soak_seconds() / 2, writers=2, gap=(0.5, 2.0), chaos_gap=(3.0, 8.0),
              config={"engine": "aspose", "workers": 1}, real_engine=True)  # fmt: skip
    soak(tmp_path, daemon_factory, leg)
