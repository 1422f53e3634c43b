"""Logging set-up: structlog configured once, by the CLI only.

JSON lines on stdout when it is not a terminal (journald, files), a console renderer on a TTY.
Modules never configure logging; they call `structlog.get_logger()` and log key-value events.
On the console, for a person, `daemon.started` reads as a sentence ("watching var/inbox →
var/outbox with 2 Aspose engine processes; Ctrl+C stops") and is the first line: the engine
processes' `worker.started` before it are left out), and `progress` reads as one short line
(JSON keeps every event as it is).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

from ocr_daemon import safefs

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    log_format: str = "auto", log_level: str = "info", stream: TextIO | None = None
) -> None:
    """Route structlog events to `stream` (default stdout) as JSON or console lines."""
    out = stream if stream is not None else sys.stdout
    console = log_format == "console" or (log_format == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _escape_names,
            *([_ForPerson()] if console else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[log_level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _escape_names(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Non-UTF-8 file names (str with surrogate escapes) shown escaped, ``caf\\xe9.png``: the
    console cannot write them and JSON would carry lone surrogates other readers reject."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = safefs.shown(value)
        elif isinstance(value, (list, tuple)):
            event[key] = [safefs.shown(v) if isinstance(v, str) else v for v in value]
    return event


class _ForPerson:
    """The console's start-up: `daemon.started` as one sentence, nothing before it."""

    def __init__(self) -> None:
        self.started = False

    def __call__(
        self, _logger: object, _method: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        name = event.get("event")
        if name == "worker.started" and not self.started:
            raise structlog.DropEvent
        if name == "daemon.started":
            self.started = True
            keep = {k: event[k] for k in ("timestamp", "level") if k in event}
            return {**keep, "event": started_sentence(event)}
        if name == "progress":
            keep = {k: event[k] for k in ("timestamp", "level") if k in event}
            return {**keep, "event": progress_line(event)}
        return event


def started_sentence(fields: Mapping[str, Any]) -> str:
    """``watching var/inbox → var/outbox with 2 Aspose engine processes (evaluation mode:
    fragments); Ctrl+C stops`` from `daemon.started`'s fields."""
    engine = str(fields.get("engine", "")).split(" ")[0]
    engine = {"aspose": "Aspose", "tesseract": "Tesseract"}.get(engine, engine)
    workers = int(fields.get("workers", 0))
    plural = "process" if workers == 1 else "processes"
    mode = " (evaluation mode: fragments)" if fields.get("evaluation_mode") else ""
    doing = "OCRing what is in" if fields.get("once") else "watching"
    ending = "exits when done" if fields.get("once") else "Ctrl+C stops"
    return (
        f"{doing} {_shown(fields.get('inbox'))} → {_shown(fields.get('outbox'))} with "
        f"{workers} {engine} engine {plural}{mode}; {ending}"
    )


def progress_line(fields: Mapping[str, Any]) -> str:
    """``progress: 3 done, 0 failed · 4 queued, 1 in flight, 0 settling, 0 retrying · 12.0
    pages/min · about 2 min left`` from the `progress` event's fields."""
    eta = fields.get("eta_seconds")
    left = "no estimate yet" if eta is None else f"about {max(1, round(eta / 60))} min left"
    return (
        f"progress: {fields.get('done')} done, {fields.get('failed')} failed · "
        f"{fields.get('queued')} queued, {fields.get('in_flight')} in flight, "
        f"{fields.get('settling')} settling, {fields.get('retrying')} retrying · "
        f"{fields.get('pages_per_minute')} pages/min · {left}"
    )


def _shown(path: object) -> str:
    """`path` relative to the working directory when it lies below it."""
    text = str(path)
    relative = os.path.relpath(text)
    return relative if not relative.startswith("..") else text
