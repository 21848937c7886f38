"""`mmsc serve` with ``[server] workers = N``: pre-forked processes sharing the listeners.

One process runs Python on one core at a time (the GIL), and the accept path
is CPU-bound there (bench/README.md). With N workers the parent binds the
three listening sockets once, upgrades the schema once, then forks N copies of
the server that inherit the sockets, so the kernel spreads connections over
them. Each worker is a full node: its own group-commit writer, scheduler,
notification backend (and SMPP binds) and caches. They share the database and
the payload directory exactly as several nodes do: claims are exclusive
(BEGIN IMMEDIATE on SQLite, SKIP LOCKED on PostgreSQL), payloads never change
under a key, so no recipient is notified twice and any worker can serve any
retrieval.

Metrics: with several workers, prometheus-client runs in its multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set before it is first imported), and
``/metrics`` sums the workers' counters and histograms; see mmsc/metrics.py
for how each gauge is combined.

The parent only supervises: SIGTERM or SIGINT is passed on to every worker
(each drains and stops as a single server does), and a worker that dies
unexpectedly is started again, unless it dies within ``CRASH_WINDOW`` seconds
of starting ``MAX_QUICK_CRASHES`` times in a row (a configuration or database
problem that restarting cannot fix): then all stop and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from mmsc.config import Listen

log = logging.getLogger("mmsc.workers")

LISTENERS = ("mm1", "mm7", "admin")
CRASH_WINDOW = 5.0  # seconds: a worker dying this soon after its start counts as a crash loop
MAX_QUICK_CRASHES = 3
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def worker_count(config: dict[str, Any]) -> int:
    """``[server] workers``: 1 (the default) runs the server in this process."""
    from mmsc import config as settings

    return settings.integer(
        settings.table(config, "server"), "server", "workers", 1, low=1, high=64
    )


def prepare_metrics_dir() -> str:
    """A fresh directory for the workers' metric files; must run before prometheus_client
    is imported (it picks its storage at import time)."""
    path = tempfile.mkdtemp(prefix="mmsc-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listen.host, listen.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _upgrade(config: dict[str, Any]) -> None:
    from mmsc import config as settings
    from storage import db

    storage_cfg = settings.table(config, "storage")
    engine = db.create_engine(
        settings.text(storage_cfg, "storage", "database_url", settings.DEFAULT_DATABASE_URL),
        sqlite_synchronous=settings.text(storage_cfg, "storage", "sqlite_synchronous", "FULL"),
    )
    try:
        await db.upgrade(engine)
    finally:
        await engine.dispose()


def serve(config: dict[str, Any], count: int) -> int:
    """Run ``count`` workers until a signal stops them; the process exit status."""
    from mmsc import server

    asyncio.run(_upgrade(config))  # once, before any worker opens the database
    sockets = {
        name: bind(Listen.parse(config[name]["listen"], f"{name}.listen")) for name in LISTENERS
    }
    for name, sock in sockets.items():
        host, port = sock.getsockname()[:2]
        log.info("%s listening on %s:%d (%d workers)", name, host, port, count)
        server.announce_listener(name, host, port)

    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
    stopping = False
    quick_crashes = 0

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: a whole server on the inherited sockets
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                asyncio.run(server.run(config, sockets=sockets, worker=index))
                status = 0
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = (index, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(count):
        start(index)
    failed = False
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index, started = children.pop(pid)
        _mark_dead(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            log.info("worker %d (pid %d) stopped (%d)", index, pid, code)
            continue
        log.error("worker %d (pid %d) died (%d)", index, pid, code)
        quick = time.monotonic() - started < CRASH_WINDOW
        quick_crashes = quick_crashes + 1 if quick else 0
        if quick_crashes >= MAX_QUICK_CRASHES:
            log.error("workers keep dying at start; stopping")
            failed = True
            stop(signal.SIGTERM, None)
            continue
        start(index)
    for sock in sockets.values():
        sock.close()
    metrics_dir = os.environ.get(MULTIPROC_ENV)
    if metrics_dir and os.path.basename(metrics_dir).startswith("mmsc-metrics-"):
        shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.stdout.flush()
    return 1 if failed else 0


def _mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from what /metrics sums."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
