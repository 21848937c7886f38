"""`mmsc serve`: run every configured listener in one process until a signal stops it.

Start-up order: database (upgraded to the newest schema), payload store,
notification backend, core, scheduler, then the listeners. Stopping runs
the other way round: listeners close first (no new work), then the scheduler
finishes its pass, then the writer commits what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from mmsc import admin, mm1, mm7
from mmsc import config as settings
from mmsc.adapt.service import AdaptationService
from mmsc.adapt.targets import TargetResolver
from mmsc.config import DEFAULT_DATABASE_URL, ConfigError, Listen
from mmsc.core import Mmsc, Policy
from mmsc.mm7_config import load_vasps
from mmsc.mm7_outbound import Mm7Outbound
from mmsc.notify.base import make_backend
from mmsc.notify.smpp import SmppBackend
from mmsc.receipts import ReceiptRecorder
from mmsc.scheduler import LEASE_SECONDS, RECONCILE_INTERVAL, Scheduler
from storage import db
from storage.inline import INLINE_PAYLOAD_MAX, InlinePayloadStore
from storage.payloads import FilesystemPayloadStore, PayloadStore

log = logging.getLogger("mmsc.server")


def _check_lease(backend: object, lease: float) -> None:
    """A push is claimed for ``[scheduler] push_lease`` and sent while at least half of it
    is left (mmsc.outbox_loop renews it); a send that may take longer than that can find
    its claim taken by another node and the push sent twice. Said at startup."""
    if not isinstance(backend, SmppBackend):
        return
    longest = max(backend.submit_timeout, backend.congestion_max_wait)
    if longest > lease / 2:
        log.warning(
            "[smpp] submit_timeout/congestion_max_wait (%g s) is more than half of"
            " [scheduler] push_lease (%g s): a slow send may be sent again by another node",
            longest,
            lease,
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def announce_listener(name: str, host: str, port: int) -> None:
    """The start-up line that scripts and tests read the bound port from, written in one
    write(2): print() writes the text and the newline separately, and the log flusher's
    thread (mmsc/log_output.py) could land a line in between on a shared pipe."""
    sys.stdout.write(f"mmsc: {name} listening on http://{host}:{port}\n")
    sys.stdout.flush()


async def _start_site(
    app: web.Application, listen: Listen, name: str, sock: socket.socket | None = None
) -> web.AppRunner:
    """Serve ``app`` on ``listen``, or on ``sock`` bound by the parent of several workers
    (mmsc/workers.py), which has announced it already."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    if sock is not None:
        await web.SockSite(runner, sock).start()
        return runner
    site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
    await site.start()
    server: Any = site._server  # the only way to learn the port of a port-0 binding
    for sock in getattr(server, "sockets", None) or []:
        host, port = sock.getsockname()[:2]
        log.info("%s listening on %s:%d", name, host, port)
        announce_listener(name, host, port)
    return runner


