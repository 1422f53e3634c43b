"""Signals turned into events, shared by the daemon (`service`) and a worker host
(`cluster.worker_host`), neither of which imports the other.

SIGTERM/SIGINT set a `stop` event (a second one sets `force`); SIGUSR1 dumps every thread's and
task's stack. Handlers do nothing else. With ``OCR_DAEMON_LOOP_DEBUG=1`` in the environment,
every callback that holds the event loop for over `SLOW_CALLBACK_SECONDS` is logged as
``loop.slow_callback`` (asyncio's debug mode: for tests and diagnosis, it costs CPU).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import re
import signal
import time
from typing import Any

import structlog

log = structlog.get_logger()
LOOP_DEBUG_VARIABLE = "OCR_DAEMON_LOOP_DEBUG"
SLOW_CALLBACK_SECONDS = 0.05  # longer on the loop and a 1 s watchdog ping rhythm starts to slip
_SLOW_CALLBACK_MESSAGE = "Executing %s took %.3f seconds"  # asyncio's own, in base_events


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
    _time_each_callback_on_the_cpu()


_last_cpu_seconds = [0.0]  # the CPU time of the callback asyncio has just timed (loop thread only)


def _time_each_callback_on_the_cpu() -> None:
    """asyncio times each callback by the wall clock, which on a busy machine also counts the
    time the loop's thread waited for a core. Beside it, record the CPU time the callback itself
    spent (`time.thread_time`): that is the daemon's own cost, whatever else runs. Debug mode
    only: it wraps asyncio's `Handle._run`, which `loop.slow_callback` then reports."""
    run = asyncio.events.Handle._run
    if getattr(run, "_ocr_daemon_timed", False):
        return

    def timed_run(handle: asyncio.Handle) -> None:
        started = time.thread_time()
        try:
            run(handle)
        finally:
            _last_cpu_seconds[0] = time.thread_time() - started

    timed_run._ocr_daemon_timed = True  # type: ignore[attr-defined]
    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]


class _AsyncioEvents(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == _SLOW_CALLBACK_MESSAGE and len(args) == 2:
            callback, seconds = str(args[0]), args[1]
            log.warning("loop.slow_callback", callback=callback, seconds=seconds,
                        cpu_seconds=round(_last_cpu_seconds[0], 4),
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
