"""Command-line overrides of top-level config keys for `run` and `once` (``--workers 2``,
``--engine tesseract``, ``--languages deu,eng`` …).

`add_arguments` declares one option per key in `KEYS`; `apply` returns the config with the
options that were given, each converted and checked by the same converter as the TOML key (so
``--max-attempts 0`` is refused as ``max_attempts = 0`` is), then re-validated like the file: an
engine or language this machine cannot run is a usage error naming the option (exit 64), not a
config error about a file that never said it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ocr_daemon.config import Config, convert_value
from ocr_daemon.errors import ConfigError, UsageError

ENGINE_KEYS = frozenset({"engine", "languages"})  # checked against this machine by `replace`

KEYS: list[tuple[str, type, str]] = [
    ("engine", str, 'OCR engine: "aspose", "tesseract" or "package.module:Class"'),
    ("languages", str, "comma-separated ISO 639-2 codes, e.g. deu,eng"),
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
            changes[key] = _converted(key, _raw(key, kind, value))
    if not changes:
        return config
    try:
        return config.replace(**changes)
    except ConfigError as exc:
        if not changes.keys() & ENGINE_KEYS:
            raise
        given = sorted(ENGINE_KEYS & changes.keys())
        named = " ".join(f"{_flag(key)} {getattr(args, f'set_{key}')}" for key in given)
        raise UsageError(f"{named}: {exc.message}") from None


def _raw(key: str, kind: type, value: Any) -> Any:
    """The option's value as the TOML file would hold it: a path as a string, the languages as a
    list."""
    if key == "languages":
        return [code.strip() for code in str(value).split(",") if code.strip()]
    return str(value) if kind is Path else value


def _converted(key: str, value: Any) -> Any:
    try:
        return convert_value(key, value, _flag(key))
    except ConfigError as exc:
        raise UsageError(exc.message) from None


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")
