"""Running the daemon as a process: command-line overrides, signals turned into events
(see `signals`), and ``ocr-daemon status``.

SIGTERM/SIGINT set the daemon's `stop` event (a second one sets `force`: stop at once, still
losing nothing); SIGHUP sets `reload`. Handlers do nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocr_daemon.config import Config, load_config
from ocr_daemon.daemon import Daemon
from ocr_daemon.errors import UsageError
from ocr_daemon.signals import handle_dump_signal, handle_stop_signals, watch_the_loop
from ocr_daemon.status import read_status, render
from ocr_daemon.systemd import Notifier

NOT_RUNNING = 3  # the LSB status code for "program is not running"

_OVERRIDES: list[tuple[str, type, str]] = [
    ("inbox", Path, "folder to watch"),
    ("outbox", Path, "folder for the .txt sidecars"),
    ("processed", Path, "folder for inputs that were OCRed"),
    ("failed", Path, "folder for inputs that failed, with NAME.error.json"),
    ("state_dir", Path, "folder for the journal and status"),
    ("workers", int, "OCR worker processes (0: one per CPU, capped by memory)"),
    ("settle_seconds", float, "quiet time before a file counts as complete"),
    ("ocr_timeout_seconds", float, "per-file limit before the worker is killed"),
    ("max_attempts", int, "tries after a worker crash or timeout"),
    ("on_success", str, "move, keep or delete the input after OCR"),
    ("shutdown_timeout_seconds", float, "how long a stop waits for files in flight"),
]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    for key, kind, help_text in _OVERRIDES:
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, dest=f"set_{key}", type=kind, metavar=key.upper(), help=help_text)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    changes: dict[str, Any] = {
        key: getattr(args, f"set_{key}")
        for key, _kind, _help in _OVERRIDES
        if getattr(args, f"set_{key}", None) is not None
    }
    if "on_success" in changes and changes["on_success"] not in ("move", "keep", "delete"):
        raise UsageError(
            f"--on-success must be move, keep or delete, not {changes['on_success']!r}"
        )
    return config.replace(**changes) if changes else config


def run(args: argparse.Namespace, config: Config) -> int:
    """``ocr-daemon run``: watch until stopped."""
    return asyncio.run(_serve(config, once=False, reload_config=_reloader(args)))


def once(args: argparse.Namespace, config: Config) -> int:
    """``ocr-daemon once``: process what is pending, wait for it, exit (1 if any failed)."""
    return asyncio.run(_serve(config, once=True, reload_config=_reloader(args)))


def _reloader(args: argparse.Namespace) -> Callable[[], Config]:
    def reload() -> Config:
        return apply_overrides(load_config(args.config), args)

    return reload


async def _serve(config: Config, *, once: bool, reload_config: Callable[[], Config]) -> int:
    daemon = Daemon(config, once=once, notifier=Notifier(), reload_config=reload_config)
    watch_the_loop()
    handle_stop_signals(daemon.stop, daemon.force, event="daemon.signal")
    handle_dump_signal()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, daemon.reload.set)
    return await daemon.run()


def status(args: argparse.Namespace, config: Config) -> int:
    """``ocr-daemon status``: the live state, read from the state directory."""
    text, running = render(read_status(config.state_dir), config.state_dir)
    print(text)
    return 0 if running else NOT_RUNNING
