"""MM1 accept benchmark: the real `mmsc serve` under handset load, with notifications flowing.

Why: the design's goal for one node is at least 1,800 accepted m-send-req per
second with durable commits and a p99 of at most 50 ms at 32 connections
(a Go MMSC measured on these machines does about 450/s). The codec benchmark
says nothing about that: the accept path is HTTP, sender resolution, an
fsynced payload file, a group-committed row set and the m-send-conf, and the
scheduler and outbox compete for the same process and database while it runs.
This script measures exactly that path end to end on loopback and says what
limited the rate (server CPU, load generator CPU, or neither).

Pieces (all real, nothing mocked):

* the server is ``python -m mmsc.cli serve`` in a subprocess, configured with
  ``tests.harness.write_config`` like the end-to-end tests, its output going to
  a log file (not a pipe: a drain thread would steal GIL time from the load
  generator and disturb the latencies it measures);
* the notification backend is ``kannel``, pointed at a sendsms sink that runs
  in its own process (so that decoding every push costs the load generator
  nothing and its CPU can be reported on its own); the sink reassembles and
  decodes each WAP push and counts the m-notification-ind it gets;
* the load generator is this process: one ``aiohttp.ClientSession`` with a
  keep-alive ``TCPConnector(limit=N)`` and N workers, each POSTing the ~31 KB
  three-part m-send-req of ``bench/codec_bench.py`` (cut to one recipient)
  with an ``X-MSISDN`` header, and decoding every answer, which must be an
  m-send-conf with status Ok for its transaction id.

CPU time comes from ``/proc/<pid>/stat`` (utime + stime; psutil is not
installed), per thread for the server, so a saturated event loop shows up
even when the process total is below one core.

Run: ``.venv/bin/python bench/mm1_bench.py`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# Benchmark this checkout's server, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rawhttp
from bench.codec_bench import build_send_req
from protocol import mms, wap_push
from protocol.errors import DecodeError
from tests.harness import LISTEN_RE, write_config

ROOT = Path(__file__).resolve().parent.parent
MMS_TYPE = "application/vnd.wap.mms-message"
POOL_SIZE = 512  # distinct requests (transaction id, recipient, sender) cycled through
SENDER_BASE = 4_916_000_000_000  # +49 160 ... : senders, given in X-MSISDN
RECIPIENT_BASE = 4_917_000_000_000  # +49 170 ... : recipients, one per request
GOAL_RATE = 1_800.0  # accepted/s at 32 connections, durable commits
MM7_GOAL_RATE = 1_600.0  # accepted SubmitReq/s at 32 connections (issue #5)
MM7_USER, MM7_PASSWORD, MM7_SHORTCODE = "bench", "benchpw", "1234"
GOAL_P99_MS = 50.0
GOAL_CONNECTIONS = 32
CLK_TCK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


# Requests and answers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One prepared POST: the encoded m-send-req and what its answer must echo."""

    tid: str
    sender: str
    body: bytes
    headers: dict[str, str] | None = None  # None: an MM1 POST from ``sender``

    def http_headers(self) -> dict[str, str]:
        return self.headers or {"Content-Type": MMS_TYPE, "X-MSISDN": self.sender}


def build_request(tid: str, recipient: str) -> bytes:
    """The codec benchmark's 31 KB three-part m-send-req, to ``recipient`` only, as ``tid``.

    Why reuse it: the codec figures and these figures then describe the same
    message. One recipient keeps the work per request to one recipient row and
    one notification, which is what the goal is stated for.
    """
    pdu = build_send_req()
    headers = {**pdu.headers, "To": [f"{recipient}/TYPE=PLMN"]}
    return mms.encode(replace(pdu, transaction_id=tid, headers=headers))


def build_pool(size: int = POOL_SIZE) -> list[Request]:
    """Distinct requests, encoded once up front so the load generator only sends bytes.

    Why distinct: different transaction ids let every answer be matched to its
    request, and different recipients make the sink's reassembly keys (and
    the server's recipient rows) realistic instead of one hot number.
    """
    return [
        Request(
            tid=f"B{i:06d}",
            sender=f"+{SENDER_BASE + i % 97}",
            body=build_request(f"B{i:06d}", f"+{RECIPIENT_BASE + i}"),
        )
        for i in range(size)
    ]


def build_mm7_pool(size: int = POOL_SIZE) -> list[Request]:
    """SubmitReqs carrying the same 31 KB three-part message, as a VASP posts them."""
    import base64

    from protocol import mm7

    template = build_send_req()
    content = mm7.content_from_parts(
        "multipart/related",
        {"type": "application/smil", "start": str(template.content_type_params.get("start", ""))},
        list(template.parts),
    )
    token = base64.b64encode(f"{MM7_USER}:{MM7_PASSWORD}".encode()).decode()
    pool = []
    for i in range(size):
        tid = f"V{i:06d}"
        req = mm7.SubmitReq(
            transaction_id=tid,
            namespace=mm7.DEFAULT_NAMESPACE,
            mm7_version=None,
            vasp_id=MM7_USER,
            sender_address=mm7.Address("ShortCode", MM7_SHORTCODE),
            to=[mm7.Address("Number", f"+{RECIPIENT_BASE + i}")],
            subject="Bench",
            content=content,
        )
        body, ctype = mm7.encode(req)
        headers = {"Content-Type": ctype, "Authorization": f"Basic {token}"}
        pool.append(Request(tid=tid, sender=MM7_SHORTCODE, body=body, headers=headers))
    return pool


