"""Nokia EAIF 3.0 inbound (``POST /eaif`` on the MM7 listener): the older VASP interface.

Some VASP platforms still submit this way (feature-matrix §1b: Mbuni, NowSMS
and VectorCore all accept it): the body is a binary m-send-req (or
m-forward-req), the envelope comes in ``X-NOKIA-MMSC-*`` headers, the VASP
authenticates with the same HTTP Basic account as for MM7, and success is
HTTP 204 with ``X-NOKIA-MMSC-Message-Id``. EAIF has no status codes of its
own, so refusals are HTTP statuses with a one-line reason.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from mmsc import metrics
from mmsc.addresses import AddressError, parse_address
from mmsc.core import SendRefused
from protocol import mms
from protocol.errors import DecodeError
from protocol.mms import MmsPdu

if TYPE_CHECKING:
    from mmsc.mm7 import Mm7Handlers

log = logging.getLogger("mmsc.eaif")

EAIF_VERSION = "3.0"
SUBMIT_TYPES = ("m-send-req", "m-forward-req")


def _refuse(status: int, reason: str, operation: str) -> web.Response:
    metrics.mm7_requests.labels(operation, f"http-{status}").inc()
    return web.Response(
        status=status, text=reason + "\n", headers={"X-NOKIA-MMSC-Version": EAIF_VERSION}
    )


async def handle(handlers: Mm7Handlers, request: web.Request) -> web.Response:
    start = time.perf_counter()
    try:
        return await _handle(handlers, request)
    finally:
        metrics.request_duration.labels("eaif", "submit").observe(time.perf_counter() - start)


async def _handle(handlers: Mm7Handlers, request: web.Request) -> web.Response:
    account = handlers.authenticate(request)
    if account is None:
        response = _refuse(401, "authentication failed", "eaif")
        response.headers["WWW-Authenticate"] = 'Basic realm="eaif"'
        return response
    body = await request.read()
    limit = handlers.size_limit(account)
    if len(body) > limit:
        return _refuse(413, f"{len(body)} octets exceed the limit of {limit}", "eaif")
    try:
        pdu = mms.decode(body)
    except DecodeError as exc:
        return _refuse(400, f"not an MMS PDU: {exc.reason}", "eaif")
    if pdu.message_type not in SUBMIT_TYPES:
        return _refuse(400, f"{pdu.message_type} is not a submission", "eaif")
    plan = handlers.core.policy.plan
    sender_text = request.headers.get("X-NOKIA-MMSC-From")
    if sender_text is None:
        if not account.shortcodes:
            return _refuse(403, "no sender and no short code configured", "eaif")
        sender_text = account.shortcodes[0]
    try:
        sender = parse_address(sender_text, plan)
    except AddressError as exc:
        return _refuse(400, f"sender {sender_text!r}: {exc}", "eaif")
    if sender.value not in account.shortcodes:
        return _refuse(403, f"sender {sender.value!r} is not one of this VASP's", "eaif")
    headers = dict(pdu.headers)
    headers["From"] = sender.to_mms()
    to_header = request.headers.get("X-NOKIA-MMSC-To")
    if to_header:
        # The envelope wins over the PDU (EAIF: recipients are given in the HTTP header).
        headers["To"] = [v.strip() for v in to_header.split(",") if v.strip()]
        headers.pop("Cc", None)
        headers.pop("Bcc", None)
    submit = MmsPdu(
        "m-send-req",
        pdu.transaction_id or "eaif",
        pdu.mms_version or "1.2",
        headers,
        pdu.content_type,
        pdu.content_type_params,
        pdu.parts,
        pdu.body,
    )
    raw = mms.encode(submit, check_mandatory=False)
    try:
        accepted = await handlers.core.accept(
            submit, raw, sender, interface="mm7", vasp=account.name
        )
    except SendRefused as exc:
        status = 400 if "unresolved" in exc.status or "corrupt" in exc.status else 500
        return _refuse(status, exc.text, "eaif")
    metrics.mm7_requests.labels("eaif", "204").inc()
    return web.Response(
        status=204,
        headers={
            "X-NOKIA-MMSC-Version": EAIF_VERSION,
            "X-NOKIA-MMSC-Message-Id": accepted.message_id,
        },
    )
