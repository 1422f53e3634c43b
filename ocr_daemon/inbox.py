"""What in the inbox may be a candidate: the name rules (hidden, partial downloads, NAS metadata,
configured patterns), which kinds of entry are never opened, the walk that lists the rest without
following symlinks, and whether the inbox sits on a filesystem inotify cannot fully watch."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import structlog

log = structlog.get_logger()

DEFAULT_IGNORE = (
    "*.part", "*.partial", "*.tmp", "*.temp", "*.crdownload", "*.filepart", "*.download",
    "*.swp", "*~", "~$*", "Thumbs.db", "desktop.ini", "@eaDir", "#recycle", "#snapshot",
    "$RECYCLE.BIN", "System Volume Information", "lost+found", "__MACOSX",
    "*@SynoResource", "*@SynoEAStream",
)  # fmt: skip
INBOX_ITSELF = PurePosixPath()  # the inbox's own folder, as a path relative to it
REMOTE_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse", "ceph", "glusterfs",
                      "afs", "davfs", "virtiofs")  # fmt: skip


class InboxFilter:
    """Name rules: hidden names (which covers ``._*``, ``.~lock*``, ``.DS_Store`` and our own
    temp files), partial-download and editor names, NAS metadata folders, plus config patterns."""

    def __init__(self, extra_patterns: tuple[str, ...] = ()) -> None:
        self.patterns = tuple(p.lower() for p in DEFAULT_IGNORE + extra_patterns)

    def ignored_reason(self, rel: PurePosixPath) -> str | None:
        for part in rel.parts:
            if part.startswith("."):
                return "hidden"
            lowered = part.lower()
            for pattern in self.patterns:
                if fnmatch.fnmatchcase(lowered, pattern):
                    return f"matches ignore pattern {pattern!r}"
        return None


def special_reason(st: os.stat_result) -> str | None:
    """Why a directory entry is not a file we may open, or None for a regular file."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symlink (never followed)"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return "device"
    return "not a regular file"


def scan(
    inbox: Path, rules: InboxFilter, top: PurePosixPath = INBOX_ITSELF
) -> Iterator[tuple[PurePosixPath, os.stat_result]]:
    """Every entry under `inbox` (or its folder `top`) that is not ignored by name, without
    following symlinks; each named relative to `inbox`."""
    stack = [top]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(inbox / rel_dir))
        except OSError as exc:
            log.warning("inbox.unreadable", path=str(rel_dir), error=exc.strerror)
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            rel = rel_dir / entry.name
            if rules.ignored_reason(PurePosixPath(entry.name)) is not None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:  # e.g. ENAMETOOLONG past PATH_MAX: skip it, keep scanning
                log.warning("inbox.unreadable", path=str(rel), error=exc.strerror)
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)
            else:
                yield rel, st


def remote_filesystem(path: Path) -> str | None:
    """The filesystem type of `path` when it is one inotify cannot fully watch."""
    best, fstype = "", ""
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            mount, kind = fields[4], fields[fields.index("-") + 1]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, fstype = mount, kind
    base = fstype.split(".")[0]
    return fstype if base in REMOTE_FILESYSTEMS else None
