"""`mmsc serve` with several worker processes ([server] workers, mmsc/workers.py)."""

from __future__ import annotations

import os
import queue
import re
import signal
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bench.mm1_bench import processes
from protocol import mms
from tests.harness import ServerProcess, SmsSink, http, start_server
from tests.pg import temp_database
from tests.test_mm1_e2e import A, post_pdu, send_req

MESSAGES = 40


def worker_pids(server: ServerProcess) -> set[int]:
    """The parent's direct children that run a worker, read from /proc."""
    return {pid for pid, _name, fields in processes() if int(fields[1]) == server.proc.pid}


def wait_until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def metric(admin: str, name: str) -> float:
    status, body, _ = http("GET", admin + "/metrics")
    assert status == 200
    match = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def run_workers(tmp_path: Path, sink: SmsSink, database_url: str | None) -> None:
    sections: dict[str, dict[str, Any]] = {
        "server": {"workers": 2},
        "mm1": {"public_url": "http://mmsc.test/mms", "msisdn_headers": ["X-MSISDN"]},
        "notify": {"backend": "kannel", "sendsms_url": sink.url},
    }
    if database_url:
        sections["storage"] = {"database_url": database_url}
    server = start_server(tmp_path, sections)
    try:
        workers = wait_until(lambda: (p := worker_pids(server)) and len(p) == 2 and p)
        # Many senders at once over separate connections: the kernel spreads them.
        bodies = [send_req(f"T{i}", [f"+1555100{i:04d}"], report=False) for i in range(MESSAGES)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda b: post_pdu(server.mm1 + "/mms", b, A), bodies))
        for status, body in answers:
            assert status == 200
            assert mms.decode(body).headers["X-Mms-Response-Status"] == "Ok"

        # Every recipient notified exactly once, whichever worker took the message.
        pushes = []
        while len(pushes) < MESSAGES:
            pushes.append(sink.next())
        with pytest.raises(queue.Empty):
            sink.pushes.get(timeout=1.0)  # and nothing twice
        assert Counter(p.to for p in pushes) == Counter(f"+1555100{i:04d}" for i in range(MESSAGES))

        # Any worker serves any fetch.
        for push in pushes[:10]:
            path = urllib.parse.urlsplit(push.pdu.headers["X-Mms-Content-Location"]).path
            status, body, _ = http("GET", server.mm1 + path)
            assert status == 200
            assert mms.decode(body).headers["X-Mms-Retrieve-Status"] == "Ok"

        # /metrics adds up the workers, whichever of them answers the scrape.
        received = 'mmsc_messages_received_total{interface="mm1"}'
        for _ in range(4):
            assert metric(server.admin, received) == MESSAGES

        # A worker killed outright is replaced; the others go on.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: (p := worker_pids(server)) and len(p) == 2 and victim not in p and p
        )
        assert victim not in replaced
        status, body = post_pdu(server.mm1 + "/mms", send_req("after", ["+15551009999"]), A)
        assert mms.decode(body).headers["X-Mms-Response-Status"] == "Ok"
        assert sink.next().to == "+15551009999"

        # SIGTERM stops every worker, then the parent, cleanly.
        assert server.stop(signal.SIGTERM) == 0
        for pid in replaced:
            assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
        log = "".join(server.log)
        assert "Traceback" not in log, log
        assert len(set(re.findall(r"worker \d+ serving \(node (\w+)\)", log))) >= 3
    finally:
        server.stop(signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def sink():
    with SmsSink() as s:
        yield s


def test_two_workers_on_sqlite(tmp_path: Path, sink: SmsSink) -> None:
    run_workers(tmp_path, sink, None)


def test_two_workers_on_postgresql(tmp_path: Path, sink: SmsSink) -> None:
    with temp_database() as url:
        run_workers(tmp_path, sink, url)


def test_workers_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"server\.workers"):
        start_server(tmp_path, {"server": {"workers": 0}})
