"""Support for the daemon tests: configs on tmp folders, polling waits, in-process runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocr_daemon.config import Config
from ocr_daemon.daemon import Daemon

REPO = Path(__file__).resolve().parents[1]
DOUBLE = "tests.engine_double:ScriptedEngine"


def make_config(root: Path, **overrides: Any) -> Config:
    """A config whose folders all live under `root` (fast settle, the double unless told)."""
    values: dict[str, Any] = {
        "inbox": root / "inbox",
        "outbox": root / "outbox",
        "processed": root / "processed",
        "failed": root / "failed",
        "state_dir": root / "state",
        "engine": DOUBLE,
        "workers": 2,
        "settle_seconds": 0.3,
        # bad files fail at once unless a test is about slow writers (tests/test_slow_writers.py)
        "corrupt_grace_seconds": 0.0,
        "retry_backoff_seconds": 0.1,
        "ocr_timeout_seconds": 20.0,
    }
    values.update(overrides)
    config = Config(**values)
    config.inbox.mkdir(parents=True, exist_ok=True)
    return config


def run_once(config: Config) -> int:
    return asyncio.run(Daemon(config, once=True).run())


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {predicate}")


def files_under(root: Path) -> list[str]:
    """Every file (not directory) below `root`, as sorted relative paths."""
    if not root.exists():
        return []
    return sorted(
        str(Path(dirpath, name).relative_to(root))
        for dirpath, _dirs, names in os.walk(root)
        for name in names
    )


def error_record(config: Config, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((config.failed / f"{name}.error.json").read_text())
    return data


def subprocess_env() -> dict[str, str]:
    """Environment for a daemon subprocess that can import the test doubles."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def write_config(root: Path, **extra: object) -> Path:
    values: dict[str, object] = {
        "inbox": "inbox", "outbox": "outbox", "processed": "processed", "failed": "failed",
        "state_dir": "state", "engine": DOUBLE, "workers": 2, "settle_seconds": 0.5,
        "corrupt_grace_seconds": 0.0, "retry_backoff_seconds": 0.2, "log_format": "json",
    }  # fmt: skip
    values.update(extra)
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = root / "ocr-daemon.toml"
    path.write_text("\n".join(lines) + "\n")
    (root / "inbox").mkdir(exist_ok=True)
    return path


class DaemonProcess:
    def __init__(self, config: Path, command: str = "run", args: tuple[str, ...] = ()) -> None:
        self.root = config.parent
        self.log = open(self.root / "daemon.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ocr_daemon", command, "--config", str(config), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=subprocess_env(),
        )  # fmt: skip

    def status(self) -> dict[str, object]:
        try:
            data: dict[str, object] = json.loads((self.root / "state/status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if data.get("pid") == self.proc.pid else {}

    def wait_running(self) -> None:
        wait_for(lambda: self.status().get("state") == "running", timeout=60)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        code = wait_or_dump(self.proc, self.root / "daemon.log", timeout)
        self.log.close()
        return code

    def events(self, name: str | None = None) -> list[dict[str, object]]:
        """The JSON log lines so far; only events called `name` when given."""
        lines = (self.root / "daemon.log").read_text(errors="replace").splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in found if name is None or e["event"] == name]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_or_dump(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The exit code of `proc`; if it hangs instead, SIGUSR1 makes it write its thread and task
    stacks into `log`, and the failure shows them."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2.0)
        tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
        raise AssertionError(
            f"pid {proc.pid} still running after {timeout:g} s; the end of its log:\n{tail}"
        ) from None


def start(
    started: list[DaemonProcess], config: Path, command: str = "run", args: tuple[str, ...] = ()
) -> DaemonProcess:
    daemon = DaemonProcess(config, command, args)
    started.append(daemon)
    return daemon
