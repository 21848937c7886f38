"""Test helpers that run the real pieces: `mmsc serve` in a subprocess, and an SMS gateway sink.

The server binds port 0 and prints where it listens; we read those lines, so
no test guesses ports or sleeps while the server starts. The sink is a real
HTTP server (in a thread with its own event loop) that plays a Kannel-style
sendsms gateway and hands every WAP push it receives to the test through a
queue with a timeout.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from protocol import mms, wap_push
from tests.conftest import ROOT

LISTEN_RE = re.compile(r"mmsc: (\w+) listening on (http://\S+)")
LISTENERS = ("mm1", "mm7", "admin")


@dataclass
class ServerProcess:
    """A running `mmsc serve` with the URLs of its listeners."""

    proc: subprocess.Popen[bytes]
    urls: dict[str, str]
    log: list[str] = field(default_factory=list)
    drained: threading.Event = field(default_factory=threading.Event)  # output read to EOF

    @property
    def mm1(self) -> str:
        return self.urls["mm1"]

    @property
    def mm7(self) -> str:
        return self.urls["mm7"]

    @property
    def admin(self) -> str:
        return self.urls["admin"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML file; a list of dicts becomes an array of tables ([[section.key]])."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        tables: list[tuple[str, dict[str, Any]]] = []
        for key, value in values.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                tables += [(key, v) for v in value]
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, table in tables:
            lines.append(f"[[{section}.{key}]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def start_server(
    workdir: Path, sections: dict[str, dict[str, Any]], env: dict[str, str] | None = None
) -> ServerProcess:
    """Start `mmsc serve` in ``workdir`` with a config built from ``sections``."""
    base: dict[str, dict[str, Any]] = {
        "storage": {
            "database_url": f"sqlite+aiosqlite:///{workdir}/mmsc.db",
            "payload_dir": str(workdir / "payloads"),
        },
        "mm1": {"listen": "127.0.0.1:0", "trust_pdu_sender": False},
        "mm7": {"listen": "127.0.0.1:0"},
        "admin": {"listen": "127.0.0.1:0"},
        "scheduler": {"poll_interval": 0.2},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    config = write_config(workdir / "mmsc.toml", base)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmsc.cli", "serve", "-c", str(config)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(proc, {})
    assert proc.stdout is not None
    while len(server.urls) < len(LISTENERS):
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            raise RuntimeError("mmsc serve exited during start-up:\n" + "".join(server.log))
        server.log.append(line)
        match = LISTEN_RE.search(line)
        if match:
            server.urls[match.group(1)] = match.group(2)
    threading.Thread(target=_drain, args=(proc, server.log, server.drained), daemon=True).start()
    return server


def _drain(proc: subprocess.Popen[bytes], sink: list[str], done: threading.Event) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        sink.append(raw.decode(errors="replace"))
    done.set()


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@dataclass
class Push:
    """One WAP push as the sink received it, reassembled and decoded."""

    to: str
    pdu: mms.MmsPdu
    raw: bytes


class LoopbackServer:
    """An aiohttp application on 127.0.0.1 (a free port) in a thread with its own loop.

    The peers the tests stand up (an SMS gateway, a VASP, a UAProf host) differ only
    in their routes; this is the one place that runs them. Use as a context manager;
    ``base`` is ``http://127.0.0.1:<port>`` once entered.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.base = ""

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.routes(app)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())


class SmsSink(LoopbackServer):
    """A Kannel-style sendsms endpoint on loopback that decodes the pushes it gets."""

    def __init__(self, status: int = 202) -> None:
        super().__init__()
        self.status = status
        self.pushes: queue.Queue[Push] = queue.Queue()
        self.requests: list[str] = []
        self._partial: dict[tuple[str, int], dict[int, bytes]] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/cgi-bin/sendsms", self._handle)

    @property
    def url(self) -> str:
        return f"{self.base}/cgi-bin/sendsms"

    async def _handle(self, request: web.Request) -> web.Response:
        raw_query = request.rel_url.raw_query_string
        self.requests.append(raw_query)
        if self.status >= 300:
            return web.Response(status=self.status, text="refused")
        fields = urllib.parse.parse_qs(raw_query, encoding="latin-1")
        to = fields["to"][0]
        udh_bytes = fields["udh"][0].encode("latin-1")
        text = fields["text"][0].encode("latin-1")
        user_data = udh_bytes + text
        header, _payload = wap_push.parse_user_data(user_data)
        if header.reference is None:
            self._deliver(to, [user_data])
        else:
            parts = self._partial.setdefault((to, header.reference), {})
            parts[header.seq] = user_data
            if len(parts) == header.total:
                del self._partial[(to, header.reference)]
                self._deliver(to, [parts[i] for i in sorted(parts)])
        return web.Response(status=202, text="0: Accepted for delivery")

    def _deliver(self, to: str, segments: list[bytes]) -> None:
        _udh, datagram = wap_push.reassemble(segments)
        _push, pdu = wap_push.decode_mms_push(datagram)
        self.pushes.put(Push(to, pdu, datagram))

    def next(self, timeout: float = 20) -> Push:
        return self.pushes.get(timeout=timeout)
