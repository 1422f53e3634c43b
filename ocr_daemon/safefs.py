"""Filesystem operations that never follow a symlink and never overwrite a file.

Every path handled here is a *relative* path under a root folder (inbox, outbox, processed,
failed). Directories are walked component by component with ``O_NOFOLLOW`` relative to the parent's
descriptor, so a symlink planted anywhere in a tree cannot redirect a read, a write or a move out
of its root. New files are published with ``link()`` (which fails rather than replace an existing
name) from a temporary name in the same folder, after an ``fsync``: a reader never sees a partial
file and nothing is ever silently overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ocr_daemon.errors import OutputError

TEMP_PREFIX = ".ocr-daemon-tmp-"
NAME_MAX_BYTES = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Identity:
    """What makes a file *this* file: a replaced or rewritten file gets a new identity."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class UnsafePath(OSError):
    """A path component is a symlink or not a directory: refused."""


@contextlib.contextmanager
def open_dir(
    root: Path, rel_dir: PurePosixPath, *, create: bool, mode: int = 0o750
) -> Iterator[int]:
    """A descriptor for ``root/rel_dir``, walked without following symlinks."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in rel_dir.parts:
            child = _step(fd, part, create, mode)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _step(parent_fd: int, name: str, create: bool, mode: int) -> int:
    if name in ("", ".", "..") or "/" in name:
        raise UnsafePath(errno.EINVAL, f"refusing path component {name!r}")
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=parent_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(exc.errno, f"{name!r} is a symlink or not a directory") from None
        raise


def lstat_in(root: Path, rel: PurePosixPath) -> os.stat_result | None:
    """lstat of ``root/rel`` through no symlinked directory; None when absent."""
    try:
        with open_dir(root, rel.parent, create=False) as dfd:
            return os.lstat(rel.name, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError, UnsafePath):
        return None


def shown(text: str) -> str:
    """`text` as any UTF-8 writer accepts it: bytes of a non-UTF-8 name (held as surrogate
    escapes) written ``\\xNN``, so ``caf\\xe9.png`` for the Latin-1 name; other text unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file name made: escape it as it is
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return text


def fit_name(stem: str, suffix: str) -> str:
    """``stem + suffix``, with the stem shortened so the name fits in NAME_MAX_BYTES."""
    raw_stem, raw_suffix = os.fsencode(stem), os.fsencode(suffix)
    room = NAME_MAX_BYTES - len(raw_suffix)
    if len(raw_stem) <= room:
        return stem + suffix
    cut = raw_stem[:room]
    with contextlib.suppress(UnicodeDecodeError):
        raw_stem.decode("utf-8")  # a UTF-8 name stays UTF-8: drop a half-cut character
        cut = cut.decode("utf-8", "ignore").encode()
    return os.fsdecode(cut + raw_suffix)


def numbered(rel: PurePosixPath, n: int) -> PurePosixPath:
    """The n-th candidate name for `rel`: ``scan.txt``, ``scan (2).txt``, ``scan (3).txt`` ..."""
    if n == 1:
        return rel.with_name(fit_name(rel.name, ""))
    suffix = "".join(rel.suffixes[-1:])
    stem = rel.name[: len(rel.name) - len(suffix)] if suffix else rel.name
    return rel.with_name(fit_name(stem, f" ({n}){suffix}"))


