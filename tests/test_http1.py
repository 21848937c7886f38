"""mmsc/notify/http1.py against a scripted HTTP server on loopback: every way RFC 9112
lets an answer end, kept-alive connections, and the answers it must refuse."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mmsc.notify.http1 import HttpError, Origin

# An answer script: what the server writes for each request on a connection, in order;
# None closes the connection right there (without waiting for another request).
Script = list[bytes | None]


class ScriptedServer:
    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)  # one per accepted connection, in order
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.scripts[self.connections] if self.connections < len(self.scripts) else []
        self.connections += 1
        try:
            for answer in script:
                if answer is None:
                    break
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(answer)
                await writer.drain()
            else:
                await reader.read()  # keep the connection open until the client leaves
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(server: ScriptedServer, body: Callable[[Origin], Awaitable[Any]], **kw: Any) -> Any:
    async def main() -> Any:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        origin = Origin("http", "127.0.0.1", port, max_connections=4, timeout=kw.get("t", 5.0))
        try:
            return await body(origin)
        finally:
            await origin.close()
            srv.close()

    return asyncio.run(main())


OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 24\r\n\r\n0: Accepted for delivery"


def test_keep_alive_reuses_one_connection_and_sends_a_plain_get() -> None:
    server = ScriptedServer([OK, OK, OK])

    async def body(origin: Origin) -> list[Any]:
        return [await origin.get(f"/cgi-bin/sendsms?to=%2B1&n={i}", 200) for i in range(3)]

    replies = run(server, body)
    assert [(r.status, r.body) for r in replies] == [(202, b"0: Accepted for delivery")] * 3
    assert server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("GET /cgi-bin/sendsms?to=%2B1&n=0 HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:" in first and "\r\nUser-Agent: mmsc\r\n" in first


def test_chunked_answer_with_extensions_and_trailers_then_reuse() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\n0: \r\n15\r\nAccepted for delivery\r\n0\r\nX-Trailer: y\r\n\r\n"
    )
    server = ScriptedServer([chunked, OK])

    async def body(origin: Origin) -> list[Any]:
        return [await origin.get("/a", 200), await origin.get("/b", 200)]

    first, second = run(server, body)
    assert (first.status, first.body) == (200, b"0: Accepted for delivery")
    assert second.status == 202 and server.connections == 1


def test_body_beyond_the_limit_is_read_and_dropped() -> None:
    big = b"x" * 100_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    server = ScriptedServer([answer, OK])

    async def body(origin: Origin) -> list[Any]:
        return [await origin.get("/a", 10), await origin.get("/b", 200)]

    first, second = run(server, body)
    assert first.body == b"x" * 10
    assert second.status == 202 and server.connections == 1  # the rest was consumed


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\n\r\nread until the close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 20\r\n\r\nread until the close",
    ],
    ids=["no-length", "connection-close"],
)
def test_answers_that_end_the_connection(answer: bytes) -> None:
    server = ScriptedServer([answer, None], [OK])

    async def body(origin: Origin) -> list[Any]:
        return [await origin.get("/a", 200), await origin.get("/b", 200)]

    first, second = run(server, body)
    assert (first.status, first.body) == (200, b"read until the close")
    assert second.status == 202 and server.connections == 2


def test_interim_answer_is_skipped() -> None:
    server = ScriptedServer([b"HTTP/1.1 100 Continue\r\n\r\n" + OK])
    assert run(server, lambda o: o.get("/a", 200)).status == 202


def test_connection_closed_while_idle_is_retried_once_on_a_new_one() -> None:
    server = ScriptedServer([OK, None], [OK])

    async def body(origin: Origin) -> list[Any]:
        first = await origin.get("/a", 200)
        await asyncio.sleep(0.05)  # the server closes the idle connection meanwhile
        return [first, await origin.get("/b", 200)]

    first, second = run(server, body)
    assert first.status == second.status == 202
    assert server.connections == 2


def test_a_new_connection_closed_before_answering_is_an_error() -> None:
    server = ScriptedServer([None])
    with pytest.raises(ConnectionResetError):
        run(server, lambda o: o.get("/a", 200))


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",  # latin-1 "²": isdigit()
        b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=[
        "not-http",
        "bad-status",
        "bad-header",
        "bad-length",
        "superscript-length",
        "superscript-status",
        "bad-chunk",
        "short",
        "cut",
    ],
)
def test_broken_answers_are_http_errors(answer: bytes) -> None:
    server = ScriptedServer([answer, None])
    with pytest.raises(HttpError):
        run(server, lambda o: o.get("/a", 200))


def test_silent_server_times_out() -> None:
    server = ScriptedServer([])  # reads, never answers
    with pytest.raises(TimeoutError):
        run(server, lambda o: o.get("/a", 200), t=0.3)


def test_credentials_in_the_sendsms_url_become_basic_authorization() -> None:
    from mmsc.notify.kannel import KannelBackend
    from tests.test_notify_backends import push_of

    server = ScriptedServer([OK])

    async def main() -> Any:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        backend = KannelBackend(f"http://gw:s%40cret@127.0.0.1:{port}/cgi-bin/sendsms")
        await backend.start()
        try:
            return await backend.send(push_of())
        finally:
            await backend.close()
            srv.close()

    result = asyncio.run(main())
    assert result.ok, result
    shown = repr(KannelBackend("http://gw:s%40cret@127.0.0.1:1/cgi-bin/sendsms"))
    assert "cret" not in shown and "gw:***@" in shown
    request = server.requests[0].decode()
    assert "\r\nAuthorization: Basic Z3c6c0BjcmV0\r\n" in request  # gw:s@cret
    assert request.startswith("GET /cgi-bin/sendsms?to=")


# -- https ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (the gateway of an operator's private
    CA), made by openssl; (certificate file, key file)."""
    import subprocess

    where = tmp_path_factory.mktemp("tls")
    cert, key = str(where / "gw.pem"), str(where / "gw.key")
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    command += ["-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def run_tls(
    server: ScriptedServer, certificate: tuple[str, str], body: Callable[[int], Awaitable[Any]]
) -> Any:
    import ssl

    async def main() -> Any:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
        try:
            return await body(srv.sockets[0].getsockname()[1])
        finally:
            srv.close()

    return asyncio.run(main())


