"""MM1 over HTTP: what handsets POST to the MMSC and the GET of a notified message.

Errors are answered in the protocol (an m-send-conf or m-retrieve-conf with an
error status, HTTP 200) because handsets show those to the user; an HTTP 4xx
only goes back when not even a transaction id can be read (OMA-MMS-ENC §6,
feature-matrix §4.14).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from mmsc import config as settings
from mmsc import metrics
from mmsc.adapt.service import AdaptationService
from mmsc.adapt.targets import TargetResolver
from mmsc.addresses import Address, resolve_sender
from mmsc.core import MMS_VERSIONS, UNFORWARDABLE, Mmsc, SendRefused
from mmsc.devices import capabilities_from_table
from protocol import mms
from protocol.errors import DecodeError, EncodeError
from protocol.mms import MmsPdu
from protocol.wsp import read_text

log = logging.getLogger("mmsc.mm1")

MMS_TYPE = "application/vnd.wap.mms-message"
TOKEN_LENGTH = 24  # mmsc.ids.new_id()
TOKEN_RE = re.compile(r"[a-z2-7]{24}")
CORE_KEY = web.AppKey("core", Mmsc)
ADAPTABLE_CACHE_SIZE = 100_000  # payload keys whose adaptation permission is remembered

# Requests of features this MMSC does not offer, and the answer each gets.
_DENIED = "Error-permanent-service-denied"
UNSUPPORTED: dict[str, tuple[str, str, str]] = {
    "m-mbox-store-req": ("m-mbox-store-conf", "X-Mms-Store-Status", _DENIED),
    "m-mbox-view-req": ("m-mbox-view-conf", "X-Mms-Response-Status", _DENIED),
    "m-mbox-upload-req": ("m-mbox-upload-conf", "X-Mms-Response-Status", _DENIED),
    "m-mbox-delete-req": ("m-mbox-delete-conf", "X-Mms-Response-Status", _DENIED),
    "m-delete-req": ("m-delete-conf", "X-Mms-Response-Status", _DENIED),
    "m-cancel-req": ("m-cancel-conf", "X-Mms-Cancel-Status", "Cancel Request corrupted"),
}


def _pdu_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type=MMS_TYPE)


def _supported(version: str | None) -> str:
    """``version`` if we encode it, else 1.2 (what handsets in the field all read)."""
    return version if version in MMS_VERSIONS else "1.2"


def _answer_version(pdu: MmsPdu) -> str:
    """Answer in the client's version (never above 1.3, never a version it lacks)."""
    return _supported(pdu.mms_version)


def retrieve_version(stored: str | None, handset: str | None) -> str:
    """The version of an m-retrieve-conf: the stored message's, but never above the
    version of the last PDU the recipient's handset sent us, and 1.2 when it sent none.

    A message keeps its originator's version (an MM7 submit with a ContentClass is
    stored as 1.3); encoded for the recipient's version instead, it leaves out the
    fields that version does not define (OMA-MMS-ENC §7; feature-matrix §4.10: do not
    send 1.3-only fields to older clients, and track each handset's version).
    """
    return min(_supported(stored), _supported(handset), key=MMS_VERSIONS.index)


def send_conf(
    tid: str,
    version: str,
    status: str,
    *,
    message_id: str | None = None,
    text: str | None = None,
    message_type: str = "m-send-conf",
) -> bytes:
    """An m-send-conf (or m-forward-conf: the same three fields, OMA-MMS-ENC §6.1, §6.5)."""
    headers: dict[str, Any] = {"X-Mms-Response-Status": status}
    if text:
        headers["X-Mms-Response-Text"] = text
    if message_id:
        headers["Message-ID"] = message_id
    return mms.encode(MmsPdu(message_type, tid, version, headers))


def retrieve_error(tid: str | None, status: str, text: str) -> bytes:
    """An m-retrieve-conf that carries only an error (still with Date and Content-Type)."""
    pdu = MmsPdu(
        "m-retrieve-conf",
        tid,
        "1.2",
        {"Date": int(time.time()), "X-Mms-Retrieve-Status": status, "X-Mms-Retrieve-Text": text},
        "text/plain",
        {"charset": "utf-8"},
        None,
        text.encode(),
    )
    return mms.encode(pdu)


def _salvage_tid(data: bytes) -> tuple[str, str] | None:
    """The transaction id and MMS version of a PDU we cannot decode, if they sit where
    OMA-MMS-ENC §7 puts them (type, transaction id, version first). The version is
    "1.0" when it cannot be read."""
    if len(data) > 3 and data[0] == 0x8C and data[2] == 0x98:
        try:
            tid, end = read_text(data, 3, len(data))
        except DecodeError:
            return None
        version = "1.0"
        if end + 1 < len(data) and data[end] == 0x8D and data[end + 1] & 0x80:
            major, minor = (data[end + 1] >> 4) & 0x07, data[end + 1] & 0x0F
            if major == 1 and 1 <= minor <= 3:
                version = f"1.{minor}"
        return tid, version
    return None


