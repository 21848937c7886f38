"""Prometheus metrics. The names and labels of DESIGN.md §3 are part of the contract.

With several workers (mmsc/workers.py) prometheus-client's multiprocess mode sums
counters and histograms over the workers; each gauge says how it is combined:
the queue depths are the database's (every worker reads the same, the most recent
is shown), SMPP gauges add up over the live workers (each has its own binds).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Accepted -> first notification sent: about 10 ms on a quiet node, minutes to hours
# while an SMSC is down.
NOTIFICATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
NOTIFICATION_BUCKETS += (5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
DAY = 86400
# Accepted -> retrieved: seconds for a handset that fetches at once, up to the expiry
# (7 days by default, [mm1] max_expiry beyond).
DELIVERY_BUCKETS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, DAY)
DELIVERY_BUCKETS += (2 * DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY)
# Requests: sub-millisecond answers up to a retrieval that waits for an adaptation
# ([adapt] timeout, 10 s). prometheus_client scans the bounds in order, so the common
# fast answers cost no more for the wide end.
REQUEST_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
REQUEST_BUCKETS += (0.25, 0.5, 1, 2.5, 5, 10, 30)

messages_received = Counter(
    "mmsc_messages_received", "Messages accepted (after commit)", ["interface"]
)
messages_delivered = Counter(
    "mmsc_messages_delivered", "Messages retrieved by a recipient", ["interface"]
)
notifications = Counter(
    "mmsc_notifications",
    "Pushes handed to the notification backend, by kind (notification, delivery-ind,"
    " read-orig-ind) and result (sent, retry, failed, dropped: no backend sends them)",
    ["kind", "result"],
)
delivery_latency = Histogram(
    "mmsc_delivery_latency_seconds",
    "Accepted -> retrieved by the recipient",
    buckets=DELIVERY_BUCKETS,
)
notification_latency = Histogram(
    "mmsc_notification_latency_seconds",
    "Accepted -> the SMS gateway accepted the first notification push",
    buckets=NOTIFICATION_BUCKETS,
)
request_duration = Histogram(
    "mmsc_request_duration_seconds",
    "Time to answer a request",
    ["interface", "operation"],
    buckets=REQUEST_BUCKETS,
)
queue_depth = Gauge(
    "mmsc_queue_depth",
    "Open recipients by state, and pushes waiting",
    ["state"],
    multiprocess_mode="mostrecent",
)
smpp_connected = Gauge(
    "mmsc_smpp_connected", "SMPP binds that are bound", ["bind"], multiprocess_mode="livesum"
)
# Where an accepted message's wait goes, per commit batch; the stages are those of
# storage/writer.py BatchObserver.
commit_stage_seconds = Histogram(
    "mmsc_commit_stage_seconds",
    "Seconds a group-commit batch spent in each stage",
    ["stage"],
    buckets=REQUEST_BUCKETS,
)
commit_batch_units = Histogram(
    "mmsc_commit_batch_units",
    "Writes (accepts, state changes) committed together in one group-commit batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def observe_commit(units: int, stages: dict[str, float]) -> None:
    """The writer's BatchObserver: one batch's size and stage times (once per batch, not
    per message, so labels() is looked up each time)."""
    commit_batch_units.observe(units)
    for stage, seconds in stages.items():
        commit_stage_seconds.labels(stage).observe(seconds)


adaptation_seconds = Histogram(
    "mmsc_adaptation_seconds", "Time to adapt a message to a device", buckets=REQUEST_BUCKETS
)
events_total = Counter(
    "mmsc_events", "Message and recipient state changes, as written to the events table", ["event"]
)
smpp_submits = Counter(
    "mmsc_smpp_submits",
    "submit_sm answered (by command_status name), timed out or aborted, per bind",
    ["bind", "result"],
)
smpp_in_flight = Gauge(
    "mmsc_smpp_in_flight",
    "submit_sm sent and not yet answered",
    ["bind"],
    multiprocess_mode="livesum",
)
smpp_submit_seconds = Histogram(
    "mmsc_smpp_submit_response_seconds",
    "submit_sm -> submit_sm_resp",
    ["bind"],
    buckets=REQUEST_BUCKETS,
)
smpp_receipts = Counter(
    "mmsc_smpp_receipts", "deliver_sm received, by receipt state (or mo-ignored)", ["bind", "state"]
)
mm7_requests = Counter(
    "mmsc_mm7_requests",
    "MM7 requests from VASPs, by operation and the TS 23.140 status answered",
    ["operation", "status"],
)
mm7_outbound = Counter(
    "mmsc_mm7_outbound",
    "MM7 requests sent to VASPs (DeliverReq, DeliveryReportReq, ReadReplyReq), by result",
    ["operation", "result"],
)
adaptation_cache = Counter(
    "mmsc_adaptation_cache", "Adapted-variant lookups: hit, miss (adapted now), shared", ["result"]
)
adaptation_failures = Counter(
    "mmsc_adaptation_failures", "Adaptations abandoned (original served)", ["reason"]
)
adaptation_bytes = Counter(
    "mmsc_adaptation_bytes", "Message bytes into and out of adaptation", ["direction"]
)
adaptation_parts = Counter(
    "mmsc_adaptation_parts", "Parts converted or dropped by adaptation", ["action"]
)
