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


def test_histogram_buckets_cover_what_they_measure() -> None:
    """Bounds an operator can read percentiles from: the ~10 ms of a first notification,
    a delivery up to the default expiry, a retrieval up to the adaptation timeout."""
    from mmsc import metrics
    from mmsc.adapt.service import AdaptationService
    from mmsc.core import Policy

    def bounds(histogram: object) -> list[float]:
        return list(histogram._upper_bounds)  # type: ignore[attr-defined]

    assert bounds(metrics.notification_latency)[0] <= 0.005
    assert bounds(metrics.delivery_latency)[-2] >= Policy().default_expiry  # before +Inf
    timeout = AdaptationService.__init__.__kwdefaults__["timeout"]  # type: ignore[index]
    for histogram in (metrics.request_duration, metrics.adaptation_seconds):
        assert bounds(histogram)[-2] >= timeout


def test_readiness_can_require_the_notification_backend(tmp_path: Path) -> None:
    """An SMSC that cannot be reached: by default the node stays ready (notifications
    wait in the outbox, nothing is lost); with ready_requires_notify it is not."""
    smsc = {"host": "127.0.0.1", "port": 9, "reconnect_min": 0.05, "reconnect_max": 0.05}
    for requires, expected in ((False, 200), (True, 503)):
        workdir = tmp_path / str(requires)
        workdir.mkdir()
        server = start_server(
            workdir,
            {
                "admin": {"ready_requires_notify": requires},
                "notify": {"backend": "smpp"},
                "smpp": smsc,
            },
        )
        try:
            status, body, _ = http("GET", server.admin + "/readyz")
            assert status == expected, body
            if expected == 503:
                assert b"notify" in body
        finally:
            server.stop()
