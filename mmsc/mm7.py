"""MM7 over HTTP: what value-added service providers POST to ``/mm7`` (3GPP TS 23.140 §8).

Answers:
- a request we understood gets its response element (SubmitRsp, CancelRsp,
  ReplaceRsp) with a TS 23.140 status, HTTP 200, even when the status is an
  error (an unknown recipient, a message already fetched): the VASP asked a
  proper question and gets a proper answer;
- a request we could not take at all (no or wrong credentials, XML or MIME we
  cannot read, an unsupported operation) gets a SOAP 1.1 Fault, HTTP 500
  (401 for credentials, with WWW-Authenticate), whose detail is an RSErrorRsp
  carrying the status (§8.7.13; SOAP 1.1 §6.2 for the 500).
Answers use the namespace and MM7Version of the caller's request (a request that
names no namespace: its SOAPAction's, else the account's configured one, else the
release its MM7Version says) and the account's prefix style, Faults included.
Nothing is stored unless SubmitRsp says 1000 or 1100.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mmsc import config as settings
from mmsc import eaif, metrics
from mmsc.addresses import Address, AddressError, parse_address
from mmsc.core import Mmsc, SendRefused
from mmsc.mm7_config import DEFAULT_NAMESPACE, VaspAccount, load_vasps
from mmsc.mm7_convert import (
    delivery_time,
    encode_submit,
    mms_address,
    replaced_pdu,
    submit_to_pdu,
)
from mmsc.mm7_ops import cancel, replace
from protocol import mm7

log = logging.getLogger("mmsc.mm7")

CORE_KEY = web.AppKey("mm7_core", Mmsc)


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """A request answered with a status instead of being carried out."""

    status: int
    text: str


def status_text(code: int) -> str:
    return mm7.STATUS.get(code, "Error")


def supported_namespace(namespace: str) -> bool:
    """A 3GPP MM7 schema of release 5 or later (TS 23.140 defines MM7 from REL-5; a
    later minor version is read with its release's rules). Foreign URIs and REL-4
    get 4002 Unsupported version."""
    match = re.fullmatch(r"REL-(\d{1,2})-MM7-\d{1,2}-\d{1,2}", namespace)
    return match is not None and int(match.group(1)) >= 5


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@dataclass(frozen=True)
class Mm7Limits:
    """The size limits of ``/mm7``; ``mmsc serve`` reads them before it starts anything."""

    max_size: int  # of a message, as [mm1] max_message_size
    max_body: int  # of the HTTP body: the content plus SOAP and MIME around it

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Mm7Limits:
        mm1, mm7 = settings.table(config, "mm1"), settings.table(config, "mm7")
        max_size = settings.integer(mm1, "mm1", "max_message_size", 1048576, low=1)
        max_body = settings.integer(mm7, "mm7", "max_body_size", 2 * max_size + 65536, low=1)
        return cls(max_size, max_body)


class Mm7Handlers:
    def __init__(self, core: Mmsc, config: dict[str, Any]) -> None:
        self.core = core
        self.vasps = load_vasps(config)
        limits = Mm7Limits.from_config(config)
        self.max_size = limits.max_size
        self.max_body = limits.max_body

    # ------------------------------------------------------------------ HTTP

    def size_limit(self, account: VaspAccount) -> int:
        """The largest message this VASP may submit: its own cap, never above MM1's."""
        return min(self.max_size, account.max_message_size or self.max_size)

    def authenticate(self, request: web.Request) -> VaspAccount | None:
        credentials = _basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            return None
        account = self.vasps.get(credentials[0])
        if account is None or not _same(account.password, credentials[1]):
            return None
        return account if account.allows(request.remote) else None

    async def post(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        operation = "unknown"
        status = 0
        try:
            account = self.authenticate(request)
            if account is None:
                status = 4001
                log.warning("MM7 request from %s refused: bad credentials", request.remote)
                return self.fault(
                    4001,
                    "authentication failed",
                    DEFAULT_NAMESPACE,
                    None,
                    http_status=401,
                    headers={"WWW-Authenticate": 'Basic realm="mm7"'},
                )
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                status = 2004
                return self.fault(
                    2004,
                    f"request body over {self.max_body} octets",
                    account.namespace,
                    None,
                    account=account,
                    http_status=413,
                )
            try:
                op = mm7.decode(
                    body,
                    request.headers.get("Content-Type", "text/xml"),
                    max_size=self.max_body,
                    soap_action=request.headers.get("SOAPAction"),
                    default_namespace=account.namespace,
                )
            except mm7.Mm7DecodeError as exc:
                status = exc.status_code
                log.info("MM7 from %s: undecodable request: %s", account.name, exc)
                return self.fault(
                    exc.status_code,
                    exc.reason,
                    exc.namespace or account.namespace,
                    exc.transaction_id,
                    account=account,
                    mm7_version=exc.mm7_version,
                )
            operation = mm7.operation_name(op)
            if not supported_namespace(op.namespace):
                status = 4002
                return self.fault(
                    4002,
                    f"namespace {op.namespace!r} is not an MM7 schema we speak (REL-5 and later)",
                    op.namespace,
                    op.transaction_id,
                    account=account,
                    mm7_version=op.mm7_version,
                )
            try:
                response, status = await self.dispatch(account, op)
            except Exception:
                # Storage trouble (a database or disk error): a Server fault the VASP
                # may retry (TS 23.140 §8.7 status codes: 3000 Server Error), never a bare HTTP 500.
                log.exception("MM7 %s from %s could not be handled", operation, account.name)
                status = 3000
                return self.fault(
                    3000,
                    "the MMSC could not store the request; try again later",
                    op.namespace,
                    op.transaction_id,
                    account=account,
                    mm7_version=op.mm7_version,
                )
            return response
        finally:
            metrics.mm7_requests.labels(operation, str(status)).inc()
            metrics.request_duration.labels("mm7", operation).observe(time.perf_counter() - start)

    async def dispatch(self, account: VaspAccount, op: Any) -> tuple[web.Response, int]:
        if isinstance(op, mm7.SubmitReq):
            rsp = await self.submit(account, op)
        elif isinstance(op, mm7.CancelReq):
            rsp = await self.cancel(account, op)
        elif isinstance(op, mm7.ReplaceReq):
            rsp = await self.replace(account, op)
        else:
            code = 4003  # Unsupported operation: responses and MMSC-to-VASP requests
            name = mm7.operation_name(op)
            return self.fault(
                code,
                f"{name} is not a request to an MMSC",
                op.namespace,
                op.transaction_id,
                account=account,
                mm7_version=op.mm7_version,
            ), code
        body, content_type = mm7.encode(
            rsp,
            namespace=op.namespace,
            prefix=account.prefix,
            unqualified_children=account.unqualified_children,
        )
        return web.Response(body=body, headers={"Content-Type": content_type}), rsp.status_code

    def fault(
        self,
        code: int,
        text: str,
        namespace: str,
        transaction_id: str | None,
        *,
        account: VaspAccount | None = None,
        mm7_version: str | None = None,
        http_status: int = 500,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """A SOAP Fault whose detail is an RSErrorRsp with ``code`` (TS 23.140 §8.7.13),
        written the way the caller's software reads it: its namespace, its MM7Version
        (``mm7_version``, when it could be read) and its account's prefix style."""
        detail = mm7.RSErrorRsp(
            transaction_id=transaction_id or "",
            namespace=namespace,
            mm7_version=mm7_version or "",
            status_code=code,
            status_text=status_text(code),
            details=text,
        )
        fault = mm7.Fault(
            transaction_id=transaction_id or "",
            namespace=namespace,
            mm7_version=mm7_version or "",
            faultcode="Server" if 3000 <= code < 4000 else "Client",
            faultstring=text,
            detail=detail,
        )
        body, content_type = mm7.encode(
            fault,
            namespace=namespace,
            prefix=account.prefix if account is not None else "mm7",
            unqualified_children=account.unqualified_children if account is not None else False,
        )
        return web.Response(
            status=http_status, body=body, headers={"Content-Type": content_type, **(headers or {})}
        )

    # ------------------------------------------------------------------ operations

    def _check_identity(self, account: VaspAccount, op: Any) -> None:
        vasp_id = getattr(op, "vasp_id", None)
        if vasp_id and vasp_id != account.vasp_id:
            raise Refusal(4001, f"VASPID {vasp_id!r} is not this account's")

    def _sender(self, account: VaspAccount, address: mm7.Address | None) -> Address:
        """The VASP's own short code (or number) the message comes from (DESIGN §4: nothing
        is trusted that the network did not vouch for)."""
        if address is None:
            if not account.shortcodes:
                raise Refusal(2002, "no SenderAddress and no short code configured for this VASP")
            value = account.shortcodes[0]
        else:
            value = address.value
            if value not in account.shortcodes:
                raise Refusal(2001, f"sender {value!r} is not one of this VASP's short codes")
        try:
            return parse_address(value, self.core.policy.plan)
        except AddressError as exc:
            raise Refusal(2002, f"sender {value!r}: {exc}") from None

    @staticmethod
    def _check_content(op: Any) -> None:
        """A ``<Content href>`` that names no attachment (a bare SOAP envelope, as in
        documentation samples) would make an empty MMS: 2004, nothing stored
        (TS 23.140 §8.7.1 / §8.7.6: Content is the message's content)."""
        if op.content is None and op.content_href is not None:
            raise Refusal(2004, f"content href {op.content_href!r} names no attachment")

    def _response(self, cls: Any, op: Any, code: int, details: str = "", **extra: Any) -> Any:
        return cls(
            transaction_id=op.transaction_id,
            namespace=op.namespace,
            mm7_version=op.mm7_version,
            status_code=code,
            status_text=status_text(code),
            details=details or None,
            **extra,
        )

    async def submit(self, account: VaspAccount, op: Any) -> Any:
        try:
            self._check_identity(account, op)
            sender = self._sender(account, op.sender_address)
            if not (op.to or op.cc or op.bcc):
                raise Refusal(4004, "no recipient")
            self._check_content(op)
            pdu = submit_to_pdu(op, sender.to_mms())
            raw = encode_submit(pdu)
            limit = self.size_limit(account)
            if len(raw) > limit:
                raise Refusal(2004, f"{len(raw)} octets exceed the limit of {limit}")
            unroutable = self._unroutable(op)
            try:
                accepted = await self.core.accept(
                    pdu, raw, sender, interface="mm7", vasp=account.name
                )
            except SendRefused as exc:
                code = 2002 if "unresolved" in exc.status else 2007
                raise Refusal(code, exc.text) from None
        except Refusal as refusal:
            log.info("SubmitReq from %s refused: %s %s", account.name, refusal.status, refusal.text)
            return self._response(mm7.SubmitRsp, op, refusal.status, refusal.text, message_id=None)
        if unroutable:
            detail = "not deliverable: " + ", ".join(unroutable)
            return self._response(mm7.SubmitRsp, op, 1100, detail, message_id=accepted.message_id)
        return self._response(mm7.SubmitRsp, op, 1000, message_id=accepted.message_id)

    def _unroutable(self, op: Any) -> list[str]:
        out = []
        for address in [*op.to, *op.cc, *op.bcc]:
            text = mms_address(address)
            try:
                parsed = parse_address(text, self.core.policy.plan)
            except AddressError:
                out.append(address.value)
                continue
            if parsed.kind not in ("msisdn", "shortcode"):
                out.append(address.value)
        return out

    async def cancel(self, account: VaspAccount, op: Any) -> Any:
        try:
            self._check_identity(account, op)
        except Refusal as refusal:
            return self._response(mm7.CancelRsp, op, refusal.status, refusal.text)
        result = await cancel(self.core, op.message_id, account.name)
        return self._response(
            mm7.CancelRsp, op, result.status, result.detail if result.status != 1000 else ""
        )

    async def replace(self, account: VaspAccount, op: Any) -> Any:
        try:
            self._check_identity(account, op)
            self._check_content(op)
        except Refusal as refusal:
            return self._response(mm7.ReplaceRsp, op, refusal.status, refusal.text)
        limit = self.size_limit(account)
        result = await replace(
            self.core,
            op.message_id,
            account.name,
            lambda stored: replaced_pdu(stored, op),
            limit,
            earliest_delivery_at=delivery_time(op.earliest_delivery_time, time.time()),
        )
        detail = result.detail if result.status != 1000 else ""
        return self._response(mm7.ReplaceRsp, op, result.status, detail)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def make_app(core: Mmsc, config: dict[str, Any]) -> web.Application:
    handlers = Mm7Handlers(core, config)
    app = web.Application(client_max_size=handlers.max_body)
    app[CORE_KEY] = core
    app.router.add_post("/mm7", handlers.post)
    app.router.add_post("/eaif", lambda request: eaif.handle(handlers, request))
    app.router.add_post("/mm7/{tail:.*}", handlers.post)
    return app
