"""Sending MM7 requests over HTTP: the VASP side for `mmsc mm7 submit`, and our own
outbound requests to VASPs (DeliverReq, DeliveryReportReq, ReadReplyReq).

One function does the exchange so both directions encode, authenticate and
read answers the same way: a SOAP Fault comes back as the Fault it is (its
RSErrorRsp/VASPErrorRsp status inside), anything unreadable as an
Mm7DecodeError, and network trouble as the aiohttp/OS error it is.
"""

from __future__ import annotations

import base64
import dataclasses
import mimetypes
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from protocol import mm7
from protocol.wsp import Part

DEFAULT_TIMEOUT = 30.0


async def exchange(
    session: aiohttp.ClientSession,
    url: str,
    op: Any,
    *,
    username: str | None = None,
    password: str | None = None,
    namespace: str | None = None,
    prefix: str | None = "mm7",
    timeout: float = DEFAULT_TIMEOUT,
    unqualified_children: bool = False,
    boundary: str | None = None,
) -> Any:
    """POST one MM7 request and decode the answer (a response element or a Fault)."""
    body, content_type = mm7.encode(
        op,
        namespace=namespace,
        prefix=prefix,
        boundary=boundary,
        unqualified_children=unqualified_children,
    )
    headers = {"Content-Type": content_type, "SOAPAction": '""'}
    if username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    async with session.post(
        url,
        data=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
        allow_redirects=False,
    ) as response:
        data = await response.read()
        answer_type = response.headers.get("Content-Type", "text/xml")
    return mm7.decode(data, answer_type)


def text_and_files_content(text: str | None, files: list[Path]) -> mm7.Content | None:
    """A multipart/mixed MIME entity with a text part and one part per file."""
    parts: list[Part] = []
    if text:
        parts.append(
            Part("text/plain", {"charset": "utf-8"}, {"Content-ID": "<text>"}, text.encode())
        )
    for index, path in enumerate(files):
        guessed, _ = mimetypes.guess_type(path.name)
        ctype = guessed or "application/octet-stream"
        headers = {"Content-ID": f"<part{index}>", "Content-Location": path.name}
        parts.append(Part(ctype, {"name": path.name}, headers, path.read_bytes()))
    if not parts:
        return None
    return mm7.content_from_parts("multipart/mixed", {}, parts)


def submit_request(
    *,
    to: list[str],
    cc: list[str] | None = None,
    sender: str | None = None,
    vasp_id: str | None = None,
    vas_id: str | None = None,
    subject: str | None = None,
    text: str | None = None,
    files: list[Path] | None = None,
    namespace: str = mm7.DEFAULT_NAMESPACE,
    delivery_report: bool | None = None,
    read_reply: bool | None = None,
    expiry_seconds: int | None = None,
    transaction_id: str = "mmsc-cli",
) -> Any:
    """A SubmitReq as a VASP would write it."""

    def address(value: str) -> mm7.Address:
        digits = value.lstrip("+")
        if "@" in value:
            return mm7.Address("RFC2822Address", value)
        if digits.isdigit() and len(digits) <= 8 and not value.startswith("+"):
            return mm7.Address("ShortCode", value)
        return mm7.Address("Number", value)

    return mm7.SubmitReq(
        transaction_id=transaction_id,
        namespace=namespace,
        mm7_version=mm7.MM7_VERSIONS[namespace],
        vasp_id=vasp_id,
        vas_id=vas_id,
        sender_address=mm7.Address("ShortCode", sender) if sender else None,
        to=[address(v) for v in to],
        cc=[address(v) for v in cc or []],
        subject=subject,
        delivery_report=delivery_report,
        read_reply=read_reply,
        expiry_date=timedelta(seconds=expiry_seconds) if expiry_seconds else None,
        content=text_and_files_content(text, files or []),
    )


def answer_json(op: Any) -> dict[str, Any]:
    """An MM7 operation as JSON-friendly values (content summarised, not dumped)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out = {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, mm7.Content):
                out = {"content_type": value.content_type, "octets": len(value.body)}
            return out
        if isinstance(value, bytes | bytearray):
            return f"<{len(value)} octets>"
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        return value

    result = convert(op)
    result["operation"] = mm7.operation_name(op)
    return dict(result)
