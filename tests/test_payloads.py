"""The payload store: round trips, key hygiene, sharding, concurrency and crash safety."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storage import durable
from storage.payloads import (
    FilesystemPayloadStore,
    InMemoryPayloadStore,
    PayloadNotFound,
    PayloadStore,
    validate_key,
)
from tests.conftest import ROOT

T = TypeVar("T")

MB = 1024 * 1024


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def shard_path(root: Path, key: str) -> Path:
    """Where the layout promises ``key`` lives, computed independently of the store."""
    digest = hashlib.sha1(key.encode()).hexdigest()
    return root / digest[:2] / digest[2:4] / key


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.tmp"))


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (a truncation or shift would show)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


@pytest.fixture(params=["filesystem", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PayloadStore]:
    s: PayloadStore
    if request.param == "filesystem":
        s = FilesystemPayloadStore(tmp_path / "payloads")
    else:
        s = InMemoryPayloadStore()
    yield s
    run(s.close())


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemPayloadStore:
    return FilesystemPayloadStore(tmp_path / "payloads")


# -- behaviour common to every PayloadStore --------------------------------------------


def test_both_stores_implement_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FilesystemPayloadStore(tmp_path), PayloadStore)
    assert isinstance(InMemoryPayloadStore(), PayloadStore)


def test_round_trip_bytes(store: PayloadStore) -> None:
    async def main() -> None:
        assert await store.put("msg-1", b"hello") == 5
        assert await store.get("msg-1") == b"hello"
        assert await store.exists("msg-1")

    run(main())


def test_round_trip_memoryview(store: PayloadStore) -> None:
    buf = bytearray(b"0123456789abcdef")

    async def main() -> None:
        assert await store.put("mv", memoryview(buf)[4:12]) == 8
        got = await store.get("mv")
        assert type(got) is bytes
        assert got == b"456789ab"

    run(main())


def test_round_trip_non_byte_memoryview(store: PayloadStore) -> None:
    """A memoryview of 4-byte items is stored as its raw bytes, and put returns bytes, not items."""
    import array

    ints = array.array("I", [1, 2, 3])

    async def main() -> None:
        assert await store.put("ints", memoryview(ints)) == 12
        assert await store.get("ints") == ints.tobytes()

    run(main())


def test_round_trip_one_megabyte(store: PayloadStore) -> None:
    data = blob(MB, seed=1)

    async def main() -> None:
        assert await store.put("big", data) == MB
        assert await store.get("big") == data

    run(main())


def test_empty_payload(store: PayloadStore) -> None:
    async def main() -> None:
        assert await store.put("empty", b"") == 0
        assert await store.get("empty") == b""
        assert await store.exists("empty")

    run(main())


def test_overwrite_replaces_the_value(store: PayloadStore) -> None:
    async def main() -> None:
        await store.put("k", blob(5000, seed=2))
        assert await store.put("k", b"short") == 5
        assert await store.get("k") == b"short"  # not the tail of the longer old value

    run(main())


def test_delete_is_idempotent(store: PayloadStore) -> None:
    async def main() -> None:
        await store.put("k", b"x")
        assert await store.delete("k") is True
        assert await store.delete("k") is False
        assert await store.delete("never-stored") is False
        assert not await store.exists("k")
        with pytest.raises(PayloadNotFound):
            await store.get("k")

    run(main())


def test_missing_key_raises_payload_not_found(store: PayloadStore) -> None:
    async def main() -> None:
        with pytest.raises(PayloadNotFound) as info:
            await store.get("nope")
        assert info.value.key == "nope"
        assert isinstance(info.value, KeyError)
        assert not await store.exists("nope")

    run(main())


BAD_KEYS = [
    pytest.param("../x", id="dotdot-slash"),
    pytest.param("a/b", id="slash"),
    pytest.param("", id="empty"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("k" * 201, id="201-chars"),
    pytest.param("..", id="dotdot"),
    pytest.param(".", id="dot"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("msg\n", id="trailing-newline"),
    pytest.param("héllo", id="non-ascii"),
    pytest.param("a b", id="space"),
    pytest.param("x.tmp", id="temp-suffix"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected_by_every_method(store: PayloadStore, key: str) -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await store.put(key, b"x")
        with pytest.raises(ValueError):
            await store.get(key)
        with pytest.raises(ValueError):
            await store.delete(key)
        with pytest.raises(ValueError):
            await store.exists(key)

    run(main())


def test_bad_key_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "payloads"
    store = FilesystemPayloadStore(root)
    with pytest.raises(ValueError):
        run(store.put("../escape", b"x"))
    assert list(tmp_path.rglob("*")) == []  # not even the root was created


@pytest.mark.parametrize("key", ["a", "k" * 200, "A-Z_a.z-09", "...", "-", "20240101.abc_DEF-1"])
def test_good_keys_are_accepted(store: PayloadStore, key: str) -> None:
    assert validate_key(key) == key

    async def main() -> None:
        await store.put(key, key.encode())
        assert await store.get(key) == key.encode()

    run(main())


def test_stores_agree_on_a_sequence_of_operations(tmp_path: Path) -> None:
    """The in-memory store is a faithful stand-in: same results, same errors, same order."""

    async def script(s: PayloadStore) -> list[object]:
        log: list[object] = []

        async def step(op: Callable[[], Awaitable[object]]) -> None:
            try:
                log.append(await op())
            except Exception as exc:
                log.append(type(exc).__name__)

        await step(lambda: s.exists("a"))
        await step(lambda: s.get("a"))
        await step(lambda: s.put("a", b"one"))
        await step(lambda: s.put("b", memoryview(b"two-bytes")))
        await step(lambda: s.get("a"))
        await step(lambda: s.put("a", b"replaced"))
        await step(lambda: s.get("a"))
        await step(lambda: s.exists("a"))
        await step(lambda: s.delete("a"))
        await step(lambda: s.delete("a"))
        await step(lambda: s.get("a"))
        await step(lambda: s.exists("a"))
        await step(lambda: s.get("b"))
        await step(lambda: s.put("../b", b"x"))
        await step(lambda: s.get(""))
        await step(lambda: s.put("b", b""))
        await step(lambda: s.get("b"))
        await s.close()
        await step(lambda: s.close())
        return log

    fs_log = run(script(FilesystemPayloadStore(tmp_path / "fs")))
    mem_log = run(script(InMemoryPayloadStore()))
    assert fs_log == mem_log
    assert fs_log == [
        False,
        "PayloadNotFound",
        3,
        9,
        b"one",
        8,
        b"replaced",
        True,
        True,
        False,
        "PayloadNotFound",
        False,
        b"two-bytes",
        "ValueError",
        "ValueError",
        0,
        b"",
        None,
    ]


def test_in_memory_store_copies_the_buffer() -> None:
    store = InMemoryPayloadStore()
    buf = bytearray(b"abc")
    run(store.put("k", memoryview(buf)))
    buf[0] = ord("X")
    assert run(store.get("k")) == b"abc"
    assert store.keys() == ["k"]


# -- filesystem layout -------------------------------------------------------------------


def test_root_is_created_on_first_put_with_parents(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "payloads"
    store = FilesystemPayloadStore(root)
    assert not (tmp_path / "a").exists()  # the constructor does no I/O
    assert run(store.exists("k")) is False
    with pytest.raises(PayloadNotFound):
        run(store.get("k"))
    assert run(store.delete("k")) is False
    assert run(store.sweep_temp()) == 0
    run(store.put("k", b"v"))
    assert root.is_dir()
    assert run(store.get("k")) == b"v"


def test_relative_root_is_pinned_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = FilesystemPayloadStore("var/payloads")
    monkeypatch.chdir("/")
    run(store.put("k", b"v"))
    assert shard_path(tmp_path / "var" / "payloads", "k").read_bytes() == b"v"


def test_sharded_layout(fs_store: FilesystemPayloadStore) -> None:
    root = fs_store.root
    keys = ["msg-1", "msg-2", "MSG-1"]
    for key in keys:
        run(fs_store.put(key, key.encode()))
    for key in keys:
        path = shard_path(root, key)
        assert path.is_file()
        assert path.read_bytes() == key.encode()
        assert fs_store.path_for(key) == path
        level1, level2 = path.parent.parent.name, path.parent.name
        assert len(level1) == 2 and len(level2) == 2
        assert path.parent.parent.parent == root
    assert all_files(root) == sorted(shard_path(root, k) for k in keys)


def test_put_recreates_a_shard_directory_removed_behind_its_back(
    fs_store: FilesystemPayloadStore,
) -> None:
    run(fs_store.put("k", b"one"))
    shard1 = shard_path(fs_store.root, "k").parent.parent
    shutil.rmtree(shard1)
    assert run(fs_store.exists("k")) is False
    run(fs_store.put("k", b"two"))
    assert shard_path(fs_store.root, "k").read_bytes() == b"two"


def test_files_are_private(fs_store: FilesystemPayloadStore) -> None:
    run(fs_store.put("k", b"secret"))
    assert shard_path(fs_store.root, "k").stat().st_mode & 0o077 == 0


def test_concurrent_puts_all_readable(fs_store: FilesystemPayloadStore) -> None:
    n = 200
    payloads = {f"msg-{i:03d}": blob(1000 + i, seed=i) for i in range(n)}

    async def main() -> None:
        sizes = await asyncio.gather(*(fs_store.put(k, v) for k, v in payloads.items()))
        assert sizes == [len(v) for v in payloads.values()]
        got = await asyncio.gather(*(fs_store.get(k) for k in payloads))
        assert dict(zip(payloads, got, strict=True)) == payloads

    run(main())
    assert len(all_files(fs_store.root)) == n
    assert temp_files(fs_store.root) == []


def test_concurrent_puts_of_one_key_leave_one_whole_value(
    fs_store: FilesystemPayloadStore,
) -> None:
    values = [blob(64 * 1024, seed=i) for i in range(20)]

    async def main() -> bytes:
        await asyncio.gather(*(fs_store.put("same", v) for v in values))
        return await fs_store.get("same")

    assert run(main()) in values
    assert temp_files(fs_store.root) == []
    assert all_files(fs_store.root) == [shard_path(fs_store.root, "same")]


def test_no_temp_files_left_after_puts(fs_store: FilesystemPayloadStore) -> None:
    async def main() -> None:
        for i in range(10):
            await fs_store.put(f"k{i}", blob(10_000, seed=i))
            await fs_store.put(f"k{i}", b"again")

    run(main())
    assert temp_files(fs_store.root) == []
    assert len(all_files(fs_store.root)) == 10


def test_failed_put_leaves_no_temp_file_and_no_payload(
    fs_store: FilesystemPayloadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(fs_store.put("warmup", b"w"))  # create the root before fsync starts failing
    monkeypatch.setattr(durable, "_write_files_c", None)  # the Python recipe calls os.fsync

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        run(fs_store.put("k", b"data"))
    monkeypatch.undo()
    assert temp_files(fs_store.root) == []
    assert run(fs_store.exists("k")) is False
    # The old value survives a failed overwrite.
    monkeypatch.setattr(durable, "_write_files_c", None)
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        run(fs_store.put("warmup", b"new"))
    monkeypatch.undo()
    assert run(fs_store.get("warmup")) == b"w"
    assert temp_files(fs_store.root) == []


@pytest.mark.parametrize("compiled", [True, False], ids=["c", "python"])
def test_failed_rename_leaves_no_temp_file_either_implementation(
    fs_store: FilesystemPayloadStore, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    if compiled:
        assert durable.COMPILED, "the C helper is built by the default install (setup.py)"
    else:
        monkeypatch.setattr(durable, "_write_files_c", None)
    run(fs_store.put("ok", b"fine"))
    blocked = fs_store.path_for("blocked")
    blocked.mkdir(parents=True)  # a directory where the file should go: rename fails
    (blocked / "inside").write_bytes(b"x")

    async def three_at_once() -> list[Any]:  # one batch: the failure is that put's alone
        puts = [fs_store.put(k, v) for k, v in (("a", b"1"), ("blocked", b"2"), ("b", b"3"))]
        return await asyncio.gather(*puts, return_exceptions=True)

    results = run(three_at_once())
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], OSError)
    assert run(fs_store.get("a")) == b"1" and run(fs_store.get("b")) == b"3"
    assert temp_files(fs_store.root) == []


def test_stray_temp_file_is_never_returned(fs_store: FilesystemPayloadStore) -> None:
    run(fs_store.put("other", b"x"))  # creates the root
    target = shard_path(fs_store.root, "k")
    target.parent.mkdir(parents=True, exist_ok=True)
    stray = target.parent / ".k.abc123.tmp"
    stray.write_bytes(b"half-writ")
    with pytest.raises(PayloadNotFound):
        run(fs_store.get("k"))
    assert run(fs_store.exists("k")) is False
    with pytest.raises(ValueError):
        run(fs_store.get(stray.name))  # a temp name is not a valid key


def test_sweep_temp_removes_old_strays_only(fs_store: FilesystemPayloadStore) -> None:
    run(fs_store.put("keep", b"payload"))
    shard = shard_path(fs_store.root, "k").parent
    shard.mkdir(parents=True, exist_ok=True)
    old = shard / ".k.old1234.tmp"
    fresh = shard / ".k.new5678.tmp"
    old.write_bytes(b"crashed mid-write")
    fresh.write_bytes(b"in flight")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    # An old *payload* is not a temp file: sweeping must not touch it.
    kept = shard_path(fs_store.root, "keep")
    os.utime(kept, (two_hours_ago, two_hours_ago))

    assert run(fs_store.sweep_temp(older_than_seconds=3600)) == 1
    assert not old.exists()
    assert fresh.read_bytes() == b"in flight"
    assert kept.read_bytes() == b"payload"
    assert run(fs_store.get("keep")) == b"payload"
    assert run(fs_store.sweep_temp(older_than_seconds=3600)) == 0  # idempotent
    # With a threshold of zero everything stale enough goes, including the fresh one.
    one_sec_ago = time.time() - 1
    os.utime(fresh, (one_sec_ago, one_sec_ago))
    assert run(fs_store.sweep_temp(older_than_seconds=0)) == 1
    assert temp_files(fs_store.root) == []
    assert kept.exists()


def test_sweep_temp_rejects_negative_age(fs_store: FilesystemPayloadStore) -> None:
    with pytest.raises(ValueError):
        run(fs_store.sweep_temp(older_than_seconds=-1))


# -- durability --------------------------------------------------------------------------


def test_put_follows_the_durability_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync(file) -> rename -> fsync(dir); each directory put created is synced in its parent.

    Spied on the Python recipe of storage/durable.py; the C helper makes the same calls
    in the same order (storage/_durable.c) and is checked for its outcomes elsewhere."""
    events: list[tuple[str, int]] = []  # ("fsync", inode) / ("replace", inode of the temp file)
    real_fsync, real_rename = os.fsync, os.rename

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def spy_replace(src: Any, dst: Any, **dir_fds: Any) -> None:
        events.append(("replace", os.stat(src, dir_fd=dir_fds.get("src_dir_fd")).st_ino))
        real_rename(src, dst, **dir_fds)

    def patch() -> None:
        monkeypatch.setattr(durable, "_write_files_c", None)
        monkeypatch.setattr(os, "fsync", spy_fsync)
        monkeypatch.setattr(os, "rename", spy_replace)

    base = tmp_path / "base"
    base.mkdir()
    root = base / "new" / "payloads"
    store = FilesystemPayloadStore(root)
    patch()
    run(store.put("k", b"data"))
    monkeypatch.undo()

    final = shard_path(root, "k")
    file_ino = final.stat().st_ino  # a rename keeps the inode
    shard2, shard1 = final.parent, final.parent.parent
    ino = {p: p.stat().st_ino for p in (shard2, shard1, root, root.parent, base)}

    i_file = events.index(("fsync", file_ino))
    i_replace = events.index(("replace", file_ino))
    i_dir = events.index(("fsync", ino[shard2]))
    assert i_file < i_replace < i_dir, events
    synced = {i for kind, i in events if kind == "fsync"}
    # Each created directory's name lives in its parent, which must be synced too.
    for parent in (shard1, root, root.parent, base):
        assert ino[parent] in synced, parent

    # A second put into the same shard needs no directory creation but the same recipe.
    events.clear()
    patch()
    run(store.put("k", b"data2"))
    monkeypatch.undo()
    new_ino = final.stat().st_ino
    assert events == [("fsync", new_ino), ("replace", new_ino), ("fsync", ino[shard2])]


