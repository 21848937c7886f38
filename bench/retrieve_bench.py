"""Cached adapted retrievals per second: the real server, many handsets of one device class.

Why: issue #6's second goal is >= 3,000 cached adapted retrievals/s on a
2-core machine: once a variant exists, serving it must be as cheap as an
unadapted retrieval. One 31 KB message (bench/codec_bench.py's) goes to R
recipients; a device class matched on the benchmark's User-Agent makes every
fetch need a 100 KB/160x120 variant; the first fetch adapts it, every later
one is a cache hit. N connections then GET random recipients' fetch URLs and
each answer must be an m-retrieve-conf with status Ok.

Run: ``.venv/bin/python bench/retrieve_bench.py`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.codec_bench import build_send_req  # noqa: E402
from bench.mm1_bench import Sink, process_cpu, start_server  # noqa: E402
from protocol import mms  # noqa: E402

USER_AGENT = "RetrieveBench/1.0"
MMS_TYPE = "application/vnd.wap.mms-message"


async def load(urls: list[str], connections: int, duration: float) -> tuple[int, list[float], int]:
    done, errors = 0, 0
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration
    headers = {"User-Agent": USER_AGENT}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, errors
            rng = random.Random()
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                async with session.get(rng.choice(urls), headers=headers) as resp:
                    body = await resp.read()
                ok = resp.status == 200 and body[:2] == b"\x8c\x84"  # m-retrieve-conf
                if ok:
                    done += 1
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return done, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--levels", default="8,32")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="retrieve-bench-"))
    sink = Sink()
    sections = {
        "storage": {
            "database_url": f"sqlite+aiosqlite:///{workdir}/mmsc.db",
            "payload_dir": str(workdir / "payloads"),
        },
        "mm1": {
            "listen": "127.0.0.1:0",
            "public_url": "http://mmsc.bench/mms",
            "msisdn_headers": ["X-MSISDN"],
        },
        "mm7": {"listen": "127.0.0.1:0"},
        "admin": {"listen": "127.0.0.1:0"},
        "notify": {"backend": "kannel", "sendsms_url": sink.url},
        "adapt": {
            "class": [
                {
                    "name": "small",
                    "user_agent": "RetrieveBench",
                    "max_message_size": 102400,
                    "max_image": "160x120",
                }
            ]
        },
    }
    server = start_server(workdir, sections, "warning")
    try:
        pdu = build_send_req()
        to = [f"+1555{i:07d}/TYPE=PLMN" for i in range(args.recipients)]
        body = mms.encode(replace(pdu, headers={**pdu.headers, "To": to}))

        async def setup() -> list[str]:
            async with aiohttp.ClientSession() as session:
                headers = {"Content-Type": MMS_TYPE, "X-MSISDN": "+15550000001"}
                async with session.post(
                    server.urls["mm1"] + "/mms", data=body, headers=headers
                ) as r:
                    conf = mms.decode(await r.read())
                    assert conf.headers["X-Mms-Response-Status"] == "Ok", conf.headers
            with sqlite3.connect(workdir / "mmsc.db") as db:
                tokens = [row[0] for row in db.execute("SELECT token FROM recipients")]
            urls = [f"{server.urls['mm1']}/mms/{t}" for t in tokens]
            async with (
                aiohttp.ClientSession() as session,  # the one adaptation
                session.get(urls[0], headers={"User-Agent": USER_AGENT}) as r,
            ):
                adapted = await r.read()
            print(
                f"one {len(body):,}-byte message to {len(urls)} recipients; the 'small' class "
                f"variant is {len(adapted):,} bytes (adapted once, then cached)"
            )
            return urls

        urls = asyncio.run(setup())
        columns = ("conns", "retrievals/s", "p50 ms", "p99 ms", "errors", "server CPU")
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (5, 12, 7, 7, 6, 10), strict=True)))
        for level in (int(v) for v in args.levels.split(",")):
            cpu0 = process_cpu(server.pid)
            done, latencies, errors = asyncio.run(load(urls, level, args.duration))
            cpu = (process_cpu(server.pid) - cpu0) / args.duration
            latencies.sort()
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3 if latencies else float("nan")
            print(
                f"{level:>5} {done / args.duration:>12,.0f} "
                f"{statistics.median(latencies) * 1e3 if latencies else float('nan'):>7.1f} "
                f"{p99:>7.1f} {errors:>6} {cpu:>9.2f}c"
            )
        print("goal (issue #6): >= 3,000 cached adapted retrievals/s on 2 cores")
    finally:
        server.stop()
        sink.stop()


if __name__ == "__main__":
    main()
