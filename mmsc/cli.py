"""The `mmsc` command (DESIGN.md §3): serve, and tools for PDUs.

Errors on bad input are one line on stderr and a non-zero exit, never a
traceback: operators paste these commands into scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from protocol import wap_push
from protocol.errors import DecodeError, EncodeError
from protocol.mms import decode, encode
from protocol.mms_json import pdu_from_json, pdu_to_json

EXIT_BAD_INPUT = 1
EXIT_USAGE = 2


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as stream:
        return stream.read()


def _hex_to_bytes(raw: bytes) -> bytes:
    text = b"".join(raw.split()).decode("ascii", "replace")
    if text.lower().startswith("0x"):
        text = text[2:]
    return bytes.fromhex(text)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"mmsc: {message}", file=sys.stderr)
    return code


def cmd_pdu_decode(args: argparse.Namespace) -> int:
    raw = _read_input(args.file)
    if args.hex:
        try:
            raw = _hex_to_bytes(raw)
        except ValueError:
            return _fail("input is not hexadecimal")
    try:
        if args.push:
            push, pdu = wap_push.decode_mms_push(raw)
            out: dict[str, Any] = pdu_to_json(pdu)
            out["push"] = {
                "tid": push.tid,
                "content_type": push.content_type,
                "application_id": push.application_id,
            }
        else:
            out = pdu_to_json(decode(raw))
    except DecodeError as exc:
        return _fail(f"cannot decode PDU: offset {exc.offset}: {exc.reason}")
    json.dump(out, sys.stdout, indent=None if args.compact else 2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _load_json_pdu(name: str) -> Any:
    raw = _read_input(name)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EncodeError(f"input is not JSON: {exc}") from None


def cmd_pdu_encode(args: argparse.Namespace) -> int:
    try:
        pdu = pdu_from_json(_load_json_pdu(args.file))
        data = encode(pdu, version=args.mms_version, check_mandatory=not args.no_check)
    except EncodeError as exc:
        return _fail(f"cannot encode PDU: {exc}")
    _write_output(args, data)
    return 0


def cmd_pdu_push(args: argparse.Namespace) -> int:
    try:
        pdu = pdu_from_json(_load_json_pdu(args.file))
        data = encode(pdu, version=args.mms_version)
        segments = wap_push.notification_segments(
            data, tid=args.tid, reference=args.reference, ref16=args.ref16
        )
    except EncodeError as exc:
        return _fail(f"cannot build push: {exc}")
    for seg in segments:
        print(seg.user_data.hex())
    return 0


def _write_output(args: argparse.Namespace, data: bytes) -> None:
    if args.hex:
        sys.stdout.write(data.hex() + "\n")
    elif args.output:
        with open(args.output, "wb") as fh:
            fh.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def cmd_serve(args: argparse.Namespace) -> int:
    from mmsc import config as config_mod
    from mmsc import workers

    try:
        cfg = config_mod.load(args.config)
        count = workers.worker_count(cfg)
    except config_mod.ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    from mmsc.log_output import BlockBufferedHandler, SecondCachedFormatter

    handler = BlockBufferedHandler()
    # Several workers write to one log: each line says which process wrote it.
    handler.setFormatter(
        SecondCachedFormatter(
            "%(asctime)s %(levelname)s %(name)s "
            + ("pid=%(process)d " if count > 1 else "")
            + "%(message)s"
        )
    )
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO), handlers=[handler]
    )
    # Our format names no source file, thread or process name: let logging skip finding
    # them for every record (the logging HOWTO's "Optimization"; every state change of a
    # message is a log line, ~5 per message).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logProcesses = count > 1
    if count > 1:
        workers.prepare_metrics_dir()  # before prometheus_client is imported
    from mmsc import server

    source = config_mod.config_file(args.config)
    logging.getLogger("mmsc").info(
        "configuration: %s", source.resolve() if source else "built-in defaults"
    )
    try:
        if count > 1:
            return workers.serve(cfg, count)
        asyncio.run(server.run(cfg))
    except OSError as exc:
        return _fail(f"cannot start: {exc}")
    except config_mod.ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    return 0


def cmd_mm7_submit(args: argparse.Namespace) -> int:
    """Submit a message as a VASP would and print the answer as JSON."""
    import os
    from pathlib import Path

    import aiohttp

    from mmsc import mm7_client
    from protocol import mm7

    if args.namespace not in mm7.NAMESPACES:
        return _fail(f"unknown namespace {args.namespace!r}; one of {', '.join(mm7.NAMESPACES)}")
    password = args.password if args.password is not None else os.environ.get("MMSC_MM7_PASSWORD")
    request = mm7_client.submit_request(
        to=args.to,
        cc=args.cc,
        sender=args.sender,
        vasp_id=args.vasp_id or args.user,
        vas_id=args.vas_id,
        subject=args.subject,
        text=args.text,
        files=[Path(f) for f in args.files],
        namespace=args.namespace,
        delivery_report=True if args.delivery_report else None,
        read_reply=True if args.read_reply else None,
        expiry_seconds=args.expiry,
    )

    async def run() -> object:
        async with aiohttp.ClientSession() as session:
            return await mm7_client.exchange(
                session,
                args.url,
                request,
                username=args.user,
                password=password,
                timeout=args.timeout,
            )

    try:
        answer = asyncio.run(run())
    except mm7.Mm7DecodeError as exc:
        return _fail(f"unreadable answer: {exc}")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return _fail(f"cannot reach {args.url}: {exc or type(exc).__name__}")
    out = mm7_client.answer_json(answer)
    print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    status = out.get("status_code")
    if isinstance(answer, mm7.Fault) and answer.detail is not None:
        status = answer.detail.status_code
    return 0 if status in (1000, 1100) else EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsc", description="A self-hosted MMSC.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MMSC")
    serve.add_argument("-c", "--config", help="TOML configuration (default conf/mmsc.toml)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    pdu = sub.add_parser("pdu", help="decode and encode MMS PDUs")
    pdu_sub = pdu.add_subparsers(dest="pdu_command", required=True)

    dec = pdu_sub.add_parser("decode", help="binary MMS PDU -> JSON")
    dec.add_argument("file", help="PDU file, or - for standard input")
    dec.add_argument("--hex", action="store_true", help="the input is hexadecimal text")
    dec.add_argument("--push", action="store_true", help="the input is a WSP push PDU")
    dec.add_argument("--compact", action="store_true", help="one line of JSON")
    dec.set_defaults(func=cmd_pdu_decode)

    enc = pdu_sub.add_parser("encode", help="JSON -> binary MMS PDU")
    enc.add_argument("file", help="JSON file, or - for standard input")
    enc.add_argument("--mms-version", help="target version 1.0-1.3 (default: the JSON's)")
    enc.add_argument("--hex", action="store_true", help="print hexadecimal text")
    enc.add_argument("-o", "--output", help="write the PDU to this file")
    enc.add_argument(
        "--no-check", action="store_true", help="allow PDUs that lack mandatory fields"
    )
    enc.set_defaults(func=cmd_pdu_encode)

    push = pdu_sub.add_parser(
        "push", help="JSON m-notification-ind -> WAP push SMS user data, one hex line per SMS"
    )
    push.add_argument("file", help="JSON file, or - for standard input")
    push.add_argument("--mms-version", help="target version 1.0-1.3")
    push.add_argument("--tid", type=int, default=0, help="WSP transaction id (0-255)")
    push.add_argument("--reference", type=int, default=0, help="concatenation reference")
    push.add_argument("--ref16", action="store_true", help="16-bit concatenation reference")
    push.set_defaults(func=cmd_pdu_push)

    mm7_cmd = sub.add_parser("mm7", help="act as a VASP towards an MM7 endpoint")
    mm7_sub = mm7_cmd.add_subparsers(dest="mm7_command", required=True)
    submit = mm7_sub.add_parser(
        "submit", help="send a SubmitReq and print the SubmitRsp (or Fault) as JSON"
    )
    submit.add_argument(
        "--url", required=True, help="the MMSC's MM7 URL, e.g. http://host:8007/mm7"
    )
    submit.add_argument("--user", required=True, help="HTTP Basic user (the VASP account)")
    submit.add_argument("--password", help="HTTP Basic password (default: $MMSC_MM7_PASSWORD)")
    submit.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    submit.add_argument("--cc", action="append", default=[], help="Cc recipient (repeatable)")
    submit.add_argument("--from", dest="sender", help="sender short code")
    submit.add_argument("--vasp-id", help="VASPID (default: --user)")
    submit.add_argument("--vas-id", help="VASID")
    submit.add_argument("--subject")
    submit.add_argument("--text", help="a text/plain part")
    submit.add_argument("--namespace", default="REL-6-MM7-1-4", help="MM7 schema version")
    submit.add_argument("--delivery-report", action="store_true")
    submit.add_argument("--read-reply", action="store_true")
    submit.add_argument("--expiry", type=int, help="relative expiry in seconds")
    submit.add_argument("--timeout", type=float, default=30.0)
    submit.add_argument("files", nargs="*", help="files to attach (type from the name)")
    submit.set_defaults(func=cmd_mm7_submit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FileNotFoundError as exc:
        return _fail(f"no such file: {exc.filename}")
    except OSError as exc:  # a directory, no permission, ...: one line, no traceback
        return _fail(f"cannot read {exc.filename or 'input'}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
