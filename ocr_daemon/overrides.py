"""Command-line overrides of top-level config keys for `run` and `once` (``--workers 2`` …).

`add_arguments` declares one option per key in `KEYS`; `apply` returns the config with the
options that were given, re-validated like the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ocr_daemon.config import Config
from ocr_daemon.errors import UsageError

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
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, dest=f"set_{key}", type=kind, metavar=key.upper(), help=help_text)


def apply(config: Config, args: argparse.Namespace) -> Config:
    changes: dict[str, Any] = {
        key: getattr(args, f"set_{key}")
        for key, _kind, _help in KEYS
        if getattr(args, f"set_{key}", None) is not None
    }
    if "on_success" in changes and changes["on_success"] not in ("move", "keep", "delete"):
        raise UsageError(
            f"--on-success must be move, keep or delete, not {changes['on_success']!r}"
        )
    return config.replace(**changes) if changes else config
