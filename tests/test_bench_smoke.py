"""The benchmark's synthetic m-send-req is still the message its figures claim to measure.

Why: bench/codec_bench.py quotes µs per decode of a ~31 KB three-part
m-send-req; if the builder drifted in size or shape, or stopped round-tripping
through the codec, those figures would silently describe another message.
No timing runs here.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bench.codec_bench import JPEG_DIMENSIONS, build_send_req, header_block
from protocol import mms


def test_synthetic_send_req_size_parts_and_roundtrip() -> None:
    pdu = build_send_req()
    wire = mms.encode(pdu)
    assert 30_000 <= len(wire) <= 33_000
    assert wire == mms.encode(build_send_req()), "the builder must be deterministic"

    decoded = mms.decode(wire)
    assert decoded.message_type == "m-send-req"
    assert decoded.mms_version == "1.2"
    assert decoded.headers == pdu.headers
    assert decoded.content_type == pdu.content_type
    assert decoded.content_type_params == pdu.content_type_params
    assert decoded.parts is not None and pdu.parts is not None
    assert len(decoded.parts) == 3
    assert [(p.content_type, p.params, p.headers, bytes(p.data)) for p in decoded.parts] == [
        (p.content_type, p.params, p.headers, bytes(p.data)) for p in pdu.parts
    ]
    assert mms.encode(decoded) == wire


def test_synthetic_jpeg_is_a_real_image() -> None:
    pdu = build_send_req()
    assert pdu.parts is not None
    jpeg = bytes(pdu.parts[2].data)
    with Image.open(io.BytesIO(jpeg)) as img:
        img.load()
        assert img.format == "JPEG" and img.size == JPEG_DIMENSIONS


def test_header_block_decodes_without_a_body() -> None:
    pdu = build_send_req()
    head = mms.decode(header_block(pdu))
    assert head.headers == pdu.headers
    assert head.content_type is None and head.parts is None


# bench/mm1_bench.py ---------------------------------------------------------------------------
# Why: its accept rate is quoted for "a 31 KB three-part m-send-req to one recipient" and
# it counts an answer as accepted only if check_conf says so; both must stay true.


def test_mm1_bench_request_is_a_31kb_send_req_to_one_recipient() -> None:
    from bench.mm1_bench import build_pool, build_request

    wire = build_request("B000042", "+4917000000042")
    assert 30_000 <= len(wire) <= 33_000
    pdu = mms.decode(wire)
    assert pdu.message_type == "m-send-req" and pdu.transaction_id == "B000042"
    assert pdu.headers["To"] == ["+4917000000042/TYPE=PLMN"]
    assert pdu.headers["From"] is None  # the server takes the sender from X-MSISDN
    assert pdu.parts is not None and len(pdu.parts) == 3
    assert [p.content_type for p in pdu.parts] == ["application/smil", "text/plain", "image/jpeg"]
    assert mms.encode(pdu) == wire

    pool = build_pool(4)
    assert len({r.tid for r in pool}) == 4
    assert all(r.sender.startswith("+") for r in pool)
    assert [mms.decode(r.body).transaction_id for r in pool] == [r.tid for r in pool]


def test_mm1_bench_counts_only_ok_send_confs() -> None:
    from bench.mm1_bench import MMS_TYPE, check_conf
    from protocol.mms import MmsPdu

    def conf(tid: str, status: str, message_id: str | None = "m1") -> bytes:
        headers: dict[str, object] = {"X-Mms-Response-Status": status}
        if message_id:
            headers["Message-ID"] = message_id
        return mms.encode(MmsPdu("m-send-conf", tid, "1.2", headers))

    assert check_conf(200, MMS_TYPE, conf("T1", "Ok"), "T1") is None
    assert check_conf(200, MMS_TYPE, conf("T2", "Ok"), "T1") is not None
    assert check_conf(200, MMS_TYPE, conf("T1", "Error-transient-failure"), "T1") is not None
    assert check_conf(200, MMS_TYPE, conf("T1", "Ok", None), "T1") is not None
    assert check_conf(400, MMS_TYPE, conf("T1", "Ok"), "T1") is not None
    assert check_conf(200, "text/plain", conf("T1", "Ok"), "T1") is not None
    assert check_conf(200, MMS_TYPE, b"\x00garbage", "T1") is not None


def test_mm1_bench_percentile_is_nearest_rank() -> None:
    from bench.mm1_bench import percentile

    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0


def test_backlog_seed_is_a_waiting_not_a_due_backlog(tmp_path: Path) -> None:
    """`mm1_bench.py --backlog N` claims N messages notified and waiting to be fetched:
    open, not due within the run, not expired, so they load the scheduler's queries
    without adding notifications to the measured ones."""
    import asyncio
    import time

    from sqlalchemy import create_engine

    from bench.mm1_bench import seed_backlog
    from storage import repository as repo

    asyncio.run(seed_backlog(f"sqlite+aiosqlite:///{tmp_path}/b.db", 25))
    engine = create_engine(f"sqlite:///{tmp_path}/b.db")
    try:
        with engine.connect() as conn:
            now = time.time()
            assert repo.queue_depths(conn)[repo.NOTIFIED] == 25
            assert repo.due_recipients(conn, now + 600, 100) == []
            assert repo.expired_recipients(conn, now + 86400, 100) == []
            assert len(repo.due_recipients(conn, now + 3600 + 3600, 100)) == 25
    finally:
        engine.dispose()


def test_the_lean_load_client_and_sink_speak_plain_http_to_real_peers() -> None:
    """bench/rawhttp.py replaces aiohttp at the benchmark's two ends; checked here against
    aiohttp's server (the client) and the server's own sendsms client (the sink), so a
    figure never rests on requests a real peer would not take."""
    import asyncio

    from aiohttp import web

    from bench import rawhttp
    from mmsc.notify.http1 import Origin

    async def body() -> None:
        seen: list[bytes] = []

        async def echo(request: web.Request) -> web.Response:
            data = await request.read()
            return web.Response(body=data[::-1], content_type="application/x-test")

        app = web.Application()
        app.router.add_post("/mms", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        client = rawhttp.PostClient("127.0.0.1", port)
        try:
            for size in (0, 5, 70_000):  # the last one arrives in several reads
                data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                req = rawhttp.PostClient.request(
                    "/mms", f"127.0.0.1:{port}", {"X-MSISDN": "+4917012345"}, data
                )
                answer = await client.post(req)
                assert (answer.status, answer.content_type) == (200, "application/x-test")
                assert answer.body == data[::-1]
        finally:
            client.close()
            await runner.cleanup()

        def handle(target: bytes) -> bool:
            seen.append(target)
            return b"bad" not in target

        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: rawhttp.SendsmsProtocol(handle), "127.0.0.1", 0)
        sink_port = server.sockets[0].getsockname()[1]
        origin = Origin("http", "127.0.0.1", sink_port, max_connections=2, timeout=10)
        try:
            ok = await origin.get("/cgi-bin/sendsms?to=1&text=a", 100)
            bad = await origin.get("/cgi-bin/sendsms?to=2&text=bad", 100)
            many = await asyncio.gather(
                *(origin.get(f"/cgi-bin/sendsms?n={i}", 100) for i in range(20))
            )
        finally:
            await origin.close()
            server.close()
        assert (ok.status, ok.body) == (202, b"0: Accepted for delivery")
        assert bad.status == 400
        assert all(r.status == 202 for r in many)
        assert seen[:2] == [b"/cgi-bin/sendsms?to=1&text=a", b"/cgi-bin/sendsms?to=2&text=bad"]
        assert sorted(seen[2:]) == sorted(f"/cgi-bin/sendsms?n={i}".encode() for i in range(20))

    asyncio.run(body())


# bench/abba.py ------------------------------------------------------------------------------

_BENCH_OUTPUT = """\
  machine reference: sum(range(1000)) takes 26.9 µs here (about 9-10 on a fast day)

