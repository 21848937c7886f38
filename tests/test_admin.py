"""The admin listener's API behind ``[admin] api_token`` (a real server over loopback)."""

from __future__ import annotations

from pathlib import Path

from tests.harness import http, start_server


def test_the_api_wants_the_token_and_the_health_endpoints_do_not(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"admin": {"api_token": "s3cret-token"}})
    try:
        url = server.admin + "/api/messages/nosuchmessage"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            status, body, head = http("GET", url, headers=headers)
            assert status == 401 and b"unauthorized" in body, headers
            assert head.get("WWW-Authenticate", "").startswith("Bearer")
        status, _body, _ = http("GET", url, headers={"Authorization": "Bearer s3cret-token"})
        assert status == 404  # past the guard: an unknown message
        status, _body, _ = http(
            "PUT",
            server.admin + "/api/subscribers/+15550000001/capabilities",
            b"{}",
            {"Content-Type": "application/json"},
        )
        assert status == 401  # writes too
        for path in ("/healthz", "/readyz", "/metrics"):
            assert http("GET", server.admin + path)[0] == 200, path
    finally:
        server.stop()


def test_without_a_token_the_api_is_open_on_loopback(tmp_path: Path) -> None:
    server = start_server(tmp_path, {})
    try:
        assert http("GET", server.admin + "/api/messages/nosuchmessage")[0] == 404
    finally:
        server.stop()


def test_which_listen_addresses_count_as_loopback() -> None:
    from mmsc.server import _loopback

    assert all(_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "mmsc.example"))
