"""`mmsc serve`: run every configured listener in one process until a signal stops it.

For now only the admin listener exists (health, readiness, metrics); the MM1
and MM7 interfaces attach here as they land.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web

from mmsc import admin
from mmsc.config import Listen

log = logging.getLogger("mmsc.server")


async def run(config: dict[str, Any], stop: asyncio.Event | None = None) -> None:
    """Start the listeners, report where they listen, and wait for ``stop`` or a signal."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread (tests run the server in one): skip there.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)

    admin_listen = Listen.parse(config["admin"]["listen"], "admin.listen")
    app = admin.make_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, admin_listen.host, admin_listen.port, reuse_address=True)
    await site.start()
    for sock in site._server.sockets if site._server else []:
        host, port = sock.getsockname()[:2]
        log.info("admin listening on %s:%d", host, port)
        print(f"mmsc: admin listening on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
