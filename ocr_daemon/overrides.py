"""Command-line overrides of top-level config keys for `run` and `once` (``--workers 2`` …).

`add_arguments` declares one option per key in `KEYS`; `apply` returns the config with the
options that were given, each converted and checked by the same converter as the TOML key (so
``--max-attempts 0`` is refused as ``max_attempts = 0`` is), then re-validated like the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ocr_daemon.config import Config, convert_value
from ocr_daemon.errors import ConfigError, UsageError

KEYS: list[tuple[str, type, str]] = [
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for key, kind, help_text in KEYS:
        parser.add_argument(
            _flag(key), dest=f"set_{key}", type=kind, metavar=key.upper(), help=help_text
        )


def apply(config: Config, args: argparse.Namespace) -> Config:
    """`config` with the given options; `UsageError` naming the option for a bad value."""
    changes: dict[str, Any] = {}
    for key, kind, _help in KEYS:
        value = getattr(args, f"set_{key}", None)
        if value is not None:
            changes[key] = _converted(key, str(value) if kind is Path else value)
    return config.replace(**changes) if changes else config


def _converted(key: str, value: Any) -> Any:
    try:
        return convert_value(key, value, _flag(key))
    except ConfigError as exc:
        raise UsageError(exc.message) from None


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")
