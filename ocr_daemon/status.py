"""The daemon's live state: counts kept while it runs, rendered as systemd's one-line ``STATUS=``,
written to ``status.json`` in the state directory, and read back by ``ocr-daemon status``; the
file that has waited longest and why (`Waiting`); and how a batch is getting on (`Progress`, the
periodic ``progress`` event).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

STATUS_FILE = "status.json"
PROGRESS_SECONDS = 5.0  # a `progress` event this often while work is queued or in flight
RATE_WINDOW_SECONDS = 120.0  # the rate (and so the ETA) is measured over this recent stretch


class Waiting(NamedTuple):
    """A file not yet being recognised: its inbox path, since when (wall clock) and why."""

    path: str
    since: float
    why: str


def oldest(candidates: list[Waiting]) -> dict[str, Any]:
    """The longest-waiting file as status.json holds it ({} when nothing waits)."""
    return min(candidates, key=lambda w: w.since)._asdict() if candidates else {}


@dataclass
class Counts:
    """What the daemon has done since it started, and what it is doing now."""

    state: str = "starting"
    queued: int = 0
    in_flight: int = 0
    retrying: int = 0
    settling: int = 0
    done: int = 0
    failed: int = 0
    pages: int = 0  # pages of the files done
    retries: int = 0
    last_error: str = ""
    hosts: str = ""  # worker hosts of a cluster coordinator, one "name up|lost N done" each
    workers: list[dict[str, Any]] = field(default_factory=list)
    waiting: dict[str, Any] = field(default_factory=dict)  # `oldest`: the longest-waiting file

    def one_line(self) -> str:
        line = (
            f"{self.state}: queue {self.queued}, in flight {self.in_flight}, "
            f"done {self.done}, failed {self.failed}"
        )
        if self.settling:
            line += f", settling {self.settling}"
        if self.retrying:
            line += f", retrying {self.retrying}"
        if self.hosts:
            line += f"; hosts: {self.hosts}"
        if self.last_error:
            line += f"; last error: {self.last_error}"
        return line

    def working(self) -> bool:
        """Files are queued, in flight or due for a retry (a file only settling is not work
        yet: an empty file may wait for content for days)."""
        return bool(self.queued or self.in_flight or self.retrying)


class Progress:
    """The ``progress`` event's fields every `PROGRESS_SECONDS` while the daemon works: the
    counts, files and pages per minute over the last `RATE_WINDOW_SECONDS`, and an ETA for what
    is known (queued, in flight, retrying, settling) at that rate. Idle: nothing, and the rate
    starts afresh with the next batch."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int, int]] = deque()  # (monotonic, finished, pages)
        self.last_event = 0.0

    def fields(self, counts: Counts, now: float) -> dict[str, Any] | None:
        """The event's fields when one is due now, else None."""
        if not counts.working():
            self.samples.clear()
            return None
        self._sample(counts, now)
        if now - self.last_event < PROGRESS_SECONDS or len(self.samples) < 2:
            return None
        self.last_event = now
        return self._fields(counts)

    def _sample(self, counts: Counts, now: float) -> None:
        self.samples.append((now, counts.done + counts.failed, counts.pages))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_SECONDS:
            self.samples.popleft()

    def _fields(self, counts: Counts) -> dict[str, Any]:
        (start, files0, pages0), (end, files1, pages1) = self.samples[0], self.samples[-1]
        minutes = max(end - start, 1e-9) / 60
        files_per_minute = (files1 - files0) / minutes
        left = counts.queued + counts.in_flight + counts.retrying + counts.settling
        eta = round(left / files_per_minute * 60) if files_per_minute > 0 else None
        return {
            "done": counts.done, "failed": counts.failed, "queued": counts.queued,
            "in_flight": counts.in_flight, "settling": counts.settling,
            "retrying": counts.retrying, "files_per_minute": round(files_per_minute, 1),
            "pages_per_minute": round((pages1 - pages0) / minutes, 1), "eta_seconds": eta,
        }  # fmt: skip


def write_status(state_dir: Path, counts: Counts, extra: dict[str, Any]) -> None:
    """Atomically replace ``status.json`` (a small file the daemon alone writes)."""
    payload = {"pid": os.getpid(), "updated": time.time(), **extra, **asdict(counts)}
    tmp = state_dir / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, state_dir / STATUS_FILE)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data: dict[str, Any] = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        return data
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def render(data: dict[str, Any] | None, state_dir: Path) -> tuple[str, bool]:
    """Human-readable status and whether the daemon is running."""
    if data is None:
        return f"ocr-daemon: not running (no status in {state_dir})", False
    running = pid_alive(int(data.get("pid", 0))) and data.get("state") != "stopped"
    age = time.time() - float(data.get("updated", 0))
    lines = [
        f"ocr-daemon: {'running' if running else 'not running'} (pid {data.get('pid')}, "
        f"status written {age:.0f} s ago)",
        f"  {Counts(**_counts_fields(data)).one_line()}",
        *_waiting_line(data.get("waiting") or {}),
        f"  engine: {data.get('engine', '?')}; {data.get('licence', '')}",
        f"  inbox: {data.get('inbox', '?')}",
    ]
    lines += [
        f"  worker {w.get('slot')}: pid {w.get('pid')}, {w.get('jobs_done', 0)} jobs"
        f"{', busy' if w.get('busy') else ''}"
        for w in data.get("workers", [])
    ]
    hosts = (data.get("cluster") or {}).get("hosts", {})
    lines += [
        f"  worker host {name}: {'alive' if h.get('alive') else 'LOST'}, {h.get('results', 0)}"
        f" results, {h.get('duplicates_dropped', 0)} duplicates dropped"
        for name, h in hosts.items()
    ]
    return "\n".join(lines), running


def _waiting_line(waiting: dict[str, Any]) -> list[str]:
    if not waiting:
        return []
    age = max(0.0, time.time() - float(waiting.get("since", 0)))
    return [f"  waiting longest: {waiting.get('path')} for {age:.0f} s ({waiting.get('why')})"]


def _counts_fields(data: dict[str, Any]) -> dict[str, Any]:
    names = Counts.__dataclass_fields__
    return {k: v for k, v in data.items() if k in names}
