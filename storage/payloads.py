"""The payload (blob) store: where message bodies live.

A message is accepted (m-send-conf Ok, SubmitRsp 1000) only after its body is
stored here *and* its row is committed, and an accepted message must survive
kill -9 and power loss at any instant. So a completed :meth:`PayloadStore.put`
means "durable": the bytes and the directory entry that names them are on
stable storage, not just in the page cache.

The database holds the metadata and is the source of truth about which
payloads exist; this store only maps opaque keys (derived from our own message
ids) to bytes. :class:`PayloadStore` is the interface the rest of the server
depends on, so an S3-compatible store can be added later without touching the
callers. :class:`FilesystemPayloadStore` is the embedded default and
:class:`InMemoryPayloadStore` is for unit tests of other modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from storage import durable

__all__ = [
    "MAX_KEY_LENGTH",
    "FilesystemPayloadStore",
    "InMemoryPayloadStore",
    "PayloadNotFound",
    "PayloadStore",
    "StagedPayload",
    "validate_key",
]

MAX_KEY_LENGTH: Final = 200
"""Longest accepted key; keeps the temp-file name well under NAME_MAX (255)."""

_KEY_RE: Final = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_KEY_LENGTH}}}")
_TEMP_SUFFIX: Final = ".tmp"
_SHARD_RE: Final = re.compile(r"[0-9a-f]{2}")
_TEMP_COUNTER = itertools.count()


class PayloadNotFound(KeyError):
    """No payload is stored under the key (a ``KeyError``, so ``except KeyError`` works)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe payload key, else raise ``ValueError``.

    Keys come from our own message ids, but they end up as file names, so they
    are never trusted as paths: only ``[A-Za-z0-9._-]``, 1 to 200 characters,
    not ``.`` or ``..``, and not ending in ``.tmp`` (that suffix is reserved for
    in-flight writes, which :meth:`FilesystemPayloadStore.sweep_temp` deletes).
    Every store validates the same way so the in-memory store cannot accept a
    key the filesystem store would refuse.
    """
    if not isinstance(key, str):
        raise ValueError(f"payload key must be a str, not {type(key).__name__}")
    if _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"invalid payload key {key[: MAX_KEY_LENGTH + 1]!r}")
    if key in (".", ".."):
        raise ValueError(f"invalid payload key {key!r}")
    if key.endswith(_TEMP_SUFFIX):
        raise ValueError(f"payload key may not end in {_TEMP_SUFFIX!r}: {key!r}")
    return key


def _as_bytes_view(data: bytes | memoryview) -> memoryview:
    """A flat, byte-sized view of ``data`` without copying it."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


@runtime_checkable
class PayloadStore(Protocol):
    """Where message bodies are kept, keyed by opaque strings (see :func:`validate_key`).

    Every method validates the key first and raises ``ValueError`` for a bad one.
    """

    async def put(self, key: str, data: bytes | memoryview) -> int:
        """Store ``data`` under ``key``, replacing any previous value; return its size.

        The payload is durable (survives a crash or power loss) when this returns.
        A reader sees either the old value or the new one, never a partial write.
        """
        ...

    def stage(self, key: str, data: bytes | memoryview) -> StagedPayload | None:
        """Take ``data`` for a new ``key``, stored and durable only once the returned
        barrier's ``make_durable`` has run; None if this store cannot stage (use put).

        For a caller that commits a database row naming the payload right away:
        the group-commit writer runs the barriers of a batch in a thread of their own
        while the batch waits for the database, and COMMITs only after they finished
        (storage/writer.py), so one flush writes a whole batch of payloads and makes
        them durable. A caller whose commit fails calls ``discard`` on the barrier,
        then deletes the key.
        """
        ...

    def inline_unit(self, key: str, data: bytes | memoryview) -> Callable[[Any], None] | None:
        """A function of a database connection that stores ``data`` under a new ``key`` in
        the caller's own transaction (storage/inline.py); None if this store keeps no
        bodies in the database (or not this one): stage or put it."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the payload stored under ``key``; raise :class:`PayloadNotFound` if absent."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if something was deleted, False if it was already gone."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a payload is stored under ``key``."""
        ...

    async def stale_keys(self, older_than_seconds: float) -> list[str]:
        """The keys stored at least ``older_than_seconds`` ago: what the reconciler
        (Mmsc.reconcile_payloads) checks against the database, to remove bodies that no
        row names after a crash between a write and its commit (or a delete and its)."""
        ...

    async def close(self) -> None:
        """Release resources; idempotent."""
        ...


