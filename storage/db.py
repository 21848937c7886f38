"""Database engines and schema upgrades for SQLite (embedded) and PostgreSQL (multi-node).

SQLite runs in WAL mode: readers never block the writer and a commit is one
append to the log. ``synchronous=FULL`` (the default here) fsyncs the log at
every commit, which is what the promise "survives power loss" needs; NORMAL
survives a killed process but not a power cut. PostgreSQL runs through
asyncpg; its durability is the server's (fsync on, synchronous_commit on).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
WRITE_OPTION = "mmsc_write"  # execution option marking a connection that will write
LOCK_WAIT = 30.0  # seconds a writer waits for SQLite's write lock before giving up
LOCK_WAIT_OPTION = "mmsc_lock_wait"  # False: a write BEGIN tries once (see _sqlite_setup)
_SYNCHRONOUS: dict[str, str] = {}  # SQLite URL -> synchronous level, for sync_twin()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_setup(
    sync_engine: Engine,
    sync: str,
    *,
    poll_lock: bool = False,
    busy_timeout: float = LOCK_WAIT,
    autocheckpoint: bool = True,
    closing_sync: str | None = None,
) -> None:
    """WAL, the chosen synchronous level, and BEGIN IMMEDIATE for write transactions.

    ``poll_lock``: the engine's busy timeout is 0 and a write BEGIN that finds the lock
    taken retries itself every 0.2-2 ms (for up to ``LOCK_WAIT`` s). SQLite's own busy
    handler sleeps 1, 2, 5, 10 ... 100 ms between tries, which with several processes
    on one file (``[server] workers``) left a writer asleep long after the lock was
    free: p99 over 500 ms. Only for the group-commit writer's own thread, which may
    block.

    ``autocheckpoint`` False: this engine's commits never checkpoint the log
    (storage/checkpoint.py does it in a thread of its own).

    ``closing_sync``: the level a connection switches to before it closes. The last
    connection to close checkpoints the log into the database file and deletes it,
    syncing as its level says; a writer that syncs the log itself (``sync`` OFF,
    storage/writer.py) must not do that unsynced.
    """

    @event.listens_for(sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sync}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # How long a statement waits for another connection's lock. 0 for the connections
        # used on the event loop (the writer's own BEGIN polls in its thread instead):
        # they must fail at once, never block the loop.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    if closing_sync is not None:

        @event.listens_for(sync_engine, "close")
        @event.listens_for(sync_engine, "close_detached")
        def _before_close(dbapi_connection: Any, *_args: Any) -> None:
            with contextlib.suppress(Exception):  # a broken connection has nothing to sync
                dbapi_connection.execute(f"PRAGMA synchronous={closing_sync}")

    @event.listens_for(sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # A write transaction takes SQLite's write lock when it starts (IMMEDIATE):
        # its SELECTs (due recipients, pushes to claim) are then exclusive even
        # against another process on the same file, e.g. an old and a new server
        # overlapping during a restart. Reads stay DEFERRED and never block.
        options = conn.get_execution_options()
        immediate = options.get(WRITE_OPTION, False)
        if not (immediate and poll_lock and options.get(LOCK_WAIT_OPTION, True)):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
            return
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.0002
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


def _private_file(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite does (with the
    umask's 0644): it holds the fetch tokens, addresses and subjects, and inline bodies.
    SQLite gives the -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_engine(url: str, *, sqlite_synchronous: str = "FULL", echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``; for SQLite, the file's directory is created."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        sync = sqlite_synchronous.upper()
        if sync not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNCHRONOUS}")
        database = parsed.database
        if database and database != ":memory:":
            _private_file(Path(database).expanduser().resolve())
        kwargs["connect_args"] = {"timeout": 30}
        engine = create_async_engine(url, **kwargs)
        _sqlite_setup(engine.sync_engine, sync)
        _SYNCHRONOUS[str(engine.url)] = sync
        return engine
    kwargs.update(pool_size=int(os.environ.get("MMSC_DB_POOL_SIZE", "10")), pool_pre_ping=True)
    return create_async_engine(url, **kwargs)


def sync_twin(
    engine: AsyncEngine,
    *,
    busy_timeout: float = LOCK_WAIT,
    poll_lock: bool = False,
    autocheckpoint: bool = True,
    synchronous: str | None = None,
) -> Engine | None:
    """For SQLite, a plain synchronous engine on the same file (pysqlite), else None.

    ``synchronous``: this engine's level instead of the file's (``sqlite_synchronous``);
    its connections return to the file's level before they close.

    The group-commit writer runs its batches on it in one thread: a statement
    then costs about 30 µs instead of the 370 µs of a round trip through
    aiosqlite's worker thread and the event loop (bench/README.md).
    """
    if engine.dialect.name != "sqlite":
        return None
    timeout = 0.0 if poll_lock else busy_timeout
    url = engine.url.set(drivername="sqlite")
    twin = sa_create_engine(
        url,
        connect_args={"timeout": timeout, "check_same_thread": False},
        echo=engine.echo,
    )
    level = sqlite_synchronous(engine)
    _sqlite_setup(
        twin,
        synchronous or level,
        poll_lock=poll_lock,
        busy_timeout=timeout,
        autocheckpoint=autocheckpoint,
        closing_sync=level if synchronous not in (None, level) else None,
    )
    return twin


def sqlite_synchronous(engine: AsyncEngine) -> str:
    """The synchronous level a SQLite engine was created with."""
    return _SYNCHRONOUS.get(str(engine.url), "FULL")


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (an empty database gets all of it)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
