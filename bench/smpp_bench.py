"""SMPP benchmark: how fast one bind pushes notifications, and what each submit costs.

Why: the notification path must never be the bottleneck of MM1 (issue #4 goal:
>= 5,000 submit_sm/s through one bind on loopback with window 50, under 100 µs
of CPU per submit). Three figures:

1. codec: encoding a WAP-push submit_sm and decoding its submit_sm_resp with
   ``protocol.smpp``, against the same PDU built and parsed by the construct
   declaration in tests/smpp_fixture.py (the "is construct fast enough?"
   question of the issue);
2. client: single-SMS pushes through ``SmppBackend.send`` over one bind to the
   SMSC double running in a *separate process* (so its CPU is not ours):
   submits per second, our process's CPU per submit, and the submit_sm ->
   submit_sm_resp latency (the latency SMPP adds to a notification);
3. optionally the same against a real SMSC (``--smsc host:port``, e.g. Jasmin
   from scripts/jasmin.sh) for its own figure.

Run: ``.venv/bin/python bench/smpp_bench.py`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmsc.notify.base import PushRequest  # noqa: E402
from mmsc.notify.smpp import SmppBackend  # noqa: E402
from mmsc.notify.smpp_config import load_settings  # noqa: E402
from protocol import mms, smpp, wap_push  # noqa: E402
from protocol.mms import MmsPdu  # noqa: E402
from tests import smpp_fixture  # noqa: E402


def notification_segment() -> wap_push.SmsSegment:
    pdu = MmsPdu(
        "m-notification-ind",
        "b3dmzqkxw5d2lfyhnm4s7tqe",
        "1.2",
        {
            "From": "+15550000001/TYPE=PLMN",
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Message-Size": 31_400,
            "X-Mms-Expiry": {"relative": 604_800},
            "X-Mms-Content-Location": "http://mmsc.example.net/mms/b3dmzqkxw5d2lfyhnm4s7tqe",
        },
    )
    (segment,) = wap_push.notification_segments(mms.encode(pdu), tid=1, reference=1)
    return segment


def per_call(fn: object, repeat: int) -> float:
    """Best-of-5 mean seconds per call."""
    assert callable(fn)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def codec_figures(repeat: int) -> None:
    user_data = notification_segment().user_data
    params = {
        "source_addr_ton": 5,
        "source_addr": "MMS",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "15557654321",
        "esm_class": smpp.ESM_UDHI,
        "data_coding": 4,
        "short_message": user_data,
    }
    ours_encode = per_call(lambda: smpp.encode(smpp.Pdu(smpp.SUBMIT_SM, 7, 0, params)), repeat)
    raw_submit = smpp.encode(smpp.Pdu(smpp.SUBMIT_SM, 7, 0, params))
    ours_decode = per_call(lambda: smpp.decode(raw_submit), repeat)
    resp = smpp.encode(smpp.Pdu(smpp.SUBMIT_SM_RESP, 7, 0, {"message_id": "4ce2802f-0001"}))
    ours_resp = per_call(lambda: smpp.decode(resp), repeat)
    theirs_encode = per_call(
        lambda: smpp_fixture.submit_sm(
            user_data, sequence_number=7, source_addr="MMS", destination_addr="15557654321"
        ),
        repeat // 4,
    )
    theirs_decode = per_call(lambda: smpp_fixture.parse_submit_sm(raw_submit), repeat // 4)
    print("codec (µs per PDU, best of 5)")
    for label, ours, theirs in (
        ("submit_sm encode", ours_encode, theirs_encode),
        ("submit_sm decode", ours_decode, theirs_decode),
    ):
        print(f"  {label:21} ours {ours * 1e6:7.2f}   construct {theirs * 1e6:7.2f}")
    print(f"  submit_sm_resp decode ours {ours_resp * 1e6:7.2f}")


async def client_figures(
    host: str, port: int, password: str, system_id: str, count: int, window: int, concurrency: int
) -> dict[str, float]:
    settings = load_settings(
        {
            "smpp": {
                "bind": [
                    {
                        "host": host,
                        "port": port,
                        "system_id": system_id,
                        "password": password,
                        "window": window,
                        "response_timeout": 30.0,
                    }
                ]
            }
        }
    )
    backend = SmppBackend(settings)
    await backend.start()
    try:
        if not await backend.wait_ready(30):
            raise SystemExit(f"no bind to {host}:{port}: {backend.binds[0].last_error}")
        segment = notification_segment()
        push = PushRequest("+15557654321", (segment,), "bench")
        latencies: list[float] = []
        bind = backend.binds[0]
        original = bind.submit

        async def timed(params, tlvs=None):  # type: ignore[no-untyped-def]
            outcome = await original(params, tlvs)
            latencies.append(outcome.latency)
            return outcome

        bind.submit = timed  # type: ignore[method-assign]
        remaining = count

        async def worker() -> int:
            nonlocal remaining
            failures = 0
            while remaining > 0:
                remaining -= 1
                result = await backend.send(push)
                failures += not result.ok
            return failures

        # Warm up (connection, caches), then measure.
        await asyncio.gather(*(backend.send(push) for _ in range(min(500, count))))
        latencies.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        failures = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await backend.close()
    latencies.sort()
    return {
        "rate": count / wall,
        "cpu_us": cpu / count * 1e6,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "failures": failures,
    }


def start_double() -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.smsc_double", "--password", "secret"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"SMSC double did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def report(label: str, figures: dict[str, float], window: int) -> None:
    print(f"{label} (window {window})")
    print(f"  submit_sm/s           {figures['rate']:9.0f}   (goal >= 5000)")
    print(f"  CPU per submit        {figures['cpu_us']:9.1f} µs (goal < 100; our process only)")
    print(f"  submit -> resp p50    {figures['p50_ms']:9.2f} ms")
    print(f"  submit -> resp p99    {figures['p99_ms']:9.2f} ms")
    print(f"  failed pushes         {figures['failures']:9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000, help="pushes to send (default 20000)")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=200, help="pushes in flight")
    parser.add_argument("--codec-repeat", type=int, default=20_000)
    parser.add_argument("--smsc", help="also measure against this SMSC (host:port)")
    parser.add_argument("--system-id", default="mmsc")
    parser.add_argument("--password", default="mmscpw", help="for --smsc")
    parser.add_argument("--smsc-count", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    codec_figures(args.codec_repeat)
    proc, port = start_double()
    try:
        figures = asyncio.run(
            client_figures(
                "127.0.0.1", port, "secret", "mmsc", args.count, args.window, args.concurrency
            )
        )
    finally:
        proc.kill()
        proc.wait()
    report("client -> SMSC double (separate process)", figures, args.window)
    if args.smsc:
        host, _, smsc_port = args.smsc.rpartition(":")
        figures = asyncio.run(
            client_figures(
                host or "127.0.0.1",
                int(smsc_port),
                args.password,
                args.system_id,
                args.smsc_count,
                args.window,
                args.concurrency,
            )
        )
        report(f"client -> {args.smsc}", figures, args.window)


if __name__ == "__main__":
    main()