def _corrupt_status(version: str) -> str:
    """The "message format corrupt" status in the words a client of ``version`` knows:
    the transient and permanent ranges of X-Mms-Response-Status (0xC0, 0xE0) came with
    OMA-MMS-ENC 1.1; a 1.0 client knows only 0x83."""
    if version == "1.0":
        return "Error-message-format-corrupt"
    return "Error-permanent-message-format-corrupt"


PROFILE_HEADERS = ("x-wap-profile", "profile", "wap-profile", "19-profile")


def device_facts(request: web.Request) -> tuple[str | None, str | None]:
    """User-Agent and UAProf URL (feature-matrix §4.9: four header names, quoted or not)."""
    profile = None
    for name in PROFILE_HEADERS:
        value = request.headers.get(name)
        if value:
            profile = value.split(",")[0].strip().strip('"') or None
            break
    return request.headers.get("User-Agent"), profile


def token_from_path(tail: str) -> str | None:
    """The recipient token at the start of the path tail; carrier configs append the
    transaction id (which is the token again) or more path after it."""
    match = TOKEN_RE.match(tail.lower())
    return match.group(0) if match else None


@dataclass(frozen=True)
class Mm1Settings:
    """The ``[mm1]`` keys the handlers read; ``mmsc serve`` reads them before it starts
    anything, so a bad value stops it with the key's name."""

    max_size: int
    msisdn_headers: list[str]
    trust_pdu_sender: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Mm1Settings:
        mm1 = settings.table(config, "mm1")
        return cls(
            max_size=settings.integer(mm1, "mm1", "max_message_size", 1048576, low=1),
            msisdn_headers=settings.strings(mm1, "mm1", "msisdn_headers", ["X-MSISDN"]),
            # Lab mode only when it is really asked for: any handset could then send
            # as anyone (a "false" string must not turn it on).
            trust_pdu_sender=settings.boolean(mm1, "mm1", "trust_pdu_sender", False),
        )


