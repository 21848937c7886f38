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
import errno
import os
import threading
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


class SyncRounds:
    """syncfs(2) rounds on one filesystem, shared by everyone who needs one.

    A writer needs a round that *starts* after its writes were handed to the kernel.
    Rounds run one at a time; a caller that finds a finished round which started
    after its ``ticket`` needs no round of its own. So the payload files of one
    commit batch and the database log of the previous one, on the same filesystem,
    are made durable by one syncfs instead of two (storage/writer.py).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()  # held for a whole round
        self._started = 0  # rounds started so far (incremented before the call)
        self._completed = 0  # the last round that has returned
        self._failed = 0  # the last round that reported a writeback error

    def ticket(self) -> int:
        """Take this *after* the writes to cover have returned (a plain read: any
        round started after it began its syncfs after those writes)."""
        return self._started

    def sync_after(self, ticket: int) -> None:
        """Block until a round started after ``ticket`` has completed; raise OSError if
        a round since then reported an error (what was written before it may be lost)."""
        with self._lock:
            if self._completed <= ticket:
                self._started += 1
                number = self._started
                try:
                    sync_filesystem(self.fd)
                except OSError:
                    self._failed = number
                    raise
                finally:
                    self._completed = number
            if self._failed > ticket:
                raise OSError(errno.EIO, "a sync of this filesystem reported a writeback error")

    def sync(self) -> None:
        """A round covering every write that has returned so far."""
        self.sync_after(self.ticket())


_rounds: dict[int, SyncRounds] = {}
_rounds_lock = threading.Lock()


def rounds_for(directory: str | os.PathLike[str]) -> SyncRounds:
    """The process's :class:`SyncRounds` of the filesystem holding ``directory``
    (which must exist). Its descriptor stays open for the life of the process."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    device = os.fstat(fd).st_dev
    with _rounds_lock:
        rounds = _rounds.get(device)
        if rounds is None:
            rounds = _rounds[device] = SyncRounds(fd)
            return rounds
    os.close(fd)
    return rounds


def _forget_rounds_in_child() -> None:
    # A lock another thread held at fork() would stay held in the child forever.
    global _rounds_lock
    _rounds_lock = threading.Lock()
    _rounds.clear()


os.register_at_fork(after_in_child=_forget_rounds_in_child)