conns accepted/s  p50 ms  p95 ms  p99 ms  max ms errors   notif/s  backlog   srv ms
   32      1,710    44.1    57.0    65.1    77.8      0       707       57     35.2
      CPU (cores): server 1.06 (event loop 0.85, other threads 0.21; 1,493 µs per accepted), load
"""


def test_abba_reads_the_32_connection_figures() -> None:
    from bench.abba import parse_run

    run = parse_run("B", _BENCH_OUTPUT)
    assert (run.build, run.rate, run.p99_ms, run.us_per_message) == ("B", 1710, 65.1, 1493)
    assert run.reference_us == 26.9
    with pytest.raises(ValueError):
        parse_run("A", "server failed to start\n")


def test_abba_summary_compares_the_means() -> None:
    from bench.abba import Run, summary

    runs = [
        Run("A", 600, 70, 1700, None),
        Run("B", 690, 60, 1500, None),
        Run("B", 670, 62, 1560, None),
        Run("A", 620, 69, 1660, None),
    ]
    text = summary(runs)
    assert "A: 600 / 620 accepted/s (mean 610); 1,680 µs per message" in text
    assert "B: 690 / 670 accepted/s (mean 680); 1,530 µs per message" in text
    assert "B against A: rate +11.5%, CPU per message -8.9%" in text


def test_abba_compiles_what_setup_py_compiles() -> None:
    from bench.abba import ROOT, compiled_modules

    modules = compiled_modules(ROOT / "setup.py")
    assert "protocol/mms.py" in modules and "protocol/mm7_xml.py" in modules
    assert all((ROOT / m).is_file() for m in modules)


def test_loop_state_reads_running_futex_and_epoll_waits() -> None:
    from bench.mm1_bench import classify_thread_state

    stat = "4242 (python (x)) {} 1 4242 4242 0 -1"  # comm may hold ")" and spaces
    assert classify_thread_state(stat.format("R"), "0") == "running"
    assert classify_thread_state(stat.format("S"), "futex_do_wait") == "lock"
    assert classify_thread_state(stat.format("S"), "futex_wait_queue_me") == "lock"
    assert classify_thread_state(stat.format("S"), "do_epoll_wait") == "idle"
    assert classify_thread_state(stat.format("D"), "jbd2_log_wait_commit") == "other"


def test_busiest_loop_is_the_thread_that_ran_most() -> None:
    from bench.mm1_bench import busiest_loop

    counts = {
        1: {"running": 10, "idle": 90},  # a supervisor or a sleeping helper
        2: {"running": 70, "lock": 20, "idle": 10},
        3: {},
    }
    assert busiest_loop(counts) == {"running": 0.7, "lock": 0.2, "idle": 0.1, "other": 0.0}
    assert busiest_loop({}) is None


def test_loop_sampler_tells_a_busy_thread_from_an_idle_loop() -> None:
    """Against real processes: one spinning on its main thread, one whose main thread
    waits in epoll (an asyncio loop with nothing to do)."""
    import subprocess
    import sys
    import threading

    from bench.mm1_bench import LoopSampler

    code = {
        "busy": "import sys\nprint(flush=True)\nwhile sys.stdin.readable(): pass",
        "idle": "import asyncio\nprint(flush=True)\nasyncio.run(asyncio.sleep(60))",
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", src], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for name, src in code.items()
    }
    sampler = LoopSampler()
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline() == b"\n"
        shares = {}
        for name, proc in procs.items():
            sampler.start([proc.pid])
            threading.Event().wait(0.5)  # the sampling window itself, not a synchronisation
            shares[name] = sampler.stop()
        busy, idle = shares["busy"], shares["idle"]
        assert busy is not None and idle is not None
        assert busy["running"] > 0.5 and busy["idle"] == 0.0
        assert idle["idle"] > 0.9 and idle["running"] < 0.1
    finally:
        sampler.close()
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_limit_verdict_names_a_saturated_loop_thread() -> None:
    from bench.mm1_bench import CpuUse, LevelResult, limit_verdict

    res = LevelResult(32, 8.0, latencies=[0.03] * 10)
    res.cpu = CpuUse(server=1.1, server_loop=0.7, loadgen=0.1, sink=0.1, database=0.0, machine=1.4)
    res.handler_ms = 28.0
    assert limit_verdict(res).startswith("no CPU saturated")
    res.loop = {"running": 0.9, "lock": 0.06, "idle": 0.03, "other": 0.01}
    verdict = limit_verdict(res)
    assert verdict.startswith("server event-loop thread saturated: idle only 3%")
    assert "waiting for the GIL or a lock 6%" in verdict


def test_commit_pipeline_reads_the_window_from_two_scrapes() -> None:
    """The benchmark's commit line is the difference of two /metrics scrapes: batches,
    writes per batch, and each stage's mean; absent stages are left out."""
    from bench.mm1_bench import CpuUse, LevelResult, commit_pipeline, limit_verdict

    def scrape(batches: float, units: float, stages: dict[str, tuple[float, float]]) -> dict:
        out = {"mmsc_commit_batch_units_count": batches, "mmsc_commit_batch_units_sum": units}
        for stage, (count, seconds) in stages.items():
            out[f'mmsc_commit_stage_seconds_count{{stage="{stage}"}}'] = count
            out[f'mmsc_commit_stage_seconds_sum{{stage="{stage}"}}'] = seconds
        return out

    m0 = scrape(10, 50, {"queue": (10, 0.01), "transaction": (10, 0.05)})
    m1 = scrape(110, 850, {"queue": (110, 0.31), "transaction": (110, 0.65)})
    pipeline = commit_pipeline(m0, m1)
    assert pipeline is not None
    assert pipeline.batches == 100
    assert pipeline.units_per_batch == 8.0
    assert pipeline.stage_ms == {"queue": 3.0, "transaction": 6.0}
    assert commit_pipeline(m1, m1) is None  # no batch in the window

    res = LevelResult(32, 8.0, latencies=[0.03] * 10)
    res.cpu = CpuUse(server=1.1, server_loop=0.7, loadgen=0.1, sink=0.1, database=0.0, machine=1.4)
    res.handler_ms = 28.0
    res.loop = {"running": 0.7, "lock": 0.05, "idle": 0.2, "other": 0.05}
    res.commit = pipeline
    verdict = limit_verdict(res)
    assert verdict.endswith("the longest commit stage is transaction (6.0 of 9.0 ms per batch)")


def test_goal_needs_sms_leaving_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    """A run with --no-sms measures the accept path without the SMS exchange; it can
    never pass the goal, which is stated with notifications flowing."""
    from bench.mm1_bench import Database, LevelResult, goal_check

    db = Database("sqlite+aiosqlite:///x.db", "SQLite", durable=True)
    res = LevelResult(32, 1.0, latencies=[0.01] * 2_000, notifications=2_000)
    assert goal_check([res], db)
    assert "PASS" in capsys.readouterr().out
    res.sms = False
    assert not goal_check([res], db)
    assert "MISS (no SMS sent (--no-sms))" in capsys.readouterr().out
