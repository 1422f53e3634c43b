"""Logging set-up: structlog configured once, by the CLI only.

JSON lines on stdout when it is not a terminal (journald, files), a console renderer on a TTY.
Modules never configure logging; they call `structlog.get_logger()` and log key-value events.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

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