def _fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedPayload:
    """A payload handed to :meth:`FilesystemPayloadStore.stage`: written and made durable
    by the first ``make_durable`` that runs after it (the writer's, before COMMIT)."""

    __slots__ = ("_error", "_item", "_seq", "_store", "discarded")

    def __init__(self, store: FilesystemPayloadStore, seq: int, item: durable.FileItem) -> None:
        self._store = store
        self._seq = seq
        self._item: durable.FileItem | None = item  # dropped once written: frees the body
        self._error = 0
        self.discarded = False

    def make_durable(self) -> None:
        """Block until the payload is on stable storage; raise OSError if it may not be.

        Runs in a worker thread (the writer's barrier thread, before COMMIT)."""
        self._store._sync_through(self._seq)
        if self._error:
            raise OSError(self._error, os.strerror(self._error), self._store.root_str)

    def discard(self) -> None:
        """No row will name this payload (its commit failed): do not write it. The
        caller still deletes the key, in case a flush wrote it already."""
        self.discarded = True


class FilesystemPayloadStore:
    """Payloads as files under ``root``, written with the power-loss-safe recipe.

    Layout: ``root/ab/cd/<key>`` where ``abcd...`` is the SHA-1 of the key.
    Two levels of 256 shards keep every directory small (a million payloads
    is about 15 files per leaf directory), because lookups, ``ls`` and backups
    of a directory with millions of entries are slow on most filesystems. The
    hash only spreads keys; it is not a security measure (keys are validated).

    Writes: temp file in the target directory, write everything, fsync it,
    ``os.replace`` onto the final name, fsync the directory (see :meth:`put`).
    Files are created mode 0600 (message bodies are private).

    All blocking I/O runs in worker threads, so the event loop never blocks on
    a disk. Puts are written in batches (see :meth:`_flush`): under load one
    thread hand-off serves many of them.

    ``fsync=False`` skips every fsync: faster, still atomic against a killed
    process (the page cache survives that), but not against power loss. Only
    for tests and throwaway labs.

    The constructor does no I/O; ``root`` (with its parents) is created by the
    first :meth:`put`. Reads from a store whose root does not exist yet simply
    find nothing. Assumes a POSIX filesystem with case-sensitive names.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        max_flushers: int = 4,
        sync: str = "filesystem",
    ) -> None:
        if sync not in ("filesystem", "file"):
            raise ValueError(f"payload sync must be 'filesystem' or 'file', not {sync!r}")
        self._root = Path(root).absolute()
        self._root_str = str(self._root)
        self._fsync = fsync
        # stage() and its one syncfs(2) per commit batch, where the system has it.
        self._staging = sync == "filesystem" and durable.HAS_SYNCFS
        self._staged = 0  # sequence number of the last staged payload
        self._synced = 0  # every staged payload up to this one is durable
        self._failed = 0  # ... except those up to this one: a flush failed after them
        self._unwritten: list[StagedPayload] = []  # staged, not written yet, in order
        self._stage_lock = threading.Lock()  # held for a list swap, never for I/O
        self._sync_lock = threading.Lock()  # held for a whole flush
        self._rounds: durable.SyncRounds | None = None  # see _rounds_now
        self._max_flushers = max_flushers
        self._pending: list[tuple[Path, memoryview, asyncio.Future[int]]] = []
        self._flushers = 0
        self._flush_tasks: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        # Directories whose own entry in their parent is known to be durable.
        # Another put may have created a shard directory a moment ago and not yet
        # fsynced its parent; a put only trusts a directory found in this set, so
        # it never returns while the path to its file could still vanish.
        # (set.add / `in` are atomic under the GIL; a race only costs an extra fsync.)
        self._durable_dirs: set[Path] = set()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def root_str(self) -> str:
        return self._root_str

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (which need not exist)."""
        validate_key(key)
        digest = hashlib.sha1(key.encode("ascii"), usedforsecurity=False).hexdigest()
        return self._root / digest[:2] / digest[2:4] / key

    # -- the PayloadStore protocol -------------------------------------------------

    def inline_unit(self, key: str, data: bytes | memoryview) -> Callable[[Any], None] | None:
        """Files only: storage.inline.InlinePayloadStore keeps bodies in the database."""
        return None

    def stage(self, key: str, data: bytes | memoryview) -> StagedPayload | None:
        """Take ``data`` for ``key``, to be written and made durable by the returned
        barrier's ``make_durable``; None with ``sync = "file"`` or without syncfs(2).
        Meant for new keys: a value it replaces may come back after a power loss
        until the barrier has run. The caller must not mutate ``data`` until then.

        Why: the accept path used to wait for :meth:`put` (a thread hand-off, two
        fsyncs per file) and then for the database writer (another hand-off, the WAL
        fsync), two serial stages per message. Staged, nothing happens on the calling
        thread (the event loop) but a hash: the first barrier of a commit batch writes
        every file staged so far in one call that releases the GIL once
        (storage/_durable.c: creating, writing and renaming a 31 KB file costs
        160-700 µs of kernel time here, which on the loop was a third of its work per
        message, bench/README.md session 5), then one syncfs(2) makes their data,
        inodes and directory entries durable, before the COMMIT of the rows that name
        them. The temp-then-rename recipe is kept, so a crash mid-write leaves
        only a ``.tmp`` file for :meth:`sweep_temp`.
        """
        if not self._staging:
            return None
        validate_key(key)
        # Plain strings: building the Path of path_for costs more than the rest here.
        digest = hashlib.sha1(key.encode("ascii"), usedforsecurity=False).hexdigest()
        directory = os.fsencode(f"{self._root_str}/{digest[:2]}/{digest[2:4]}")
        temp = f".{key}.{os.getpid()}.{next(_TEMP_COUNTER)}{_TEMP_SUFFIX}".encode()
        item = (directory, temp, key.encode(), _as_bytes_view(data))
        with self._stage_lock:
            self._staged += 1
            staged = StagedPayload(self, self._staged, item)
            self._unwritten.append(staged)
        return staged

    def _sync_through(self, seq: int) -> None:
        """Write every payload staged so far and make it durable with one syncfs(2);
        concurrent callers wait for one flush instead of each doing their own."""
        with self._sync_lock:
            if seq <= self._failed:
                raise OSError(errno.EIO, "an earlier flush of the payload store failed")
            if seq <= self._synced:
                return
            with self._stage_lock:
                taken, self._unwritten = self._unwritten, []
            if not taken:  # pragma: no cover - seq was staged, so it is in a list
                return
            target = taken[-1]._seq
            self._write_staged(taken)
            if self._fsync:
                try:
                    self._rounds_now().sync()
                except OSError:
                    # syncfs reports a writeback error once: what was staged before this
                    # call may be lost even if the next call succeeds.
                    self._failed = target
                    raise
            self._synced = target

    def _write_staged(self, taken: list[StagedPayload]) -> None:
        """Write the files of ``taken`` (all but the discarded), recording each one's
        errno on it; the shard directories they need are created on the way."""
        todo = [(p, p._item) for p in taken if not p.discarded and p._item is not None]
        try:
            self._rounds_now()
        except OSError as exc:
            for p, _item in todo:
                p._error, p._item = exc.errno or errno.EIO, None
            return
        codes = durable.write_files([item for _p, item in todo], False, True)
        for (p, _item), code in zip(todo, codes, strict=True):
            p._error, p._item = code, None

    def _rounds_now(self) -> durable.SyncRounds:
        """The syncfs rounds of the root's filesystem (shared with the database writer's
        when the database is on it too), the root created first if it does not exist."""
        if self._rounds is None:
            self._root.mkdir(parents=True, exist_ok=True)
            self._rounds = durable.rounds_for(self._root)
        return self._rounds

    async def put(self, key: str, data: bytes | memoryview) -> int:
        """Store ``data`` durably under ``key`` (atomic replace of any previous value).

        The recipe (write to a temp file, fsync it, rename over the target,
        fsync the directory) is the standard one for crash- and power-loss-safe
        replacement; see the comment in ``_write_batch``.

        The caller must not mutate a ``memoryview`` argument until this returns.
        """
        path = self.path_for(key)
        view = _as_bytes_view(data)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((path, view, future))
        if self._flushers < self._max_flushers:
            self._flushers += 1
            task = asyncio.create_task(self._flush())
            self._flush_tasks.add(task)
            task.add_done_callback(self._flush_tasks.discard)
        return await future

    async def _flush(self) -> None:
        """Write what is pending, a batch per thread hand-off, until nothing is left.

        Puts that arrive while a batch is being written wait for the next one, so
        under load one hand-off (and, compiled, one release of the GIL) serves many
        puts; up to ``max_flushers`` batches are written at once, so slow fsyncs
        overlap.
        """
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_flushers, "mmsc-payloads")
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                items = [(path, view) for path, view, _future in batch]
                try:
                    errors = await loop.run_in_executor(self._executor, self._write_batch, items)
                except Exception as exc:  # e.g. the root cannot be created: all of them fail
                    errors = [exc] * len(batch)  # type: ignore[list-item]
                for (_path, view, future), error in zip(batch, errors, strict=True):
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(view.nbytes)
                    else:
                        future.set_exception(error)
        finally:
            self._flushers -= 1

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        return await asyncio.to_thread(self._get_sync, key, path)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; with ``fsync=True`` the removal is durable when this returns."""
        path = self.path_for(key)
        return await asyncio.to_thread(self._delete_sync, path)

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    async def close(self) -> None:
        """Finish the puts in progress and stop the writer threads."""
        while self._flush_tasks:
            await asyncio.gather(*self._flush_tasks)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- maintenance ---------------------------------------------------------------

    async def stale_keys(self, older_than_seconds: float) -> list[str]:
        """See :class:`PayloadStore`. Leftover temp files of the same age are removed on
        the way (``sweep_temp``): garbage by construction."""
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must be >= 0")
        await self.sweep_temp(older_than_seconds)
        return await asyncio.to_thread(self._stale_sync, older_than_seconds)

    def _stale_sync(self, older_than_seconds: float) -> list[str]:
        cutoff = time.time() - older_than_seconds
        keys = []
        for level1 in _subdirs(self._root):
            for level2 in _subdirs(level1):
                with os.scandir(level2) as entries:
                    for entry in entries:
                        if entry.name.endswith(_TEMP_SUFFIX) or not _KEY_RE.fullmatch(entry.name):
                            continue
                        try:
                            if entry.is_file(follow_symlinks=False) and (
                                entry.stat(follow_symlinks=False).st_mtime < cutoff
                            ):
                                keys.append(entry.name)
                        except FileNotFoundError:
                            continue  # deleted meanwhile
        return keys

    async def sweep_temp(self, older_than_seconds: float = 3600) -> int:
        """Delete leftover ``*.tmp`` files older than ``older_than_seconds``; return the count.

        A temp file is left behind only when a process died in the middle of a
        put, whose caller therefore never got an answer and never committed a
        row pointing at it: it is garbage. ``older_than_seconds`` must exceed
        the longest a put can take, so that in-flight writes are not removed.
        Only the shard directories of the layout are scanned.
        """
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must be >= 0")
        return await asyncio.to_thread(self._sweep_sync, older_than_seconds)

    # -- blocking implementations (run in worker threads) ----------------------------

    def _ensure_dir(self, directory: Path) -> None:
        """Create ``directory`` (and missing parents) and make the chain durable.

        A new directory's name lives in its parent, so after ``mkdir`` the parent
        must be fsynced too, or a power loss can drop the whole subtree (and with
        it a file whose put already returned).
        """
        if directory in self._durable_dirs:
            return
        if directory != self._root:
            self._ensure_dir(directory.parent)
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
        else:
            # The root: create with parents, then fsync every level up to the
            # first ancestor we did not create (whose entry for the next level
            # is what was changed).
            missing = []
            probe = directory
            while not probe.exists():
                missing.append(probe)
                if probe.parent == probe:
                    break
                probe = probe.parent
            directory.mkdir(parents=True, exist_ok=True)
            if self._fsync:
                for created in missing[1:]:  # missing[0] is the root: synced below
                    _fsync_dir(created.parent)
        if self._fsync:
            # Also done when the directory already existed: it may have been made
            # a moment ago by a concurrent put (or before a crash) and not synced.
            _fsync_dir(directory.parent)
        self._durable_dirs.add(directory)

    def _write_batch(self, items: Sequence[tuple[Path, memoryview]]) -> list[OSError | None]:
        # Durable atomic replace, the standard recipe (see e.g. the LWN article
        # "Ensuring data reaches disk", https://lwn.net/Articles/457667/, and
        # SQLite's/PostgreSQL's own file handling), in storage/durable.py:
        #   1. write the new bytes to a unique temp file in the *same* directory
        #      (rename is only atomic within one filesystem);
        #   2. fsync the temp file, so its data and size are on disk before the
        #      name points at it (else a crash can leave a named, empty file);
        #   3. rename it onto the final name: readers see old or new, never
        #      half-written bytes;
        #   4. fsync the directory, so the rename itself survives power loss.
        # Temp names are unique per process and put (pid, counter; created with
        # O_EXCL), so concurrent puts of one key do not collide: the last rename wins.
        batch = []
        for path, view in items:
            self._ensure_dir_fresh(path.parent)
            batch.append(self._file_item(path, view))
        codes = durable.write_files(batch, self._fsync)
        errors: list[OSError | None] = []
        for (path, view), code in zip(items, codes, strict=True):
            if code == errno.ENOENT:  # its directory vanished meanwhile: recreate, retry once
                self._recreate_dir(path.parent)
                code = durable.write_files([self._file_item(path, view)], self._fsync)[0]
            errors.append(None if code == 0 else OSError(code, os.strerror(code), str(path)))
        return errors

    def _ensure_dir_fresh(self, directory: Path) -> None:
        try:
            self._ensure_dir(directory)
        except FileNotFoundError:
            self._recreate_dir(directory)

    def _recreate_dir(self, directory: Path) -> None:
        """A directory we knew was removed behind our back (an operator's cleanup, a
        restored backup), found before or while writing: forget what we knew about
        every directory and make this one (and its parents) again."""
        self._durable_dirs.clear()
        self._ensure_dir(directory)

    @staticmethod
    def _file_item(path: Path, view: memoryview) -> durable.FileItem:
        temp = f".{path.name}.{os.getpid()}.{next(_TEMP_COUNTER)}{_TEMP_SUFFIX}"
        return (os.fsencode(path.parent), temp.encode(), path.name.encode(), view)

    def _get_sync(self, key: str, path: Path) -> bytes:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except (FileNotFoundError, NotADirectoryError):
            raise PayloadNotFound(key) from None

    def _delete_sync(self, path: Path) -> bool:
        # A flush in progress may be writing a payload whose commit just failed (it was
        # taken before its discard): let it finish, so the file cannot appear after this.
        with self._sync_lock:
            pass
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if self._fsync:
            _fsync_dir(path.parent)
        return True

    def _sweep_sync(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for level1 in _subdirs(self._root):
            for level2 in _subdirs(level1):
                with os.scandir(level2) as entries:
                    for entry in entries:
                        if not entry.name.endswith(_TEMP_SUFFIX):
                            continue
                        try:
                            if not entry.is_file(follow_symlinks=False):
                                continue
                            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                                continue
                            os.unlink(entry.path)
                        except FileNotFoundError:
                            continue  # renamed into place or swept concurrently
                        removed += 1
        return removed


def _subdirs(directory: Path) -> list[Path]:
    """The shard directories (two lowercase hex digits) directly under ``directory``."""
    try:
        with os.scandir(directory) as entries:
            return [
                Path(entry.path)
                for entry in entries
                if _SHARD_RE.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []


class InMemoryPayloadStore:
    """A dict-backed :class:`PayloadStore` for unit tests of other modules.

    Same key validation, overwrite, delete and not-found behaviour as
    :class:`FilesystemPayloadStore`; nothing is durable. Stores a copy of the
    data, so a caller mutating its buffer afterwards does not change the payload.
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._written: dict[str, float] = {}

    def stage(self, key: str, data: bytes | memoryview) -> StagedPayload | None:
        """Not supported: callers put."""
        return None

    def inline_unit(self, key: str, data: bytes | memoryview) -> Callable[[Any], None] | None:
        """Not supported: callers put."""
        return None

    async def put(self, key: str, data: bytes | memoryview) -> int:
        validate_key(key)
        blob = _as_bytes_view(data).tobytes()
        self._data[key] = blob
        self._written[key] = time.time()
        return len(blob)

    async def get(self, key: str) -> bytes:
        validate_key(key)
        try:
            return self._data[key]
        except KeyError:
            raise PayloadNotFound(key) from None

    async def delete(self, key: str) -> bool:
        validate_key(key)
        self._written.pop(key, None)
        return self._data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        validate_key(key)
        return key in self._data

    async def stale_keys(self, older_than_seconds: float) -> list[str]:
        cutoff = time.time() - older_than_seconds
        return [key for key, written in self._written.items() if written < cutoff]

    async def close(self) -> None:
        """Nothing to release."""

    def keys(self) -> list[str]:
        """The stored keys, sorted (a test convenience, not part of the protocol)."""
        return sorted(self._data)