async def run(
    config: dict[str, Any],
    stop: asyncio.Event | None = None,
    *,
    sockets: dict[str, socket.socket] | None = None,
    worker: int | None = None,
) -> None:
    """Start everything, then wait for ``stop`` or SIGINT/SIGTERM, then drain and stop.

    ``sockets`` (listener name -> bound socket) and ``worker`` (its index) are given to
    each worker process by mmsc/workers.py."""
    sockets = sockets or {}
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread (tests run the server in one): skip there.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)

    # Every setting is read before anything starts: a bad value is a ConfigError naming
    # its key, not a traceback once the database is open.
    storage_cfg = settings.table(config, "storage")
    sched_cfg = settings.table(config, "scheduler")
    adapt_cfg = settings.table(config, "adapt")
    # Payload writes wait on fsync in threads; the default pool (cores + 4 threads) would
    # cap how many can wait at once, and with it the accept rate.
    io_threads = settings.integer(storage_cfg, "storage", "io_threads", 64, low=1)
    database_url = settings.text(storage_cfg, "storage", "database_url", DEFAULT_DATABASE_URL)
    sqlite_synchronous = settings.text(storage_cfg, "storage", "sqlite_synchronous", "FULL")
    payload_dir = Path(settings.text(storage_cfg, "storage", "payload_dir", "var/payloads"))
    payload_fsync = settings.boolean(storage_cfg, "storage", "payload_fsync", True)
    payload_sync = settings.text(storage_cfg, "storage", "payload_sync", "filesystem")
    inline_max = settings.integer(
        storage_cfg, "storage", "inline_payload_max", INLINE_PAYLOAD_MAX, low=0
    )
    writer_concurrency = settings.integer(storage_cfg, "storage", "writer_concurrency", 2, low=1)
    reconcile_interval = settings.number(
        storage_cfg, "storage", "reconcile_interval", RECONCILE_INTERVAL
    )
    mm1_listen = Listen.parse(config["mm1"]["listen"], "mm1.listen")
    admin_listen = Listen.parse(config["admin"]["listen"], "admin.listen")
    admin_cfg = settings.table(config, "admin")
    api_token = settings.optional_text(admin_cfg, "admin", "api_token")
    ready_requires_notify = settings.boolean(admin_cfg, "admin", "ready_requires_notify", False)
    if api_token is None and not _loopback(admin_listen.host):
        log.warning(
            "admin listens on %s without [admin] api_token: anyone who reaches it can read"
            " the message API and change subscribers' capabilities",
            admin_listen.host,
        )
    mm7_listen = Listen.parse(config["mm7"]["listen"], "mm7.listen")
    policy = Policy.from_config(config)
    mm1.Mm1Settings.from_config(config)
    mm7.Mm7Limits.from_config(config)
    poll_interval = settings.number(sched_cfg, "scheduler", "poll_interval", 1.0, positive=True)
    batch = settings.integer(sched_cfg, "scheduler", "batch", 100, low=1)
    lease = settings.number(sched_cfg, "scheduler", "push_lease", LEASE_SECONDS, positive=True)
    coalesce = settings.number(sched_cfg, "scheduler", "coalesce", 0.005)
    adapt_workers = settings.integer(adapt_cfg, "adapt", "workers", 0, low=0) or None
    adapt_timeout = settings.number(adapt_cfg, "adapt", "timeout", 10.0, positive=True)
    adapt_retry_after = settings.number(adapt_cfg, "adapt", "retry_after", 600.0)
    backend = make_backend(config)
    _check_lease(backend, lease)
    vasps = load_vasps(config)
    targets = TargetResolver(config)
    loop.set_default_executor(ThreadPoolExecutor(io_threads, thread_name_prefix="mmsc-io"))
    try:
        engine = db.create_engine(database_url, sqlite_synchronous=sqlite_synchronous)
    except ValueError as exc:
        raise ConfigError(f"storage: {exc}") from None
    await db.upgrade(engine)
    log.info("database ready (%s)", engine.url.render_as_string(hide_password=True))
    try:
        payloads = FilesystemPayloadStore(payload_dir, fsync=payload_fsync, sync=payload_sync)
    except ValueError as exc:
        raise ConfigError(f"storage: {exc}") from None
    store: PayloadStore = payloads
    if inline_max > 0:
        store = InlinePayloadStore(payloads, inline_max)
    core = Mmsc(
        engine,
        store,
        policy,
        writer_concurrency=writer_concurrency,
        # "file" keeps syncfs(2) off that disk altogether, the log's sync included.
        log_sync=payload_sync == "filesystem",
    )
    await core.start()
    if isinstance(backend, SmppBackend):
        backend.receipt_sink = ReceiptRecorder(core)
    await backend.start()
    log.info("notification backend: %s", backend.name)
    scheduler = Scheduler(
        core,
        backend,
        poll_interval=poll_interval,
        batch=batch,
        lease=lease,
        coalesce=coalesce,
        # One reconciler per database is enough: with [server] workers, worker 0's.
        reconcile_interval=reconcile_interval if not worker else 0.0,
    )
    outbound = Mm7Outbound(core, vasps) if any(v.deliver_url for v in vasps.values()) else None
    if outbound is not None:
        await outbound.start()
        scheduler.mm7 = outbound
    await scheduler.start()

    targets.attach(core)
    adapter = AdaptationService(
        core, workers=adapt_workers, timeout=adapt_timeout, retry_after=adapt_retry_after
    )
    admin_app = admin.make_app(
        core=core,
        backend=backend,
        api_token=api_token,
        ready_requires_notify=ready_requires_notify,
    )
    mm1_app = mm1.make_app(core, config, adapter, targets)
    runners = [
        await _start_site(mm1_app, mm1_listen, "mm1", sockets.get("mm1")),
        await _start_site(mm7.make_app(core, config), mm7_listen, "mm7", sockets.get("mm7")),
        await _start_site(admin_app, admin_listen, "admin", sockets.get("admin")),
    ]
    if worker is not None:
        log.info("worker %d serving (node %s)", worker, core.node_id)
    _tune_interpreter()
    admin_app[admin.READY_KEY]["database"] = True
    admin_app[admin.READY_KEY]["serving"] = True
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        admin_app[admin.READY_KEY]["serving"] = False  # draining: out of the balancer
        for runner in runners:
            await runner.cleanup()
        await scheduler.close()
        await adapter.close()
        await targets.close()
        if outbound is not None:
            await outbound.close()
        await backend.close()
        await core.close()
        await payloads.close()
        await engine.dispose()
        log.info("stopped")


def _tune_interpreter() -> None:
    """Interpreter settings for serving, once everything is started.

    Everything made so far (modules, apps, compiled statements: hundreds of thousands
    of objects that live as long as the process) is moved out of the cyclic garbage
    collector's reach. A full collection walked them all: pauses of up to 36 ms, ten
    times in a 25 s accept benchmark, where the p99 latency came from (bench/README.md,
    session 6; https://docs.python.org/3/library/gc.html#gc.freeze). With ``[server]
    workers`` the collector then also stops writing to the objects a worker inherited
    from the parent, so more of their pages stay shared.

    A young-generation pass every 10,000 net allocations instead of 700: the objects
    of a request mostly die by reference count before a pass sees them, so a pass
    costs about what is in flight, and 5x fewer passes took GC from 1.2% to 0.3% of
    the run and the accept rate up 5-7%.

    The GIL switch interval 1 ms instead of 5: the writer's and the payload flush's
    threads wait for the GIL after every COMMIT, fsync and syncfs, while the event
    loop holds it; the loop yields it at its next system call or at the interval.
    Paired runs: +7-8% accepted/s, and less CPU in those threads.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    sys.setswitchinterval(0.001)
