"""The daemon's own folders (inbox, outbox, processed, failed, state): create them at start, and
say why one is unusable. Used by the daemon's first step and by `ocr-daemon check`'s folder lines.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ocr_daemon.config import Config
from ocr_daemon.errors import FolderUnusable

FOLDERS = ("inbox", "outbox", "processed", "failed", "state_dir")


def create_folders(config: Config) -> None:
    """The daemon's first step: create each folder in `FOLDERS` that is missing, and make sure
    the state folder can be written (the journal and its lock live there; an unwritable output
    folder is instead a per-file retry). `FolderUnusable` names the key, the folder and the OS
    error, as the FAIL line of `check` does."""
    for name in FOLDERS:
        folder: Path = getattr(config, name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise FolderUnusable(f"key '{name}': exists but is not a folder", str(folder)) from None
        except OSError as exc:
            message = f"key '{name}': cannot create the folder: {exc.strerror}"
            raise FolderUnusable(message, str(folder)) from None
    unwritable = _unwritable(config.state_dir)
    if unwritable:
        message = f"key 'state_dir': the folder is not writable: {unwritable}"
        raise FolderUnusable(message, str(config.state_dir))


def problem(folder: Path) -> str | None:
    """Why the daemon could not use `folder`; "" when it would create it, None when usable."""
    if folder.exists() and not folder.is_dir():
        return "exists but is not a folder"
    if folder.is_dir():
        problem = _unwritable(folder)
        return f"is not writable: {problem}" if problem else None
    parent = _nearest_existing(folder)
    if not parent.is_dir():
        return f"does not exist and cannot be created: {parent} is not a folder (Not a directory)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"does not exist and {parent} is not writable (Permission denied)"
    return ""


def _unwritable(folder: Path) -> str | None:
    """The OS error creating a file in `folder` gives, or None when it can be written."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
