"""The JSON form of an MMS PDU (DESIGN.md §3, `mmsc pdu decode` / `encode`).

Header values are already JSON-shaped; only three things need a mapping:
uninterpreted values (``Raw``) become ``{"raw": "<hex>"}``, part data becomes
``data_base64`` and a non-multipart body becomes ``body_base64``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from protocol.errors import EncodeError
from protocol.mms import MmsPdu
from protocol.values import Raw
from protocol.wsp import Part


def value_to_json(value: Any) -> Any:
    if isinstance(value, Raw):
        return {"raw": value.data.hex()}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [value_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: value_to_json(v) for k, v in value.items()}
    return value


def value_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"raw"}:
            try:
                return Raw(bytes.fromhex(value["raw"]))
            except (ValueError, TypeError):
                raise EncodeError(f"bad raw hex value {value['raw']!r}") from None
        return {k: value_from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [value_from_json(v) for v in value]
    return value


def pdu_to_json(pdu: MmsPdu) -> dict[str, Any]:
    out: dict[str, Any] = {
        "message_type": pdu.message_type,
        "transaction_id": pdu.transaction_id,
        "mms_version": pdu.mms_version,
        "headers": {k: value_to_json(v) for k, v in pdu.headers.items()},
    }
    if pdu.content_type is not None:
        out["content_type"] = pdu.content_type
        out["content_type_params"] = value_to_json(pdu.content_type_params)
    if pdu.parts is not None:
        out["parts"] = [
            {
                "content_type": part.content_type,
                "params": value_to_json(part.params),
                "headers": value_to_json(part.headers),
                "data_base64": base64.b64encode(part.data).decode("ascii"),
            }
            for part in pdu.parts
        ]
    if pdu.body is not None:
        out["body_base64"] = base64.b64encode(pdu.body).decode("ascii")
    return out


def _b64(text: Any, where: str) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise EncodeError(f"{where} is not valid base64") from None


def pdu_from_json(obj: Any) -> MmsPdu:
    """Build a PDU from its JSON form; raises :class:`EncodeError` on a malformed object."""
    if not isinstance(obj, dict):
        raise EncodeError("a PDU is a JSON object")
    mtype = obj.get("message_type")
    if not isinstance(mtype, str):
        raise EncodeError("message_type is required")
    headers = obj.get("headers") or {}
    if not isinstance(headers, dict):
        raise EncodeError("headers must be an object")
    for key in ("transaction_id", "content_type"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise EncodeError(f"{key} must be a string")
    if not isinstance(obj.get("content_type_params") or {}, dict):
        raise EncodeError("content_type_params must be an object")
    parts = None
    if obj.get("parts") is not None:
        if not isinstance(obj["parts"], list):
            raise EncodeError("parts must be a list")
        parts = []
        for i, p in enumerate(obj["parts"]):
            if not isinstance(p, dict) or not isinstance(p.get("content_type"), str):
                raise EncodeError(f"part {i} needs a content_type")
            if not all(isinstance(p.get(k) or {}, dict) for k in ("params", "headers")):
                raise EncodeError(f"part {i}: params and headers must be objects")
            parts.append(
                Part(
                    p["content_type"],
                    value_from_json(p.get("params") or {}),
                    value_from_json(p.get("headers") or {}),
                    _b64(p.get("data_base64"), f"part {i} data_base64"),
                )
            )
    body = _b64(obj["body_base64"], "body_base64") if obj.get("body_base64") is not None else None
    version = obj.get("mms_version")
    return MmsPdu(
        message_type=mtype,
        transaction_id=obj.get("transaction_id"),
        mms_version=str(version) if version is not None else None,
        headers={str(k): value_from_json(v) for k, v in headers.items()},
        content_type=obj.get("content_type"),
        content_type_params=value_from_json(obj.get("content_type_params") or {}),
        parts=parts,
        body=body,
    )
