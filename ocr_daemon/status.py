"""The daemon's live state: counts kept while it runs, rendered as systemd's one-line ``STATUS=``,
written to ``status.json`` in the state directory, and read back by ``ocr-daemon status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"


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
    retries: int = 0
    last_error: str = ""
    hosts: str = ""  # worker hosts of a cluster coordinator, one "name up|lost N done" each
    workers: list[dict[str, Any]] = field(default_factory=list)

    def one_line(self) -> str:
        line = (
            f"{self.state}: queue {self.queued}, in flight {self.in_flight}, "
            f"done {self.done}, failed {self.failed}"
        )
        if self.retrying:
            line += f", retrying {self.retrying}"
        if self.hosts:
            line += f"; hosts: {self.hosts}"
        if self.last_error:
            line += f"; last error: {self.last_error}"
        return line


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


def _counts_fields(data: dict[str, Any]) -> dict[str, Any]:
    names = Counts.__dataclass_fields__
    return {k: v for k, v in data.items() if k in names}
