"""Support for the daemon tests: configs on tmp folders, polling waits, in-process runs."""

from __future__ import annotations

import asyncio
import json
import os
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