class Mm1Handlers:
    def __init__(
        self,
        core: Mmsc,
        config: dict[str, Any],
        adapter: AdaptationService | None = None,
        targets: TargetResolver | None = None,
    ) -> None:
        self.core = core
        self.adapter = adapter
        self.targets = targets
        own = Mm1Settings.from_config(config)
        self.max_size = own.max_size
        self.msisdn_headers = own.msisdn_headers
        self.trust_pdu_sender = own.trust_pdu_sender
        self._adaptable: dict[str, bool] = {}  # payload key -> whether it may be adapted

    async def _may_adapt(self, row: Any) -> bool:
        """Whether the sender lets us adapt its message: not when the stored m-send-req
        says X-Mms-Adaptation-Allowed: No (OMA-MMS-ENC 1.3 §6.1.1; an MM7 Content with
        allowAdaptations="false", TS 23.140 §8.7.1) or X-Mms-DRM-Content: Yes (protected
        content reaches the handset as sent). Read once per payload: a key never
        changes its content (a replace writes a new key). KeyError: the body is gone."""
        key = str(row.m_payload_key)
        allowed = self._adaptable.get(key)
        if allowed is None:
            headers = mms.decode(await self.core.payloads.get(key)).headers
            allowed = (
                headers.get("X-Mms-Adaptation-Allowed") != "No"
                and headers.get("X-Mms-DRM-Content") != "Yes"
            )
            if len(self._adaptable) >= ADAPTABLE_CACHE_SIZE:
                self._adaptable.clear()
            self._adaptable[key] = allowed
        return allowed

    async def post(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        operation = "unknown"
        try:
            data = await request.read()
            try:
                pdu = mms.decode(data)
            except DecodeError as exc:
                operation = "corrupt"
                salvaged = _salvage_tid(data)
                log.info("undecodable PDU from %s: %s", request.remote, exc)
                if salvaged is None:
                    return web.Response(status=400, text=f"not an MMS PDU: {exc}\n")
                tid, version = salvaged
                return _pdu_response(
                    send_conf(tid, version, _corrupt_status(version), text=exc.reason)
                )
            operation = pdu.message_type
            return await self.dispatch(request, pdu, data)
        finally:
            metrics.request_duration.labels("mm1", operation).observe(time.perf_counter() - start)

    async def dispatch(self, request: web.Request, pdu: MmsPdu, data: bytes) -> web.StreamResponse:
        mtype = pdu.message_type
        if mtype == "m-send-req":
            return await self.send_req(request, pdu, data)
        if mtype == "m-notifyresp-ind":
            return await self.notifyresp(pdu)
        if mtype == "m-acknowledge-ind":
            return await self.acknowledge(pdu)
        if mtype == "m-read-rec-ind":
            return await self.read_rec(request, pdu)
        if mtype == "m-forward-req":
            return await self.forward_req(request, pdu)
        if pdu.transaction_id is None:
            return web.Response(status=400, text=f"{mtype} is not something a client sends\n")
        conf = UNSUPPORTED.get(mtype)
        version = _answer_version(pdu)
        if conf is not None:
            ctype, field, value = conf
            try:
                body = mms.encode(
                    MmsPdu(ctype, pdu.transaction_id, max(version, "1.2"), {field: value})
                )
            except EncodeError:
                body = send_conf(pdu.transaction_id, version, "Error-unsupported-message")
            return _pdu_response(body)
        return _pdu_response(send_conf(pdu.transaction_id, version, "Error-unsupported-message"))

    async def send_req(self, request: web.Request, pdu: MmsPdu, data: bytes) -> web.Response:
        tid = pdu.transaction_id or ""
        version = _answer_version(pdu)
        if len(data) > self.max_size:
            return _pdu_response(
                send_conf(
                    tid,
                    version,
                    "Error-permanent-content-not-accepted",
                    text=f"message larger than {self.max_size} octets",
                )
            )
        sender = self._sender(request, pdu)
        if sender is None:
            return _pdu_response(
                send_conf(
                    tid,
                    version,
                    "Error-permanent-sending-address-unresolved",
                    text="sender unknown",
                )
            )
        if self.targets is not None:
            self.targets.prefetch(request.headers, str(sender))  # profile, for its own fetches
        try:
            accepted = await self.core.accept(pdu, data, sender, device=device_facts(request))
        except SendRefused as refused:
            return _pdu_response(send_conf(tid, version, refused.status, text=refused.text))
        except Exception:
            log.exception("could not store m-send-req %s", tid)
            return _pdu_response(
                send_conf(tid, version, "Error-transient-failure", text="try again later")
            )
        return _pdu_response(send_conf(tid, version, "Ok", message_id=accepted.message_id))

    async def _learn(self, request: web.Request, address: str, version: str | None) -> None:
        """Remember the handset's User-Agent/UAProf; a failure never reaches the client."""
        if self.targets is not None:
            self.targets.prefetch(request.headers, address)  # cached before it fetches
        user_agent, profile = device_facts(request)
        if not (user_agent or profile or version):
            return
        try:
            await self.core.remember_device(address, user_agent, profile, version)
        except Exception as exc:  # best effort: a lost race between nodes is harmless
            log.debug("could not record device facts: %s", exc)

    async def forward_req(self, request: web.Request, pdu: MmsPdu) -> web.Response:
        tid = pdu.transaction_id or ""
        version = _answer_version(pdu)

        def conf(status: str, message_id: str | None = None, text: str | None = None) -> bytes:
            return send_conf(
                tid,
                max(version, "1.1"),
                status,
                message_id=message_id,
                text=text,
                message_type="m-forward-conf",
            )

        sender = self._sender(request, pdu)
        if sender is None:
            return _pdu_response(conf("Error-permanent-sending-address-unresolved"))
        location = str(pdu.headers.get("X-Mms-Content-Location", ""))
        token = token_from_path(location.rsplit("/", 1)[-1])
        try:
            accepted = await self.core.forward(sender, pdu, token)
        except SendRefused as refused:
            return _pdu_response(conf(refused.status, text=refused.text))
        except Exception:  # storage trouble: the handset may retry later
            log.exception("could not forward %s", tid)
            return _pdu_response(conf("Error-transient-failure", text="try again later"))
        return _pdu_response(conf("Ok", accepted.message_id))

    def _sender(self, request: web.Request, pdu: MmsPdu) -> Address | None:
        """Who sent this request: the trusted header, or the PDU's From in lab mode."""
        return resolve_sender(
            request.headers,
            pdu.headers.get("From"),
            msisdn_headers=self.msisdn_headers,
            trust_pdu_sender=self.trust_pdu_sender,
            plan=self.core.policy.plan,
        )

    async def _recipient_for(self, pdu: MmsPdu) -> Any:
        token = token_from_path(pdu.transaction_id or "")
        return None if token is None else await self.core.recipient(token)

    async def notifyresp(self, pdu: MmsPdu) -> web.Response:
        row = await self._recipient_for(pdu)
        if row is None:
            log.info("notifyresp for unknown transaction %r", pdu.transaction_id)
            return web.Response(status=204)
        status = str(pdu.headers.get("X-Mms-Status", ""))
        allowed = pdu.headers.get("X-Mms-Report-Allowed", "Yes") != "No"
        await self.core.notify_response(row, status, allowed)
        return web.Response(status=204)

    async def acknowledge(self, pdu: MmsPdu) -> web.Response:
        row = await self._recipient_for(pdu)
        if row is not None:
            allowed = pdu.headers.get("X-Mms-Report-Allowed", "Yes") != "No"
            await self.core.acknowledge(row, allowed)
        return web.Response(status=204)

    async def read_rec(self, request: web.Request, pdu: MmsPdu) -> web.Response:
        reader = self._sender(request, pdu)
        if reader is not None:
            await self.core.read_report(reader, pdu)
        return web.Response(status=204)

    async def _conf(self, request: web.Request, row: Any) -> tuple[bytes, str]:
        """The m-retrieve-conf for ``row``'s recipient (adapted when allowed) and its MMS
        version; KeyError when its body is gone."""
        payload_key = None
        if (
            self.adapter is not None
            and self.targets is not None
            and self.targets.enabled
            and await self._may_adapt(row)
        ):
            override = await self.core.capabilities_override(row.address)
            variant, target = await self.targets.resolve(
                request.headers,
                override=capabilities_from_table(override) if override else None,
            )
            payload_key = await self.adapter.payload_key(row, target, variant)
        version = retrieve_version(row.m_mms_version, row.s_mms_version)
        return await self.core.retrieve_conf(row, version, payload_key=payload_key), version

    async def get(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        try:
            token = token_from_path(request.match_info.get("tail", ""))
            row = await self.core.recipient(token) if token else None
            if (
                row is None
                or row.state in UNFORWARDABLE  # expired, cancelled, rejected: not theirs
                or row.m_expires_at < time.time()
            ):
                return _pdu_response(
                    retrieve_error(token, "Error-permanent-message-not-found", "message not found")
                )
            try:
                try:
                    body, version = await self._conf(request, row)
                except KeyError:  # the body is gone: deleted after expiry, or replaced
                    fresh = await self.core.recipient(token) if token else None
                    if fresh is None or fresh.m_payload_key == row.m_payload_key:
                        raise
                    # A VASP's ReplaceReq committed while this fetch was under way (its
                    # old body is deleted at once): serve the new content.
                    row = fresh
                    body, version = await self._conf(request, row)
            except KeyError:
                return _pdu_response(
                    retrieve_error(token, "Error-permanent-message-not-found", "message not found")
                )
            except Exception:
                log.exception("retrieval of %s failed", row.message_id)
                return _pdu_response(
                    retrieve_error(token, "Error-transient-failure", "try again later")
                )
            try:  # before the answer: a handset that has its message is not pushed it again
                await self.core.fetched(row, version)
            except Exception:  # it still gets its message; at worst it is notified again
                log.exception("could not record the fetch of %s", row.message_id)
            await self._learn(request, row.address, None)
            return _pdu_response(body)
        finally:
            metrics.request_duration.labels("mm1", "retrieve").observe(time.perf_counter() - start)


def make_app(
    core: Mmsc,
    config: dict[str, Any],
    adapter: AdaptationService | None = None,
    targets: TargetResolver | None = None,
) -> web.Application:
    handlers = Mm1Handlers(core, config, adapter, targets)
    # Room for the largest accepted message plus headers; bigger bodies are cut off by
    # aiohttp with 413 before we could read a transaction id.
    app = web.Application(client_max_size=2 * handlers.max_size + 65536)
    app[CORE_KEY] = core
    for base in route_bases(core.policy.public_url):
        app.router.add_post(base or "/", handlers.post)
        if base:
            app.router.add_post(base + "/", handlers.post)
        app.router.add_get(base + "/{tail:.*}", handlers.get)
        # Some carrier configs POST m-notifyresp-ind / m-acknowledge-ind to the fetch URL.
        app.router.add_post(base + "/{tail:.*}", handlers.post)
    return app


def route_bases(public_url: str) -> list[str]:
    """The paths MM1 answers under: ``/mms`` (DESIGN.md §3), and the path of
    ``[mm1] public_url`` when it is another one, because the Content-Location of every
    notification is ``public_url/<token>`` and a handset fetches exactly that (a
    reverse proxy that maps its own path to ``/mms`` keeps working too)."""
    path = urlsplit(public_url).path.rstrip("/")
    return ["/mms"] if path == "/mms" else ["/mms", path]
