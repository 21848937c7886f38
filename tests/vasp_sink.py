"""A VASP's MM7 endpoint on loopback: receives what the MMSC sends to a VASP.

A real aiohttp server in its own thread (like harness.SmsSink): every request
is decoded with our MM7 codec, handed to the test through a queue (with a
timeout, never a sleep), and answered with the matching response element
carrying ``status`` (1000 unless the test says otherwise).
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from protocol import mm7
from tests.harness import LoopbackServer

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


class VaspSink(LoopbackServer):
    def __init__(self, status: int = 1000) -> None:
        super().__init__()
        self.status = status
        self.requests: queue.Queue[Received] = queue.Queue()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/vasp", self._handle)

    @property
    def url(self) -> str:
        return f"{self.base}/vasp"

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