def write_new(root: Path, rel: PurePosixPath, data: bytes, mode: int, tag: str) -> None:
    """Publish `data` as ``root/rel``; fails with FileExistsError rather than replace anything.

    Written to a temp name (``TEMP_PREFIX + tag``) in the target folder, fsynced, then linked into
    place, then the folder is fsynced. Re-running after a crash with the same tag is safe.
    """
    tmp = TEMP_PREFIX + tag
    with open_dir(root, rel.parent, create=True) as dfd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dfd,
        )
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            _publish(dfd, tmp, rel.name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
        os.fsync(dfd)


def stage_new(root: Path, rel_dir: PurePosixPath, tag: str, data: bytes, mode: int) -> None:
    """Write `data` to the temp name ``TEMP_PREFIX + tag`` in ``root/rel_dir``, fsynced, and
    publish nothing yet: the first step of publishing several files together (see
    `publish_staged`). The caller fsyncs the folder (`sync_dir`) once all are staged."""
    with open_dir(root, rel_dir, create=True) as dfd:
        _write_temp(dfd, TEMP_PREFIX + tag, data, mode)


def publish_staged(root: Path, rel: PurePosixPath, tag: str, *, resuming: bool = False) -> None:
    """Link the staged temp of `tag` into place as ``root/rel`` (FileExistsError rather than
    replace anything); the temp stays until `remove_temp`, so the link can be recognised as ours
    (`unpublish_staged`). Already published (and, `resuming` after a crash, its temp maybe
    dropped already): nothing to do."""
    with open_dir(root, rel.parent, create=False) as dfd:
        tmp = TEMP_PREFIX + tag
        dropped = resuming and not _exists(dfd, tmp) and _exists(dfd, rel.name)
        if dropped or _linked(dfd, tmp, rel.name):
            return
        _publish(dfd, tmp, rel.name)


def unpublish_staged(root: Path, rel: PurePosixPath, tag: str) -> None:
    """Undo `publish_staged`: unlink ``root/rel`` if it is the staged temp's file (never a file
    someone else created under that name)."""
    with (
        contextlib.suppress(FileNotFoundError, NotADirectoryError, UnsafePath),
        open_dir(root, rel.parent, create=False) as dfd,
    ):
        if _linked(dfd, TEMP_PREFIX + tag, rel.name):
            os.unlink(rel.name, dir_fd=dfd)


def staged_exists(root: Path, rel_dir: PurePosixPath, tag: str) -> bool:
    """Whether the staged temp of `tag` is still there."""
    return lstat_in(root, rel_dir / (TEMP_PREFIX + tag)) is not None


def sync_dir(root: Path, rel_dir: PurePosixPath) -> None:
    with open_dir(root, rel_dir, create=False) as dfd:
        os.fsync(dfd)


def _linked(dfd: int, tmp: str, name: str) -> bool:
    try:
        st = os.lstat(tmp, dir_fd=dfd)
    except FileNotFoundError:
        return False
    return _same_file(dfd, name, st)


def _write_temp(dfd: int, tmp: str, data: bytes, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dfd)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd
    )
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _publish(dfd: int, tmp: str, name: str) -> None:
    try:
        os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # Filesystems without hard links (vfat, some FUSE): check, then rename.
        if _exists(dfd, name):
            raise FileExistsError(errno.EEXIST, "exists", name) from None
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _exists(dfd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return False
    return True


def remove_temp(root: Path, rel_dir: PurePosixPath, tag: str) -> None:
    """Remove a temp file left by an interrupted `write_new` (no error if absent)."""
    with (
        contextlib.suppress(FileNotFoundError, NotADirectoryError, UnsafePath),
        open_dir(root, rel_dir, create=False) as dfd,
    ):
        os.unlink(TEMP_PREFIX + tag, dir_fd=dfd)


class SourceChanged(OSError):
    """The source is still there but is no longer the file expected (rewritten, replaced): it
    must not be moved or deleted as if it were."""


def move_new(
    src_root: Path,
    src: PurePosixPath,
    dst_root: Path,
    dst: PurePosixPath,
    expected: Identity | None,
    *,
    tag: str,
) -> None:
    """Move ``src_root/src`` to ``dst_root/dst`` without replacing anything at the destination.

    Refuses with FileNotFoundError when the source is gone, with `SourceChanged` when it no
    longer has identity `expected`.
    Same filesystem: link + unlink (atomic, no replace). Across filesystems: copy to a temp name
    of its own (``TEMP_PREFIX + move_temp_tag(tag)``: concurrent moves into one folder must not
    share it), fsync, link into place, then unlink the source.
    """
    with open_dir(src_root, src.parent, create=False) as sfd:
        st = os.lstat(src.name, dir_fd=sfd)
        if not stat.S_ISREG(st.st_mode) or (expected and Identity.of(st) != expected):
            raise SourceChanged(errno.ESTALE, "input changed or replaced", str(src))
        with open_dir(dst_root, dst.parent, create=True) as dfd:
            try:
                os.link(src.name, dst.name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                if not _same_file(dfd, dst.name, st):
                    raise
                # Linked before an interruption: only the unlink of the source is left to do.
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP):
                    raise
                _copy_across(sfd, src.name, dfd, dst.name, st, tag=move_temp_tag(tag))
            os.fsync(dfd)
        os.unlink(src.name, dir_fd=sfd)
        os.fsync(sfd)


def _same_file(dfd: int, name: str, st: os.stat_result) -> bool:
    try:
        other = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def move_temp_tag(tag: str) -> str:
    """The temp-file tag of a cross-filesystem `move_new` (for `remove_temp` after a crash)."""
    return f"move-{tag}"


def _copy_across(
    sfd: int, name: str, dfd: int, dst_name: str, st: os.stat_result, *, tag: str
) -> None:
    tmp = TEMP_PREFIX + tag
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dfd)
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        dst = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            stat.S_IMODE(st.st_mode),
            dir_fd=dfd,
        )
        try:
            while chunk := os.read(src, 1 << 20):
                _write_all(dst, chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    try:
        _publish(dfd, tmp, dst_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)


def unlink_in(root: Path, rel: PurePosixPath, expected: Identity | None) -> None:
    """Delete ``root/rel`` if it is still the file with identity `expected` (else
    `SourceChanged`; FileNotFoundError when it is gone)."""
    with open_dir(root, rel.parent, create=False) as dfd:
        st = os.lstat(rel.name, dir_fd=dfd)
        if expected and Identity.of(st) != expected:
            raise SourceChanged(errno.ESTALE, "input changed or replaced", str(rel))
        os.unlink(rel.name, dir_fd=dfd)


def as_output_error(exc: OSError, root: Path) -> OutputError:
    """An OSError while writing under `root`, as the transient error the daemon retries."""
    return OutputError(f"cannot write under {root}: {exc.strerror or exc}", str(exc.filename or ""))