def check_submit_rsp(status: int, content_type: str, body: bytes, tid: str) -> str | None:
    """None if the answer is a SubmitRsp 1000 for ``tid`` with a MessageID."""
    from protocol import mm7

    if status != 200:
        return f"HTTP {status}"
    try:
        rsp = mm7.decode(body, content_type or "text/xml")
    except mm7.Mm7DecodeError as exc:
        return f"undecodable answer ({exc.reason})"
    if not isinstance(rsp, mm7.SubmitRsp):
        return f"answer is {mm7.operation_name(rsp)}"
    if rsp.transaction_id != tid:
        return "answer for another transaction id"
    if rsp.status_code != 1000:
        return f"status {rsp.status_code} {rsp.details or ''}".strip()
    if not rsp.message_id:
        return "1000 without a MessageID"
    return None


def check_conf(status: int, content_type: str, body: bytes, tid: str) -> str | None:
    """None if the answer is an m-send-conf with status Ok for ``tid``, else what is wrong.

    Why so strict: an MMSC answers most failures with HTTP 200 and an error
    status inside the PDU (handsets show those), so counting HTTP 200s would
    count refusals as accepted messages.
    """
    if status != 200:
        return f"HTTP {status}"
    if content_type.split(";")[0].strip() != MMS_TYPE:
        return f"content type {content_type or 'missing'}"
    try:
        conf = mms.decode(body)
    except DecodeError as exc:
        return f"undecodable answer ({exc.reason})"
    if conf.message_type != "m-send-conf":
        return f"answer is {conf.message_type}"
    if conf.transaction_id != tid:
        return "answer for another transaction id"
    result = conf.headers.get("X-Mms-Response-Status")
    if result != "Ok":
        text = conf.headers.get("X-Mms-Response-Text")
        return f"status {result}" + (f" ({text})" if text else "")
    if not conf.headers.get("Message-ID"):
        return "Ok without a Message-ID"
    return None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 1) of already sorted values; nan when empty.

    Why nearest rank: with ~10^4 samples it needs no interpolation, and the
    figure is always a latency some request really had.
    """
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# CPU accounting from /proc -----------------------------------------------------------------


def _stat_fields(text: str) -> list[str]:
    """The fields of a /proc .../stat line after the command name, from the state on
    (proc(5) numbering minus two); the name may contain spaces and ")"."""
    return text[text.rindex(")") + 2 :].split()


def _stat_cpu(path: str) -> float:
    """utime + stime in seconds from a /proc .../stat file (0.0 if it is gone)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = _stat_fields(text)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by a process, all its threads included."""
    return _stat_cpu(f"/proc/{pid}/stat")


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, the fields after the name) of every process in /proc.

    The fields count from the state: [1] is the parent pid, [11:15] utime, stime,
    cutime and cstime in clock ticks (proc(5), minus the first two)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]  # the name may contain spaces
        yield int(entry), name, _stat_fields(text)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the workers of ``[server] workers``, their
    adaptation pools), from the parent pids in /proc."""
    parents = {child: int(fields[1]) for child, _name, fields in processes()}
    found = [pid]
    for candidate in found:  # grows while it is walked: breadth first
        found += [child for child, parent in parents.items() if parent == candidate]
    return found


def tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of ``pid`` and its descendants, of their main threads alone): with
    several workers each runs its own event loop on its main thread."""
    total = loops = 0.0
    for process in descendants(pid):
        total += process_cpu(process)
        loops += thread_cpu(process).get(process, 0.0)
    return total, loops


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread of ``pid`` (thread id -> seconds)."""
    out: dict[int, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            out[int(tid)] = _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
    return out


LOOP_SAMPLE_INTERVAL = 0.002  # seconds between samples of the event-loop threads' state
LOOP_STATES = ("running", "lock", "idle", "other")


def classify_thread_state(stat: str, wchan: str) -> str:
    """A thread's state from its /proc ``stat`` and ``wchan``: "running" (on a CPU or
    waiting for one), "lock" (asleep on a futex: for a Python thread almost always the
    GIL), "idle" (asleep in epoll: an event loop with nothing to do) or "other".

    Why: CPU time alone called a loop thread 60-85% busy "not saturated", while it was
    never idle: it spent most of the rest waiting for a core (bench/README.md, session 10).
    """
    if _stat_fields(stat)[0] == "R":
        return "running"
    if "futex" in wchan:
        return "lock"
    if "epoll" in wchan:
        return "idle"
    return "other"


def thread_state(pid: int, tid: int) -> str:
    with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as fh:
        stat = fh.read()
    with open(f"/proc/{pid}/task/{tid}/wchan", encoding="ascii") as fh:
        wchan = fh.read()
    return classify_thread_state(stat, wchan)


def loop_sampler_main(conn: Connection) -> None:
    """Between a list of pids and the stop marker (None), sample the main thread of each
    (where the server runs its event loop) every LOOP_SAMPLE_INTERVAL; answer with the
    counts per pid and state. A process of its own: a thread of the load generator would
    take the GIL from it."""
    conn.send("ready")
    while True:
        pids = conn.recv()
        if pids is None:
            return
        counts: dict[int, Counter[str]] = {pid: Counter() for pid in pids}
        while not conn.poll(LOOP_SAMPLE_INTERVAL):
            for pid, tally in counts.items():
                with contextlib.suppress(OSError, IndexError):
                    tally[thread_state(pid, pid)] += 1
        conn.recv()  # the stop marker
        conn.send({pid: dict(tally) for pid, tally in counts.items()})


def busiest_loop(counts: dict[int, dict[str, int]]) -> dict[str, float] | None:
    """The state fractions of the thread that ran the most (with several workers: the
    busiest loop; helper processes such as the adaptation pool mostly sleep)."""
    best: dict[str, float] | None = None
    for tally in counts.values():
        total = sum(tally.values())
        if not total:
            continue
        shares = {state: tally.get(state, 0) / total for state in LOOP_STATES}
        if best is None or shares["running"] > best["running"]:
            best = shares
    return best


class LoopSampler:
    """The sampler process (see loop_sampler_main), started once, used per level."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=loop_sampler_main, args=(child,), daemon=True)
        self.process.start()
        # Spawned, it imports this module first: on a busy machine that takes seconds, and
        # a window started before it is up would go unsampled.
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            self.close()
            raise RuntimeError("the event-loop sampler did not start")

    def start(self, pids: list[int]) -> None:
        self._conn.send(pids)

    def stop(self) -> dict[str, float] | None:
        self._conn.send(None)
        if not self._conn.poll(10):
            return None
        counts: dict[int, dict[str, int]] = self._conn.recv()
        return busiest_loop(counts)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()


def postgres_cpu() -> float:
    """CPU seconds of every ``postgres`` process, with the backends that already exited.

    Why all of them: the connection pool opens and closes backends during a
    run, and a backend's CPU vanishes from /proc when it exits; the
    postmaster's children fields (cutime, cstime) keep it once it is reaped.
    The server is shared, so other users' queries count too (normally little).
    """
    total = 0.0
    for _pid, name, fields in processes():
        if name == "postgres":
            total += sum(int(v) for v in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSnapshot:
    """Everything whose CPU use we attribute, at one instant."""

    at: float
    server: float
    server_loop: float
    loadgen: float
    sink: float
    database: float
    machine_busy: float

    @classmethod
    def take(cls, server_pid: int, sink_pid: int, postgres: bool) -> CpuSnapshot:
        server, loops = tree_cpu(server_pid)
        return cls(
            at=time.perf_counter(),
            server=server,
            server_loop=loops,  # the main threads run the event loops
            loadgen=process_cpu(os.getpid()),
            sink=process_cpu(sink_pid),
            database=postgres_cpu() if postgres else 0.0,
            machine_busy=machine_cpu()[0],
        )


@dataclass
class CpuUse:
    """CPU used during a window, in cores (1.0 = one core fully busy)."""

    server: float
    server_loop: float
    loadgen: float
    sink: float
    database: float
    machine: float

    @property
    def other(self) -> float:
        """Processes we did not start (the machine is shared with other work)."""
        ours = self.server + self.loadgen + self.sink + self.database
        return max(self.machine - ours, 0.0)

    @classmethod
    def between(cls, a: CpuSnapshot, b: CpuSnapshot) -> CpuUse:
        wall = max(b.at - a.at, 1e-9)
        return cls(
            server=(b.server - a.server) / wall,
            server_loop=(b.server_loop - a.server_loop) / wall,
            loadgen=(b.loadgen - a.loadgen) / wall,
            sink=(b.sink - a.sink) / wall,
            database=(b.database - a.database) / wall,
            machine=(b.machine_busy - a.machine_busy) / wall,
        )


# The SMS sink (its own process) ---------------------------------------------------------------

SEGMENTS, NOTIFICATIONS, BAD_PUSHES = 0, 1, 2


def sink_main(conn: Connection, counters: Any, raw: bool = True) -> None:
    """Entry point of the sink process: serve sendsms on loopback, report the port, count."""
    asyncio.run(_sink_serve(conn, counters, raw))


async def _sink_serve(conn: Connection, counters: Any, raw: bool) -> None:
    partial: dict[tuple[str, int], dict[int, bytes]] = {}

    def deliver(segments: list[bytes]) -> None:
        try:
            _udh, datagram = wap_push.reassemble(segments)
            _push, pdu = wap_push.decode_mms_push(datagram)
        except DecodeError:
            counters[BAD_PUSHES] += 1
            return
        if pdu.message_type == "m-notification-ind":
            counters[NOTIFICATIONS] += 1
        else:
            counters[BAD_PUSHES] += 1

    def sendsms(query: str) -> bool:
        """One SMS of a kannel sendsms GET; False if the request is malformed."""
        counters[SEGMENTS] += 1
        fields = urllib.parse.parse_qs(query, encoding="latin-1")
        try:
            to = fields["to"][0]
            user_data = fields.get("udh", [""])[0].encode("latin-1")
            user_data += fields["text"][0].encode("latin-1")
            header, _payload = wap_push.parse_user_data(user_data)
        except (KeyError, DecodeError):
            counters[BAD_PUSHES] += 1
            return False
        if header.reference is None:
            deliver([user_data])
        else:
            parts = partial.setdefault((to, header.reference), {})
            parts[header.seq] = user_data
            if len(parts) == header.total:
                del partial[(to, header.reference)]
                deliver([parts[i] for i in sorted(parts)])
        return True

    if raw:

        def handle(target: bytes) -> bool:
            path, _, query = target.partition(b"?")
            return path == b"/cgi-bin/sendsms" and sendsms(query.decode("latin-1"))

        server = await asyncio.get_running_loop().create_server(
            lambda: rawhttp.SendsmsProtocol(handle), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
    else:

        async def sendsms_view(request: web.Request) -> web.Response:
            if not sendsms(request.rel_url.raw_query_string):
                return web.Response(status=400, text="malformed sendsms request")
            return web.Response(status=202, text="0: Accepted for delivery")

        app = web.Application()
        app.router.add_get("/cgi-bin/sendsms", sendsms_view)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
    conn.send(port)
    await asyncio.Event().wait()  # until the parent terminates us


class Sink:
    """The sink process and its shared counters (read without a lock: single writer)."""

    def __init__(self, raw: bool = True) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.counters: Any = ctx.Array("q", 3, lock=False)
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=sink_main, args=(child, self.counters, raw), daemon=True)
        self.process.start()
        if not parent.poll(30):
            self.stop()
            raise RuntimeError("the SMS sink did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}/cgi-bin/sendsms"

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    @property
    def notifications(self) -> int:
        return int(self.counters[NOTIFICATIONS])

    @property
    def segments(self) -> int:
        return int(self.counters[SEGMENTS])

    @property
    def bad(self) -> int:
        return int(self.counters[BAD_PUSHES])

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


# The server under test ------------------------------------------------------------------------


@dataclass
class Server:
    """A running `mmsc serve` subprocess and where it listens."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    urls: dict[str, str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_problems(self) -> list[str]:
        """Warning, error and traceback lines of the server log (the run's health)."""
        text = self.log_path.read_text(errors="replace")
        pattern = re.compile(r"WARNING|ERROR|CRITICAL|Traceback")
        return [line for line in text.splitlines() if pattern.search(line)]


def start_server(
    workdir: Path, sections: dict[str, dict[str, Any]], log_level: str, timeout: float = 60
) -> Server:
    """Start `mmsc serve` with output to a file and wait until both listeners are up.

    Like ``tests.harness.start_server`` it reads the bound ports from the
    server's own start-up lines, but from a file, so no thread in the load
    generator has to drain a pipe while it measures.
    """
    config = write_config(workdir / "mmsc.toml", sections)
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "mmsc.cli", "serve", "-c", str(config)]
    extra = os.environ.get("PYTHONPATH", "")  # kept: lets an experiment add sitecustomize
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--log-level", log_level],
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), extra)))},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, log_path, {})
    deadline = time.monotonic() + timeout
    while len(server.urls) < 3:
        for match in LISTEN_RE.finditer(log_path.read_text(errors="replace")):
            server.urls[match.group(1)] = match.group(2)
        if len(server.urls) >= 3:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("mmsc serve did not start:\n" + log_path.read_text())
        time.sleep(0.05)
    return server