def test_fsync_false_never_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    store = FilesystemPayloadStore(tmp_path / "p", fsync=False)
    run(store.put("k", b"v"))
    assert run(store.delete("k")) is True
    monkeypatch.undo()
    assert calls == []
    assert not shard_path(tmp_path / "p", "k").exists()


def test_put_does_not_block_the_event_loop(
    fs_store: FilesystemPayloadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync waits for a callback scheduled on the loop: only off-loop I/O can complete."""
    release = threading.Event()
    real_fsync = os.fsync

    def gated_fsync(fd: int) -> None:
        if not release.wait(timeout=10):
            raise AssertionError("the event loop was blocked during put()")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", gated_fsync)

    async def main() -> int:
        asyncio.get_running_loop().call_soon(release.set)
        return await fs_store.put("k", b"v")

    assert run(main()) == 1
    monkeypatch.undo()
    assert run(fs_store.get("k")) == b"v"


CHILD = """
import asyncio, os, signal, sys
from storage.payloads import FilesystemPayloadStore

root, key, how = sys.argv[1], sys.argv[2], sys.argv[3]
data = sys.stdin.buffer.read()
size = asyncio.run(FilesystemPayloadStore(root).put(key, data))
sys.stdout.write(f"{size}\\n")
sys.stdout.flush()
if how == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(0)
"""


@pytest.mark.parametrize("how", ["sigkill", "os_exit"])
def test_payload_survives_the_writer_dying_right_after_put(tmp_path: Path, how: str) -> None:
    root = tmp_path / "payloads"
    data = blob(MB + 17, seed=42)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), "msg-crash", how],
        input=data,
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    expected_rc = -signal.SIGKILL if how == "sigkill" else 0
    assert result.returncode == expected_rc, result.stderr.decode()
    assert result.stdout == f"{len(data)}\n".encode()  # put returned before the process died
    store = FilesystemPayloadStore(root)
    assert run(store.get("msg-crash")) == data
    assert temp_files(root) == []


# -- staged payloads (made durable by the writer's barrier) -----------------------------


def test_stage_writes_the_file_and_one_flush_covers_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not durable.HAS_SYNCFS:
        pytest.fail("syncfs(2) is expected on the Linux machines this suite runs on")
    flushes: list[int] = []
    real = durable.sync_filesystem
    monkeypatch.setattr(durable, "sync_filesystem", lambda fd: (flushes.append(fd), real(fd)))
    store = FilesystemPayloadStore(tmp_path / "payloads")
    staged = [store.stage(f"m{i}", blob(3000 + i, seed=i)) for i in range(5)]
    assert all(s is not None for s in staged)
    # Nothing is written on the calling thread (the event loop): not even the root.
    assert not store.root.exists()
    assert staged[2] is not None
    staged[2].make_durable()  # any barrier writes everything staged so far
    for i in range(5):
        assert shard_path(store.root, f"m{i}").read_bytes() == blob(3000 + i, seed=i)
    assert temp_files(store.root) == []
    for s in staged:
        assert s is not None
        s.make_durable()
    assert len(flushes) == 1  # the first barrier flushed all five; the others found it done
    later = store.stage("m5", b"x")
    assert later is not None
    later.make_durable()
    assert len(flushes) == 2
    run(store.close())


def test_a_discarded_stage_is_never_written_and_the_others_are(tmp_path: Path) -> None:
    store = FilesystemPayloadStore(tmp_path / "payloads")
    kept, dropped = store.stage("kept", b"k" * 100), store.stage("dropped", b"d" * 100)
    assert kept is not None and dropped is not None
    dropped.discard()  # its commit failed before any flush took it
    kept.make_durable()
    assert shard_path(store.root, "kept").read_bytes() == b"k" * 100
    assert not shard_path(store.root, "dropped").exists()
    run(store.close())


def test_a_staged_file_that_cannot_be_written_fails_only_its_own_barrier(
    tmp_path: Path,
) -> None:
    store = FilesystemPayloadStore(tmp_path / "payloads")
    good, bad = store.stage("good", b"g"), store.stage("bad", b"b")
    assert good is not None and bad is not None
    # The final name of "bad" is taken by a non-empty directory: its rename fails.
    (shard_path(store.root, "bad") / "x").mkdir(parents=True)
    with pytest.raises(OSError):
        bad.make_durable()
    good.make_durable()
    assert shard_path(store.root, "good").read_bytes() == b"g"
    assert temp_files(store.root) == []
    run(store.close())


@pytest.mark.parametrize("compiled", [True, False])
def test_write_files_makes_missing_shard_directories_when_asked(
    tmp_path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(durable, "_write_files_c", None)
    elif not durable.COMPILED:
        pytest.fail("the compiled helper is expected where the suite installs mmsc")
    item = (os.fsencode(tmp_path / "ab" / "cd"), b".f.tmp", b"f", b"data")
    assert durable.write_files([item], False) == [errno.ENOENT]  # not asked
    assert durable.write_files([item], False, True) == [0]
    assert (tmp_path / "ab" / "cd" / "f").read_bytes() == b"data"
    second = (os.fsencode(tmp_path / "ab" / "ce"), b".g.tmp", b"g", b"more")
    assert durable.write_files([second], False, True) == [0]  # parent already there
    assert (tmp_path / "ab" / "ce" / "g").read_bytes() == b"more"


def test_stage_is_declined_where_the_caller_must_put(tmp_path: Path) -> None:
    assert FilesystemPayloadStore(tmp_path / "a", sync="file").stage("k", b"x") is None
    assert InMemoryPayloadStore().stage("k", b"x") is None
    with pytest.raises(ValueError, match="payload sync"):
        FilesystemPayloadStore(tmp_path / "b", sync="sometimes")


def test_a_failed_flush_fails_every_payload_staged_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs reports a writeback error once: a later successful flush must not vouch
    for payloads staged before the failed one."""
    store = FilesystemPayloadStore(tmp_path / "payloads")
    first, second = store.stage("a", b"1"), store.stage("b", b"2")
    assert first is not None and second is not None

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "sync_filesystem", broken)
    with pytest.raises(OSError, match="Input/output"):
        first.make_durable()
    monkeypatch.undo()
    with pytest.raises(OSError, match="earlier flush"):
        second.make_durable()
    third = store.stage("c", b"3")
    assert third is not None
    third.make_durable()  # what was staged after the failure can still be made durable
    run(store.close())
