"""The admin listener: health, readiness, Prometheus metrics and the message API."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text

if TYPE_CHECKING:
    from mmsc.core import Mmsc

log = logging.getLogger("mmsc.admin")
READY_KEY = web.AppKey("ready", dict)
REQUIRE_NOTIFY_KEY = web.AppKey("ready_requires_notify", bool)
CORE_KEY: web.AppKey[Mmsc | None] = web.AppKey("admin_core")
BACKEND_KEY: web.AppKey[object | None] = web.AppKey("admin_backend")


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every component reported ready (mmsc serve sets "serving" false when it
    starts to drain), the database answers within ``PROBE_TIMEOUT``, and, with ``[admin]
    ready_requires_notify``, the notification backend can send (an SMSC outage delays
    notifications but loses nothing, so by default it does not take a node out)."""
    state = request.app[READY_KEY]
    pending = sorted(name for name, ok in state.items() if not ok)
    core = request.app[CORE_KEY]
    if core is not None:
        try:
            await asyncio.wait_for(_probe(core), PROBE_TIMEOUT)
        except Exception as exc:
            pending.append(f"database ({type(exc).__name__})")
    backend = request.app[BACKEND_KEY]
    if request.app[REQUIRE_NOTIFY_KEY] and not getattr(backend, "ready", True):
        pending.append("notify")
    if pending:
        return web.Response(status=503, text="not ready: " + ", ".join(pending) + "\n")
    return web.Response(text="ready\n")


PROBE_TIMEOUT = 2.0  # seconds the readiness probe waits for the database


async def _probe(core: Mmsc) -> None:
    async with core.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def message(request: web.Request) -> web.Response:
    """GET /api/messages/{id}: the message, its recipients and its event history."""
    core = request.app[CORE_KEY]
    if core is None:
        return web.json_response({"error": "no message store"}, status=503)
    trace = await core.trace(request.match_info["id"])
    if trace is None:
        return web.json_response({"error": "no such message"}, status=404)
    return web.json_response(trace)


async def subscriber(request: web.Request) -> web.Response:
    """GET /api/subscribers/{address}: the handset facts learned for an address."""
    core = request.app[CORE_KEY]
    if core is None:
        return web.json_response({"error": "no message store"}, status=503)
    try:
        facts = await core.subscriber(request.match_info["address"])
    except ValueError as exc:  # AddressError
        return web.json_response({"error": str(exc)}, status=400)
    if facts is None:
        return web.json_response({"error": "no such subscriber"}, status=404)
    return web.json_response(facts)


async def capabilities(request: web.Request) -> web.Response:
    """PUT/DELETE /api/subscribers/{address}/capabilities: an operator's adaptation
    override for one subscriber (keys as in [[adapt.class]]), first in the resolution
    order (issue #6)."""
    from mmsc.config import ConfigError
    from mmsc.devices import capabilities_from_table

    core = request.app[CORE_KEY]
    if core is None:
        return web.json_response({"error": "no message store"}, status=503)
    table: dict[str, object] | None = None
    if request.method == "PUT":
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        try:
            capabilities_from_table(body)
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        table = body
    try:
        address = await core.set_capabilities(request.match_info["address"], table)
    except ValueError as exc:  # AddressError
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"address": address, "capabilities": table})


async def notify_status(request: web.Request) -> web.Response:
    """GET /api/notify: the notification backend and, for SMPP, every bind's state."""
    backend = request.app[BACKEND_KEY]
    if backend is None:
        return web.json_response({"error": "no notification backend"}, status=503)
    status = getattr(backend, "status", None)
    body = status() if callable(status) else {"backend": getattr(backend, "name", "?")}
    return web.json_response(body)


def api_guard(token: str | None) -> Callable[..., Any]:
    """Middleware: with ``[admin] api_token`` set, ``/api/`` answers only requests that
    carry ``Authorization: Bearer <token>`` (the message API shows who sent what to
    whom, and one of its calls changes a subscriber's capabilities). Health, readiness
    and metrics stay open for load balancers and Prometheus."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if token is not None and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token.encode()
            ):
                return web.json_response(
                    {"error": "unauthorized"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="mmsc-admin"'},
                )
        response: web.StreamResponse = await handler(request)
        return response

    return guard


def make_app(
    registry: CollectorRegistry = REGISTRY,
    core: Mmsc | None = None,
    backend: object = None,
    api_token: str | None = None,
    ready_requires_notify: bool = False,
) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and registry is REGISTRY:
            # Several workers (mmsc/workers.py): the sum of every worker's metric files.
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            body = generate_latest(merged)
        else:
            body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(middlewares=[api_guard(api_token)])
    app[READY_KEY] = {}
    app[REQUIRE_NOTIFY_KEY] = ready_requires_notify
    app[CORE_KEY] = core
    app[BACKEND_KEY] = backend
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/messages/{id}", message)
    app.router.add_get("/api/subscribers/{address}", subscriber)
    app.router.add_put("/api/subscribers/{address}/capabilities", capabilities)
    app.router.add_delete("/api/subscribers/{address}/capabilities", capabilities)
    app.router.add_get("/api/notify", notify_status)
    return app
