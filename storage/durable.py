"""Write a batch of files durably: temp file, fsync, rename, fsync of the directory.

The compiled helper (storage/_durable.c) runs a whole batch with the GIL
released once; from a worker thread, the same system calls made one by one in
Python each wait for the event loop to hand the GIL back, which cost more than
the I/O itself under load (bench/README.md). Without a compiler (or with
MMSC_PURE_PYTHON=1 at install) the same recipe runs here in Python.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Sequence

# (directory, temp name, final name, data): names are components inside directory.
FileItem = tuple[bytes, bytes, bytes, bytes | memoryview]


def _write_files_py(items: Sequence[FileItem], fsync: bool, make_dirs: bool = False) -> list[int]:
    errors: list[int] = []
    for directory, temp, final, data in items:
        try:
            try:
                dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not make_dirs:
                    raise
                os.makedirs(directory, mode=0o700, exist_ok=True)
                dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            errors.append(exc.errno or 1)
            continue
        try:
            errors.append(write_one(dirfd, temp, final, memoryview(data).cast("B"), fsync))
        finally:
            os.close(dirfd)
    return errors


def write_one(dirfd: int, temp: bytes, final: bytes, view: memoryview, fsync: bool) -> int:
    """One file of the recipe; 0 or the errno of the step that failed."""
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
    except OSError as exc:
        return exc.errno or 1
    try:
        try:
            written = 0
            while written < view.nbytes:
                written += os.write(fd, view[written:])
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, final, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dirfd)
        return exc.errno or 1
    if fsync:
        try:
            os.fsync(dirfd)
        except OSError as exc:
            return exc.errno or 1
    return 0


_WriteFiles = Callable[[Sequence[FileItem], bool, bool], list[int]]
_write_files_c: _WriteFiles | None
try:
    from storage._durable import write_files as _write_files_c
except ImportError:  # not compiled: the Python recipe above
    _write_files_c = None

COMPILED = _write_files_c is not None


def write_files(
    items: Sequence[FileItem], fsync: bool = True, make_dirs: bool = False
) -> list[int]:
    """Write each item; per item 0 or the errno of the step that failed (its temp file
    removed). ``fsync=False`` is for callers that make the batch durable otherwise (one
    syncfs, ``sync_filesystem``) and for throwaway labs. ``make_dirs`` creates a
    missing directory and parent (not fsynced: for the syncfs callers)."""
    if _write_files_c is not None:
        result: list[int] = _write_files_c(items, fsync, make_dirs)
        return result
    return _write_files_py(items, fsync, make_dirs)


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux), called through ctypes, which releases the GIL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _load_syncfs()
HAS_SYNCFS = _syncfs is not None


def sync_filesystem(fd: int) -> None:
    """Make every write on the filesystem holding ``fd`` durable: file data, inodes and
    directory entries, whoever made them (syncfs(2)); raises OSError.

    Since Linux 5.8 syncfs reports a writeback error that happened on that filesystem
    since ``fd`` was opened or last reported (errseq); a caller must treat what it
    wrote before a failed call as lost, since the next call may succeed.
    """
    if _syncfs is None:
        raise OSError(38, "syncfs is not available on this system")
    if _syncfs(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
