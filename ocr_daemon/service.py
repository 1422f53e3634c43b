"""Running the daemon as a process: command-line overrides, signals turned into events,
and ``ocr-daemon status``.

SIGTERM/SIGINT set the daemon's `stop` event (a second one sets `force`: stop at once, still
losing nothing); SIGHUP sets `reload`. Handlers do nothing else. With ``OCR_DAEMON_LOOP_DEBUG=1``
in the environment, every callback that holds the event loop for over `SLOW_CALLBACK_SECONDS` is
logged as ``loop.slow_callback`` (asyncio's debug mode: for tests and diagnosis, it costs CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import logging
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ocr_daemon.config import Config, load_config
from ocr_daemon.daemon import Daemon
from ocr_daemon.errors import UsageError
from ocr_daemon.status import read_status, render
from ocr_daemon.systemd import Notifier

log = structlog.get_logger()
NOT_RUNNING = 3  # the LSB status code for "program is not running"
LOOP_DEBUG_VARIABLE = "OCR_DAEMON_LOOP_DEBUG"
SLOW_CALLBACK_SECONDS = 0.05  # longer on the loop and a 1 s watchdog ping rhythm starts to slip
_SLOW_CALLBACK_MESSAGE = "Executing %s took %.3f seconds"  # asyncio's own, in base_events

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
    """``ocr-daemon run``: watch until stopped. What start-up made (modules, classes: ~40,000
    objects) lives as long as the daemon, so the cycle collector stops walking it: a full
    collection, which holds the loop, then costs only what the daemon holds now."""
    gc.collect()
    gc.freeze()
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


def watch_the_loop() -> None:
    """With ``OCR_DAEMON_LOOP_DEBUG=1``: asyncio's debug mode on the running loop, and what its
    logger reports (slow callbacks above all) as structured events instead of stderr text."""
    if os.environ.get(LOOP_DEBUG_VARIABLE) != "1":
        return
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
    logger = logging.getLogger("asyncio")
    logger.setLevel(logging.WARNING)  # debug mode's own DEBUG lines (each slow select) are noise
    logger.addHandler(_AsyncioEvents())
    logger.propagate = False


class _AsyncioEvents(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == _SLOW_CALLBACK_MESSAGE and len(args) == 2:
            callback, seconds = str(args[0]), args[1]
            log.warning("loop.slow_callback", callback=callback, seconds=seconds,
                        then_waits_at=_where_task_waits(callback))  # fmt: skip
            return
        log.warning("asyncio.message", level=record.levelname, message=record.getMessage(),
                    exc_info=record.exc_info)  # fmt: skip


def _where_task_waits(callback: str) -> list[str]:
    """For a slow task step: the stack it stopped at when the step ended (names the last
    ``await`` the slow code reached; the task's repr names only its outermost coroutine)."""
    named = re.search(r"<Task \w+ name='([^']*)'", callback)
    if named is None:
        return []
    task = next((t for t in asyncio.all_tasks() if t.get_name() == named.group(1)), None)
    return _stack(task) if task is not None else []


def handle_stop_signals(stop: asyncio.Event, force: asyncio.Event, *, event: str) -> None:
    """SIGTERM/SIGINT set `stop`; a second one also sets `force`. Handlers do nothing else."""

    def on_stop(signum: int) -> None:
        if stop.is_set():
            force.set()
        stop.set()
        log.info(event, signal=signal.Signals(signum).name, force=force.is_set())

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)


def handle_dump_signal() -> None:
    """SIGUSR1 reports where this process is, for a daemon that stopped making progress: every
    thread's Python stack on stderr at once (faulthandler, so even with the event loop stuck),
    then every asyncio task's stack as one ``process.tasks`` log event. Nothing else changes."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _log_tasks)
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True)  # after: chains to it


def _log_tasks() -> None:
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    log.warning("process.tasks", tasks={task.get_name(): _stack(task) for task in tasks})


def _stack(task: asyncio.Task[Any]) -> list[str]:
    """Where `task` waits: its coroutine and each one it awaits, outermost first (a task's own
    get_stack() gives only the outermost frame of a suspended coroutine)."""
    frames: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


def status(args: argparse.Namespace, config: Config) -> int:
    """``ocr-daemon status``: the live state, read from the state directory."""
    text, running = render(read_status(config.state_dir), config.state_dir)
    print(text)
    return 0 if running else NOT_RUNNING
