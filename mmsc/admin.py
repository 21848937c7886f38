"""The admin listener: health, readiness and Prometheus metrics (DESIGN.md §3)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

READY_KEY = web.AppKey("ready", dict)


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every component registered in the app has reported ready."""
    state = request.app[READY_KEY]
    pending = sorted(name for name, ok in state.items() if not ok)
    if pending:
        return web.Response(status=503, text="not ready: " + ", ".join(pending) + "\n")
    return web.Response(text="ready\n")


def make_app(registry: CollectorRegistry = REGISTRY) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app[READY_KEY] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