async def scrape_metrics(session: aiohttp.ClientSession, admin_url: str) -> dict[str, float]:
    """The server's Prometheus samples (name with labels -> value), for server-side timings."""
    async with session.get(f"{admin_url}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


HANDLER_SUM = 'mmsc_request_duration_seconds_sum{interface="mm1",operation="m-send-req"}'
HANDLER_COUNT = 'mmsc_request_duration_seconds_count{interface="mm1",operation="m-send-req"}'
MM7_HANDLER_SUM = 'mmsc_request_duration_seconds_sum{interface="mm7",operation="SubmitReq"}'
MM7_HANDLER_COUNT = 'mmsc_request_duration_seconds_count{interface="mm7",operation="SubmitReq"}'
COMMIT_STAGES = ("queue", "barrier", "transaction", "log_sync")  # storage/writer.py


def stage_label(stage: str) -> str:
    return stage.replace("_", " ")


@dataclass(frozen=True)
class CommitPipeline:
    """The server's group-commit batches over the window (mmsc_commit_* metrics)."""

    batches: int
    units_per_batch: float  # writes of every kind: accepts, notification queueing, outcomes
    stage_ms: dict[str, float]  # mean per batch, only the stages the server reported


def commit_pipeline(m0: dict[str, float], m1: dict[str, float]) -> CommitPipeline | None:
    """What the batches committed between two scrapes did; None without any."""

    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    batches = delta("mmsc_commit_batch_units_count")
    if batches <= 0:
        return None
    stage_ms = {}
    for stage in COMMIT_STAGES:
        count = delta(f'mmsc_commit_stage_seconds_count{{stage="{stage}"}}')
        if count > 0:
            total = delta(f'mmsc_commit_stage_seconds_sum{{stage="{stage}"}}')
            stage_ms[stage] = total / count * 1000
    return CommitPipeline(int(batches), delta("mmsc_commit_batch_units_sum") / batches, stage_ms)


# Load generation -------------------------------------------------------------------------------


@dataclass
class LevelResult:
    """What one concurrency level measured inside its window."""

    connections: int
    window: float
    latencies: list[float] = field(default_factory=list)  # seconds, accepted requests only
    errors: Counter[str] = field(default_factory=Counter)
    cpu: CpuUse | None = None
    notifications: int = 0
    backlog_end: int = 0  # accepted so far minus notifications received so far
    handler_ms: float = math.nan  # server-side mean time in the m-send-req handler
    drain_seconds: float | None = None  # after the window, until notifications caught up
    sms: bool = True  # False: --no-sms, the pushes were dropped by the "none" backend
    loop: dict[str, float] | None = None  # the busiest event-loop thread's states (LoopSampler)
    commit: CommitPipeline | None = None  # the server's commit batches in the window

    @property
    def accepted(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.accepted / self.window

    def ms(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000


@dataclass
class Totals:
    """Counts over the whole run (warm-up and stragglers too), to know when pushes caught up."""

    accepted: int = 0


async def run_level(
    url: str,
    connections: int,
    pool: list[Request],
    *,
    warmup: float,
    duration: float,
    totals: Totals,
    snapshot: Callable[[], CpuSnapshot],
    sink: Sink,
    admin_url: str,
    check: Callable[[int, str, bytes, str], str | None] = check_conf,
    raw: bool = True,
    sampler: LoopSampler | None = None,
    loop_pids: Callable[[], list[int]] = list,
) -> LevelResult:
    """Keep ``connections`` requests in flight; measure the ones that finish in the window.

    Why a window on completion time: requests started in the warm-up and
    finishing inside the window are real work done in it, and every worker
    stops starting new requests at the window's end, so the rate is accepted
    answers per second of steady state.
    """
    start = time.perf_counter()
    window_from, window_to = start + warmup, start + warmup + duration
    result = LevelResult(connections, duration)
    counter = itertools.count()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    marks: dict[str, Any] = {}

    def record(t0: float, problem: str | None) -> None:
        """Count an answer that arrived now (``problem`` None: accepted)."""
        t1 = time.perf_counter()
        if problem is None:
            totals.accepted += 1
        if window_from <= t1 < window_to:
            if problem is None:
                result.latencies.append(t1 - t0)
            else:
                result.errors[problem] += 1

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < window_to:
            req = pool[next(counter) % len(pool)]
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=req.body, headers=req.http_headers()) as resp:
                    body = await resp.read()
                    problem = check(
                        resp.status, resp.headers.get("Content-Type", ""), body, req.tid
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"[:100]
            record(t0, problem)

    target = urllib.parse.urlsplit(url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    prepared = [
        rawhttp.PostClient.request(target.path, target.netloc, r.http_headers(), r.body)
        for r in pool
    ]

    async def raw_worker() -> None:
        client = rawhttp.PostClient(host, port)
        try:
            while time.perf_counter() < window_to:
                i = next(counter) % len(pool)
                t0 = time.perf_counter()
                try:
                    answer = await asyncio.wait_for(client.post(prepared[i]), 30)
                    problem = check(answer.status, answer.content_type, answer.body, pool[i].tid)
                except (OSError, TimeoutError, rawhttp.ProtocolFailure) as exc:
                    problem = f"{type(exc).__name__}: {exc}"[:100]
                record(t0, problem)
        finally:
            client.close()

    async def marker(session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(max(window_from - time.perf_counter(), 0))
        marks["cpu0"], marks["n0"] = snapshot(), sink.notifications
        if sampler is not None:
            sampler.start(loop_pids())
        marks["m0"] = await scrape_metrics(session, admin_url)
        await asyncio.sleep(max(window_to - time.perf_counter(), 0))
        marks["cpu1"], marks["n1"] = snapshot(), sink.notifications
        marks["loop"] = sampler.stop() if sampler is not None else None
        marks["backlog"] = totals.accepted - marks["n1"]
        marks["m1"] = await scrape_metrics(session, admin_url)

    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(timeout=timeout) as side,  # metrics: not one of the N
    ):
        workers = [raw_worker() if raw else worker(session) for _ in range(connections)]
        await asyncio.gather(marker(side), *workers)
    result.cpu = CpuUse.between(marks["cpu0"], marks["cpu1"])
    result.loop = marks["loop"]
    result.notifications = marks["n1"] - marks["n0"]
    result.backlog_end = marks["backlog"]
    handler_count, handler_sum = (
        (MM7_HANDLER_COUNT, MM7_HANDLER_SUM)
        if check is check_submit_rsp
        else (HANDLER_COUNT, HANDLER_SUM)
    )
    result.commit = commit_pipeline(marks["m0"], marks["m1"])
    count = marks["m1"].get(handler_count, 0) - marks["m0"].get(handler_count, 0)
    if count > 0:
        total = marks["m1"][handler_sum] - marks["m0"][handler_sum]
        result.handler_ms = total / count * 1000
    return result


async def wait_for_idle(limit: float, ours: Callable[[], float]) -> float:
    """Wait (up to ``limit`` s) until other processes use under 0.15 cores; return their use.

    Why: the machine is shared, and a neighbour's test run on one of only two
    cores halves what this benchmark can show. Waiting for a quiet moment (as
    research/performance.md §1.1 did) makes runs comparable; the figure that
    is returned is printed, so a run that never got a quiet moment says so.
    """
    deadline = time.perf_counter() + limit
    while True:
        busy0, ours0, t0 = machine_cpu()[0], ours(), time.perf_counter()
        await asyncio.sleep(1.0)
        busy1, ours1, t1 = machine_cpu()[0], ours(), time.perf_counter()
        others = max((busy1 - busy0) - (ours1 - ours0), 0.0) / (t1 - t0)
        if others < 0.15 or time.perf_counter() >= deadline:
            return others


async def wait_for_notifications(sink: Sink, totals: Totals, limit: float) -> float | None:
    """Seconds until the sink has one notification per accepted message (None: gave up).

    Why: the next level should not start with the previous level's backlog
    still being pushed, and how long the backlog takes shows whether the
    notification side keeps up with the accept rate.
    """
    start = time.perf_counter()
    while sink.notifications < totals.accepted:
        if time.perf_counter() - start > limit:
            return None
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


# Database setup -------------------------------------------------------------------------------


@dataclass
class Database:
    """Where the server keeps its rows, and whether its commits survive a power loss."""

    url: str
    description: str
    durable: bool
    pg_name: str | None = None


@contextlib.contextmanager
def database(kind: str, synchronous: str, workdir: Path) -> Iterator[Database]:
    """An empty database for one run: a SQLite file, or a throw-away PostgreSQL database."""
    if kind == "sqlite":
        durable = synchronous.upper() == "FULL"
        yield Database(
            f"sqlite+aiosqlite:///{workdir}/mmsc.db",
            f"SQLite (WAL, synchronous={synchronous.upper()}"
            + (": durable)" if durable else ": NOT durable against power loss)"),
            durable,
        )
        return
    from tests.pg import temp_database

    with temp_database() as url:
        settings = asyncio.run(_pg_settings(url))
        commit = settings["synchronous_commit"]
        durable = settings["fsync"] == "on" and commit in ("on", "remote_apply")
        yield Database(
            url,
            f"PostgreSQL {settings['server_version']} (fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}"
            + (": durable)" if durable else ": NOT durable)"),
            durable,
            pg_name=url.rsplit("/", 1)[1],
        )


async def seed_backlog(url: str, count: int) -> None:
    """``count`` messages already notified and waiting to be fetched, each to its own
    recipient: the standing backlog of a live MMSC (handsets fetch within hours, and
    messages wait up to their 7-day expiry), which every scheduler query must not
    read through. Written before the server starts, on the schema it will use."""
    from sqlalchemy import insert

    from storage import db as storage_db
    from storage.models import messages, recipients

    engine = storage_db.create_engine(url)
    now = time.time()
    try:
        await storage_db.upgrade(engine)
        async with engine.begin() as conn:
            for start in range(0, count, 10_000):
                chunk = range(start, min(count, start + 10_000))
                await conn.execute(
                    insert(messages),
                    [
                        {
                            "id": f"backlog{i}",
                            "transaction_id": f"b{i}",
                            "originator": "+15550000001",
                            "origin_interface": "mm1",
                            "mms_version": "1.2",
                            "message_class": "Personal",
                            "content_type": "application/vnd.wap.multipart.related",
                            "size": 31_396,
                            "payload_key": f"backlog{i}",
                            "headers": {},
                            "delivery_report": False,
                            "read_report": False,
                            "sender_visible": True,
                            "created_at": now - 3600,
                            "expires_at": now + 6 * 86400,
                            "state": "accepted",
                        }
                        for i in chunk
                    ],
                )
                await conn.execute(
                    insert(recipients),
                    [
                        {
                            "message_id": f"backlog{i}",
                            "token": f"backlog-token-{i}",
                            "address": f"+1556{i:07d}",
                            "kind": "to",
                            "route": "local",
                            "state": "notified",
                            "attempts": 1,
                            # the next re-notification: after the run, spread over an hour
                            "next_attempt_at": now + 3600 + (i % 3600),
                            "notified_at": now - 3600,
                            "updated_at": now - 3600,
                            "expires_at": now + 6 * 86400,
                        }
                        for i in chunk
                    ],
                )
    finally:
        await engine.dispose()


def _asyncpg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_settings(url: str) -> dict[str, str]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(_asyncpg_url(url))
    try:
        names = ("server_version", "fsync", "synchronous_commit")
        return {n: str(await conn.fetchval(f"SHOW {n}")) for n in names}
    finally:
        await conn.close()


# Report ---------------------------------------------------------------------------------------


def limit_verdict(res: LevelResult) -> str:
    """A one-line reading of the CPU figures: what most likely capped the rate.

    Why the handler time matters: when the server's own mean time in the
    m-send-req handler is most of what the client waits, requests queue
    inside the server; if then no CPU is saturated, a serial stage waiting on
    something (commit round trips, fsync) sets the rate, not raw CPU.
    """
    cpu = res.cpu
    if cpu is None:
        return "unknown"
    if cpu.server_loop >= 0.85:
        return (
            f"server CPU-bound: its event-loop thread was {cpu.server_loop:.0%} busy "
            "(one thread cannot use more than one core)"
        )
    loop = res.loop
    if loop is not None and loop["idle"] < 0.10:
        return (
            f"server event-loop thread saturated: idle only {loop['idle']:.0%} of the time"
            f" (running {loop['running']:.0%}, waiting for the GIL or a lock"
            f" {loop['lock']:.0%}): the work on that one thread caps the rate"
        )
    if cpu.loadgen >= 0.85:
        return f"load generator CPU-bound ({cpu.loadgen:.0%} of a core)"
    if cpu.machine >= 0.9 * CPUS:
        return f"machine saturated ({cpu.machine:.2f} of {CPUS} cores busy)"
    mean_ms = statistics.fmean(res.latencies) * 1000 if res.latencies else math.nan
    if res.handler_ms >= 0.8 * mean_ms:
        verdict = (
            f"no CPU saturated, and {res.handler_ms:.1f} of the {mean_ms:.1f} ms mean latency"
            " is spent inside the server's handler: requests queue behind a serial stage"
            " that waits (database round trips, fsync)"
        )
        if res.commit is not None and res.commit.stage_ms:
            stage, ms = max(res.commit.stage_ms.items(), key=lambda item: item[1])
            total = sum(res.commit.stage_ms.values())
            verdict += (
                f"; the longest commit stage is {stage_label(stage)}"
                f" ({ms:.1f} of {total:.1f} ms per batch)"
            )
        return verdict
    return "no CPU saturated and little time in the server: the load (connections) is too low"


def print_level(res: LevelResult) -> None:
    cpu = res.cpu
    assert cpu is not None
    per_msg = cpu.server / res.rate * 1e6 if res.rate else math.nan
    print(
        f"{res.connections:>5} {res.rate:>10,.0f} {res.ms(0.50):>7.1f} {res.ms(0.95):>7.1f}"
        f" {res.ms(0.99):>7.1f} {max(res.latencies, default=math.nan) * 1000:>7.1f}"
        f" {sum(res.errors.values()):>6} {res.notifications / res.window:>9,.0f}"
        f" {res.backlog_end:>8,} {res.handler_ms:>8.1f}"
    )
    print(
        f"      CPU (cores): server {cpu.server:.2f} (event loop {cpu.server_loop:.2f}, "
        f"other threads {cpu.server - cpu.server_loop:.2f}; {per_msg:,.0f} µs per accepted), "
        f"load generator {cpu.loadgen:.2f}, sink {cpu.sink:.2f}"
        + (f", PostgreSQL (whole server) {cpu.database:.2f}" if cpu.database else "")
        + f", others {cpu.other:.2f}; machine {cpu.machine:.2f} of {CPUS}"
    )
    if res.loop is not None:
        loop = res.loop
        print(
            f"      event-loop thread: running {loop['running']:.0%}, waiting for the GIL or a"
            f" lock {loop['lock']:.0%}, idle {loop['idle']:.0%}, other {loop['other']:.0%}"
            f" (its state sampled every {LOOP_SAMPLE_INTERVAL * 1000:.0f} ms)"
        )
    if res.commit is not None:
        commit = res.commit
        stages = ", ".join(
            f"{stage_label(stage)} {ms:.1f}" for stage, ms in commit.stage_ms.items()
        )
        print(
            f"      commit batches: {commit.batches / res.window:,.0f}/s of"
            f" {commit.units_per_batch:.1f} writes; ms per batch: {stages}"
        )
    print(f"      limit: {limit_verdict(res)}")
    if res.drain_seconds is not None:
        print(f"      notifications caught up {res.drain_seconds:.1f} s after the window")
    elif res.backlog_end and res.sms:
        print("      notifications did NOT catch up within the drain timeout")
    for problem, n in res.errors.most_common(5):
        print(f"      error x{n}: {problem}")


def goal_check(results: list[LevelResult], db: Database, goal_rate: float = GOAL_RATE) -> bool:
    """PASS only for a clean, durable run at 32 connections meeting both figures."""
    at32 = next((r for r in results if r.connections == GOAL_CONNECTIONS), None)
    label = (
        f"GOAL >= {goal_rate:,.0f} accepted/s with durable commits and p99 <= {GOAL_P99_MS:.0f} ms"
        f" at {GOAL_CONNECTIONS} connections:"
    )
    if at32 is None:
        print(f"{label} not measured (add {GOAL_CONNECTIONS} to --levels)")
        return False
    p99 = at32.ms(0.99)
    errors = sum(at32.errors.values())
    reasons = []
    if at32.rate < goal_rate:
        reasons.append(f"rate {at32.rate:,.0f}/s")
    if not p99 <= GOAL_P99_MS:
        reasons.append(f"p99 {p99:.1f} ms")
    if errors:
        reasons.append(f"{errors} errors")
    # "Notifications flowing": an accept rate the notifications cannot follow is a
    # burst the outbox absorbs, not a rate the server sustains.
    notified = at32.notifications / at32.window
    if not at32.sms:
        reasons.append("no SMS sent (--no-sms)")
    elif notified < 0.95 * at32.rate:
        reasons.append(f"notifications fell behind ({notified:,.0f}/s)")
    if not db.durable:
        reasons.append("commits not durable")
    verdict = "PASS" if not reasons else "MISS (" + ", ".join(reasons) + ")"
    print(f"{label} {verdict}  [{at32.rate:,.0f}/s, p99 {p99:.1f} ms]")
    return not reasons


# Main -----------------------------------------------------------------------------------------


async def run_all(
    server: Server,
    sink: Sink,
    db: Database,
    args: argparse.Namespace,
    sampler: LoopSampler | None = None,
) -> list[LevelResult]:
    mm7_mode = args.interface == "mm7"
    pool = build_mm7_pool() if mm7_mode else build_pool()
    url = server.urls["mm7"] + "/mm7" if mm7_mode else server.urls["mm1"] + "/mms"
    check = check_submit_rsp if mm7_mode else check_conf
    totals = Totals()

    # One request and its notification first: a misconfigured run fails here, loudly.
    async with aiohttp.ClientSession() as session:
        req = pool[0]
        async with session.post(url, data=req.body, headers=req.http_headers()) as resp:
            content_type = resp.headers.get("Content-Type", "")
            problem = check(resp.status, content_type, await resp.read(), req.tid)
        if problem:
            raise SystemExit(f"the first request was not accepted: {problem}")
    totals.accepted = 1
    if args.sms and await wait_for_notifications(sink, totals, 30) is None:
        raise SystemExit("the first message's notification never reached the sink")

    def snapshot() -> CpuSnapshot:
        return CpuSnapshot.take(server.pid, sink.pid, db.pg_name is not None)

    results = []
    print(
        f"\n{'conns':>5} {'accepted/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
        f" {'max ms':>7} {'errors':>6} {'notif/s':>9} {'backlog':>8} {'srv ms':>8}"
    )

    def ours() -> float:
        own = tree_cpu(server.pid)[0] + process_cpu(os.getpid()) + process_cpu(sink.pid)
        return own + (postgres_cpu() if db.pg_name is not None else 0.0)

    for connections in args.levels:
        others = await wait_for_idle(args.idle_wait, ours)
        if others >= 0.15:
            print(f"      (other processes still used {others:.2f} cores when this level began)")
        res = await run_level(
            url,
            connections,
            pool,
            warmup=args.warmup,
            duration=args.duration,
            totals=totals,
            snapshot=snapshot,
            sink=sink,
            admin_url=server.urls["admin"],
            check=check,
            raw=not args.aiohttp_ends,
            sampler=sampler,
            loop_pids=lambda: descendants(server.pid),
        )
        res.sms = args.sms
        if args.sms:
            res.drain_seconds = await wait_for_notifications(sink, totals, args.drain_timeout)
        print_level(res)
        results.append(res)
    return results


CLEANUP_STAMP = Path(tempfile.gettempdir()) / "mmsc-bench-cleanup"
RECENTLY_DELETED = 35.0  # seconds; ext4's "recentcy" (30 s, +5 while the block is dirty)


def wait_after_last_cleanup() -> None:
    """Start no sooner than RECENTLY_DELETED after the previous run deleted its files.

    Why: on ext4 without a journal (this VM's root filesystem), creating an inode
    skips every inode freed less than 30 s ago, reading its inode table block to
    tell (fs/ext4/ialloc.c, recently_deleted()). A run started right after another
    one removed its ~30,000 payload files spent most of its payload thread's kernel
    time there, and back-to-back runs got slower and slower (bench/README.md,
    session 6)."""
    try:
        last = float(CLEANUP_STAMP.read_text())
    except (OSError, ValueError):
        return
    pause = last + RECENTLY_DELETED - time.time()
    if 0 < pause <= RECENTLY_DELETED:
        print(f"(waiting {pause:.0f} s: a previous run freed its files's inodes just now)")
        time.sleep(pause)


def machine_reference_us() -> float:
    """How fast this machine runs Python right now: its speed has moved by 3x between
    sessions, so a rate means little without it (the best of five timings)."""
    return min(timeit.repeat(lambda: sum(range(1000)), number=2000, repeat=5)) / 2000 * 1e6


def parse_levels(text: str) -> list[int]:
    levels = [int(v) for v in text.split(",") if v.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="MM1 accept rate and latency of the real server, notifications flowing."
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument(
        "--levels", type=parse_levels, default=[8, 32], help="concurrent connections (8,32)"
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="sqlite: a file in the work directory; postgresql: a throw-away database on"
        " 127.0.0.1:5432 (tests/pg.py, MMSC_TEST_PG overrides)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        choices=("FULL", "NORMAL"),
        default="FULL",
        type=str.upper,
        help="FULL is durable against power loss, NORMAL only against a crash",
    )
    parser.add_argument(
        "--log-level", default="info", help="server log level (info, as deployed by default)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="max seconds to wait for the notification backlog after each level",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=60.0,
        help="max seconds to wait before each level for other processes to go quiet",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, db)")
    parser.add_argument(
        "--interface",
        choices=("mm1", "mm7"),
        default="mm1",
        help="mm1: handsets post m-send-req; mm7: a VASP posts SubmitReq (31 KB content)",
    )
    parser.add_argument(
        "--inline-payload-max",
        type=int,
        default=0,
        help="[storage] inline_payload_max: bodies up to this many bytes are kept in the"
        " database, written with their message (0, the default: every body is a file)",
    )
    parser.add_argument(
        "--no-payload-fsync",
        action="store_true",
        help="do not fsync payload files (NOT durable; shows what the fsyncs cost)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server worker processes ([server] workers; CPU figures add them up)",
    )
    parser.add_argument(
        "--aiohttp-ends",
        action="store_true",
        help="load generator and SMS sink on aiohttp (as before session 6) instead of the"
        " leaner bench/rawhttp.py: the same requests, 0.2-0.3 cores more taken from the server",
    )
    parser.add_argument(
        "--no-sms",
        dest="sms",
        action="store_false",
        help='notify.backend "none": the scheduler and its statements run (each push claimed'
        " and recorded as dropped: its outbox row, its recipient, one event), but no sendsms"
        " request leaves the server (shows what the SMS exchange costs; the goal needs SMS)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="messages already notified and waiting to be fetched when the run starts"
        " (a live MMSC always has some; e.g. 200000)",
    )
    args = parser.parse_args(argv)

    wait_after_last_cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="mm1-bench-"))
    sink = Sink(raw=not args.aiohttp_ends)
    sampler = LoopSampler()
    ok = False
    try:
        with database(args.database, args.sqlite_synchronous, workdir) as db:
            sections: dict[str, dict[str, Any]] = {
                "storage": {
                    "database_url": db.url,
                    "payload_dir": str(workdir / "payloads"),
                    "sqlite_synchronous": args.sqlite_synchronous,
                    "payload_fsync": not args.no_payload_fsync,
                    "inline_payload_max": args.inline_payload_max,
                },
                "server": {"workers": args.workers},
                "mm1": {
                    "listen": "127.0.0.1:0",
                    "public_url": "http://mmsc.bench/mms",
                    "trust_pdu_sender": False,
                    "msisdn_headers": ["X-MSISDN"],
                },
                "admin": {"listen": "127.0.0.1:0"},
                "mm7": {
                    "listen": "127.0.0.1:0",
                    "vasp": [
                        {
                            "name": MM7_USER,
                            "password": MM7_PASSWORD,
                            "shortcodes": [MM7_SHORTCODE],
                        }
                    ],
                },
                "notify": (
                    {"backend": "kannel", "sendsms_url": sink.url}
                    if args.sms
                    else {"backend": "none"}
                ),
            }
            if args.backlog:
                started = time.monotonic()
                asyncio.run(seed_backlog(db.url, args.backlog))
                print(
                    f"backlog: {args.backlog:,} messages waiting to be fetched"
                    f" (written in {time.monotonic() - started:.1f} s)"
                )
            server = start_server(workdir, sections, args.log_level)
            try:
                if args.interface == "mm7":
                    size = len(build_mm7_pool(1)[0].body)
                    print(
                        f"MM7 accept benchmark: `mmsc serve` (pid {server.pid}) on loopback, "
                        f"{size:,}-byte SubmitReq (multipart/related, three-part content) to 1 "
                        "recipient, HTTP Basic VASP account"
                    )
                else:
                    size = len(build_pool(1)[0].body)
                    print(
                        f"MM1 accept benchmark: `mmsc serve` (pid {server.pid}) on loopback, "
                        f"{size:,}-byte three-part m-send-req to 1 recipient, sender in X-MSISDN"
                    )
                bodies = (
                    f"bodies up to {args.inline_payload_max:,} bytes in the database, others"
                    if args.inline_payload_max
                    else "bodies"
                )
                fsynced = "fsynced" if not args.no_payload_fsync else "NOT fsynced"
                print(f"  database: {db.description}; {bodies} as files, {fsynced}")
                print(
                    f"  notifications: kannel backend -> sendsms sink (pid {sink.pid})"
                    if args.sms
                    else "  notifications: none backend (--no-sms): the scheduler claims each"
                    " push and records it dropped; no SMS leaves the server"
                )
                print(
                    f"  {args.warmup:g} s warm-up + {args.duration:g} s measured per level; "
                    f"server log level {args.log_level}; work dir {workdir}"
                )
                print(
                    f"  NOTE: this machine has {CPUS} CPU cores, shared by the server, the load"
                    " generator, the sink"
                    + (" and PostgreSQL" if db.pg_name else "")
                    + " (and anything else running); the figures include that contention."
                )
                print(
                    f"  machine reference: sum(range(1000)) takes {machine_reference_us():.1f} µs"
                    " here (about 9-10 on a fast day, 25-29 on the slow days of session 8)"
                )
                results = asyncio.run(run_all(server, sink, db, args, sampler))
            finally:
                server.stop()
            problems = server.log_problems()
            print(f"\nserver log: {len(problems)} warning/error lines")
            for line in problems[:5]:
                print(f"  {line[:160]}")
            print(
                f"sink: {sink.notifications:,} m-notification-ind in {sink.segments:,} SMS over"
                f" the whole run, {sink.bad} malformed"
            )
            errors = sum(sum(r.errors.values()) for r in results)
            if errors:
                print(f"RUN HAD ERRORS: {errors} requests were not accepted (see above)")
            goal_check(results, db, MM7_GOAL_RATE if args.interface == "mm7" else GOAL_RATE)
            ok = not errors
    finally:
        sampler.close()
        sink.stop()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            CLEANUP_STAMP.write_text(f"{time.time()}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
