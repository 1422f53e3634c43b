"""The daemon as a benchmark subject: a config on a scratch folder, the `ocr-daemon` CLI run as a
subprocess (JSON log to a file), its events, and what /proc says about it and its workers."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOUBLE = "tests.engine_double:ScriptedEngine"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FOLDERS = ("inbox", "outbox", "processed", "failed", "state")


def write_config(root: Path, **values: Any) -> Path:
    """A TOML config with every folder under `root` and JSON logs; `values` override keys."""
    settings: dict[str, Any] = {
        "inbox": "inbox",
        "outbox": "outbox",
        "processed": "processed",
        "failed": "failed",
        "state_dir": "state",
        "log_format": "json",
    }
    settings.update(values)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ocr-daemon.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    for name in FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)
    return path


def subprocess_env() -> dict[str, str]:
    """The environment, plus the repo root on PYTHONPATH so `tests.engine_double` imports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def parse_ts(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class DaemonProcess:
    """`python -m ocr_daemon <command> --config <config>`, logging JSON lines to daemon.log."""

    def __init__(self, config: Path, command: str = "run") -> None:
        self.root = config.parent
        self.log_path = self.root / "daemon.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ocr_daemon", command, "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            cwd=self.root,
        )
        self.pid = self.proc.pid
        self._offset = 0
        self._events: list[dict[str, Any]] = []

    def events(self) -> list[dict[str, Any]]:
        """Every JSON event logged so far (read incrementally)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].splitlines():
            if line.startswith(b"{"):
                self._events.append(json.loads(line))
        return self._events

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout_s: float, interval_s: float = 0.05
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            events = self.events()
            for event in events[seen:]:
                if match(event):
                    return event
            seen = len(events)
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited ({self.proc.returncode}); see {self.log_path}")
            time.sleep(interval_s)
        raise TimeoutError(f"no matching event within {timeout_s} s; see {self.log_path}")

    def wait_running(self, timeout_s: float = 120) -> dict[str, Any]:
        return self.wait_event(lambda e: e.get("event") == "inbox.scanned", timeout_s)

    def children(self) -> list[int]:
        return children_of(self.pid)

    def stop(self, timeout_s: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def process_role(pid: int) -> str:
    """ "OCR worker", "resource tracker" (multiprocessing's helper) or "gone"."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return "resource tracker" if b"resource_tracker" in cmdline else "OCR worker"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, *keys: str) -> dict[str, int]:
    """Selected kB fields of /proc/<pid>/status (VmRSS, VmHWM ...); empty once it has exited."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in keys:
                    found[name] = int(rest.split()[0])
    except OSError:
        return {}
    return found


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over every thread of `pid`."""
    vol = invol = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except OSError:
            continue
    return vol, invol


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class RssSampler:
    """Samples RSS of a process tree until told to stop; keeps per-pid peaks and the peak sum."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peak_kb: dict[int, int] = {}
        self.hwm_kb: dict[int, int] = {}
        self.peak_total_kb = 0
        self.samples = 0
        self.roles: dict[int, str] = {}

    def sample(self) -> None:
        total = 0
        for pid in [self.root_pid, *children_of(self.root_pid)]:
            values = status_kb(pid, "VmRSS", "VmHWM")
            if not values:
                continue
            total += values.get("VmRSS", 0)
            if pid != self.root_pid and pid not in self.roles:
                self.roles[pid] = process_role(pid)
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), values.get("VmRSS", 0))
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), values.get("VmHWM", 0))
        self.peak_total_kb = max(self.peak_total_kb, total)
        self.samples += 1