def test_https_gateway_with_a_private_ca_is_verified_against_the_ca_file(
    certificate: tuple[str, str],
) -> None:
    from mmsc.notify.kannel import KannelBackend
    from tests.test_notify_backends import push_of

    server = ScriptedServer([OK, OK])

    async def body(port: int) -> Any:
        url = f"https://127.0.0.1:{port}/cgi-bin/sendsms"
        backend = KannelBackend(url, ca_file=certificate[0])
        await backend.start()
        try:
            return [await backend.send(push_of()), await backend.send(push_of())]
        finally:
            await backend.close()

    results = run_tls(server, certificate, body)
    assert all(r.ok for r in results), results
    assert server.connections == 1  # kept alive across the two pushes, inside TLS
    assert server.requests[0].startswith(b"GET /cgi-bin/sendsms?to=")


def test_https_gateway_not_trusted_by_the_system_is_refused(
    certificate: tuple[str, str],
) -> None:
    """Without the CA file the certificate does not verify: no request is sent, and
    the push fails as transient (retried), never sent in the clear."""
    from mmsc.notify.kannel import KannelBackend
    from tests.test_notify_backends import push_of

    server = ScriptedServer([OK])

    async def body(port: int) -> Any:
        backend = KannelBackend(f"https://127.0.0.1:{port}/cgi-bin/sendsms")
        await backend.start()
        try:
            return await backend.send(push_of())
        finally:
            await backend.close()

    result = run_tls(server, certificate, body)
    assert not result.ok and not result.permanent, result
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail or "certificate" in result.detail
    assert server.requests == []


def test_ca_file_problems_are_configuration_errors(tmp_path: Any) -> None:
    from mmsc.config import ConfigError
    from mmsc.notify import make_backend

    missing = str(tmp_path / "nope.pem")
    for notify, key in (
        ({"sendsms_url": "https://gw/cgi-bin/sendsms", "sendsms_ca_file": missing}, "ca_file"),
        ({"sendsms_url": "http://gw/cgi-bin/sendsms", "sendsms_ca_file": missing}, "ca_file"),
    ):
        with pytest.raises(ConfigError, match=f"notify.sendsms_{key}"):
            make_backend({"notify": {"backend": "kannel", **notify}})
