"""A VASP's MM7 endpoint on loopback: receives what the MMSC sends to a VASP.

A real aiohttp server in its own thread (like harness.SmsSink): every request
is decoded with our MM7 codec, handed to the test through a queue (with a
timeout, never a sleep), and answered with the matching response element
carrying ``status`` (1000 unless the test says otherwise).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from protocol import mm7

RESPONSES = {
    "DeliverReq": "DeliverRsp",
    "DeliveryReportReq": "DeliveryReportRsp",
    "ReadReplyReq": "ReadReplyRsp",
}


@dataclass
class Received:
    op: Any
    authorization: str | None
    content_type: str
    body: bytes


class VaspSink:
    def __init__(self, status: int = 1000) -> None:
        self.status = status
        self.requests: queue.Queue[Received] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def __enter__(self) -> VaspSink:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("VASP sink did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/vasp", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/vasp"
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        op = mm7.decode(body, content_type)
        self.requests.put(Received(op, request.headers.get("Authorization"), content_type, body))
        name = RESPONSES.get(mm7.operation_name(op))
        if name is None:
            return web.Response(status=500, text="unexpected")
        cls = getattr(mm7, name)
        response = cls(
            transaction_id=op.transaction_id,
            namespace=op.namespace,
            mm7_version=op.mm7_version,
            status_code=self.status,
            status_text=mm7.STATUS.get(self.status, ""),
            details=None,
        )
        data, ctype = mm7.encode(response, namespace=op.namespace)
        return web.Response(body=data, headers={"Content-Type": ctype})

    def next(self, timeout: float = 20) -> Received:
        return self.requests.get(timeout=timeout)
