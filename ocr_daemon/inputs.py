"""Reading an input file the only safe way: once, whole, and as it was.

The path may have been swapped since the daemon saw a regular file there, and its writer may
still be cutting or growing it. So an input is opened without following a symlink or blocking on
a FIFO, only as a regular, non-empty file within ``limits.max_file_bytes``, and read whole into
memory in one go, never mapped (a writer that cuts a mapped file kills its reader with SIGBUS). A
file that changes while it is read is `CorruptInput` as read. Engines (vetting) and the cluster
coordinator (which sends the bytes to worker hosts) read inputs only through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ocr_daemon.config import Limits
from ocr_daemon.errors import (
    CorruptInput,
    EmptyInput,
    InputMissing,
    InputTooLarge,
    UnsupportedInput,
)


@contextlib.contextmanager
def open_input(path: Path, limits: Limits) -> Iterator[tuple[int, os.stat_result]]:
    """A read descriptor for `path` and its stat, opened without following a symlink or blocking
    on a FIFO (the path may have been swapped since the daemon saw a regular file there): only a
    regular, non-empty file within ``limits.max_file_bytes``. Engines and the cluster
    coordinator (which sends the bytes to worker hosts) both read inputs through it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputMissing("file does not exist", str(path)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsupportedInput("is a symlink (never followed)", str(path)) from None
        raise InputMissing(f"cannot access file: {exc.strerror}", str(path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedInput("not a regular file", str(path))
        if st.st_size == 0:
            raise EmptyInput("file is empty (0 bytes)", str(path))
        if st.st_size > limits.max_file_bytes:
            raise InputTooLarge(
                f"file is {st.st_size} bytes, over limits.max_file_bytes = {limits.max_file_bytes}",
                str(path),
            )
        yield fd, st
    finally:
        os.close(fd)


def read_input(path: Path, limits: Limits) -> tuple[bytes, os.stat_result]:
    """The whole file at `path`, read once through `open_input`, and its stat as opened (what
    makes it this file: inode, size, mtime). A file whose size or mtime
    changes while it is read is `CorruptInput` as read; committing that verdict then finds the
    file changed since it settled, and it goes back to settling (a file cut before it was opened
    reads consistently, and is judged on its content)."""
    with open_input(path, limits) as (fd, st):
        data = _read_up_to(fd, st.st_size + 1)  # one byte more shows a file still growing
        now = os.fstat(fd)
    if len(data) != st.st_size or (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise CorruptInput(
            f"file changed while it was read: {st.st_size} bytes when opened, {len(data)} read",
            str(path),
        )
    return data, st


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)  # one chunk (the usual case) is returned as is, not copied
