"""conf/prometheus/mmsc-alerts.yml and conf/grafana/mmsc-dashboard.json use only what
mmsc exports: metric names as Prometheus exposes them (counters with ``_total``,
histograms as ``_bucket``/``_sum``/``_count``), the labels each metric has, and, where
the set is closed, label values the code really writes.

``promtool``, Prometheus's own checker (installed by scripts/test-deps.sh), checks
the rules and every dashboard query as well.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from mmsc import metrics
from mmsc.mm7_outbound import MM7_KINDS
from mmsc.scheduler import PUSH_KINDS
from protocol.mm7_ops import OPERATION_TYPES
from protocol.mms_tables import MESSAGE_TYPE_CODES
from protocol.smpp import COMMAND_STATUS
from storage.repository import OPEN_STATES

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "conf" / "prometheus" / "mmsc-alerts.yml"
DASHBOARD = ROOT / "conf" / "grafana" / "mmsc-dashboard.json"

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
SEVERITIES = frozenset({"critical", "warning", "info"})
# Grafana's own interval variables, replaced before an expression is checked.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")


# --------------------------------------------------------------------------- what mmsc exports


@dataclass(frozen=True)
class Sample:
    """One name Prometheus can select: a metric family's exposed sample name."""

    family: str
    kind: str  # counter | gauge | histogram
    labels: frozenset[str]


def exported_samples() -> dict[str, Sample]:
    families: dict[str, tuple[str, frozenset[str]]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            (described,) = obj.describe()
            families[described.name] = (described.type, frozenset(obj._labelnames))
    # Only what the default registry (the one /metrics serves) really holds.
    from prometheus_client import REGISTRY

    registered = {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("mmsc_")}
    assert registered, "mmsc.metrics registered nothing"
    assert set(families) == set(registered), set(families) ^ set(registered)
    samples: dict[str, Sample] = {}
    for name, (kind, labels) in families.items():
        assert registered[name] == kind
        if kind == "counter":
            samples[name + "_total"] = Sample(name, kind, labels)
        elif kind == "gauge":
            samples[name] = Sample(name, kind, labels)
        elif kind == "histogram":
            samples[name + "_bucket"] = Sample(name, kind, labels | {"le"})
            samples[name + "_sum"] = Sample(name, kind, labels)
            samples[name + "_count"] = Sample(name, kind, labels)
        else:
            raise AssertionError(f"{name}: metric type {kind} not handled here")
    return samples


SAMPLES = exported_samples()

# Label values that form a closed set, from the code that writes them.
_PUSH_RESULTS = frozenset({"sent", "retry", "failed"})  # scheduler.py, mm7_outbound.py _finish
_NOTIFY_RESULTS = _PUSH_RESULTS | {"dropped"}  # scheduler.py: notify.backend "none"
_OPERATIONS = (
    frozenset(MESSAGE_TYPE_CODES)  # MM1: the PDU's message type
    | {t.__name__ for t in OPERATION_TYPES}  # MM7: the SOAP body element
    | {"retrieve", "unknown", "corrupt", "submit", "eaif"}  # mm1.py, mm7.py, eaif.py
)
KNOWN_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("mmsc_messages_received", "interface"): frozenset({"mm1", "mm7"}),
    ("mmsc_messages_delivered", "interface"): frozenset({"mm1", "mm7"}),
    ("mmsc_notifications", "result"): _NOTIFY_RESULTS,
    ("mmsc_notifications", "kind"): frozenset(PUSH_KINDS),
    ("mmsc_mm7_outbound", "result"): _PUSH_RESULTS,
    ("mmsc_mm7_outbound", "operation"): frozenset(MM7_KINDS),
    ("mmsc_queue_depth", "state"): frozenset({*OPEN_STATES, "outbox"}),
    ("mmsc_commit_stage_seconds", "stage"): frozenset(
        {"queue", "barrier", "transaction", "log_sync"}  # storage/writer.py
    ),
    ("mmsc_request_duration_seconds", "interface"): frozenset({"mm1", "mm7", "eaif"}),
    ("mmsc_request_duration_seconds", "operation"): _OPERATIONS,
    ("mmsc_mm7_requests", "operation"): _OPERATIONS,
    ("mmsc_smpp_submits", "result"): frozenset(
        {name for name, _text in COMMAND_STATUS.values()} | {"timeout", "aborted"}
    ),
    ("mmsc_adaptation_cache", "result"): frozenset({"hit", "fits", "shared", "miss"}),
    ("mmsc_adaptation_failures", "reason"): frozenset({"timeout", "error"}),
}


# --------------------------------------------------------------------------- PromQL checks

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"(?<![\w:$])mmsc_[A-Za-z0-9_:]*")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_DURATION = re.compile(r"\[\s*(?:\d+[smhdwy])+(?:\s*:\s*(?:\d+[smhdwy])*)?\s*\]")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _mask(expr: str) -> str:
    """``expr`` with the inside of every string literal blanked (same length)."""
    return _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], expr)


def _balanced(masked: str) -> str | None:
    stack: list[str] = []
    for char in masked:
        if char in _PAIRS:
            stack.append(_PAIRS[char])
        elif char in ")]}" and (not stack or stack.pop() != char):
            return f"unbalanced {char!r}"
    return f"unclosed {stack[-1]!r}" if stack else None


def _close(masked: str, start: int) -> int:
    """The index of the bracket closing the one at ``start``."""
    depth = 0
    for index in range(start, len(masked)):
        if masked[index] in _PAIRS:
            depth += 1
        elif masked[index] in ")]}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced")


def _open(masked: str, end: int) -> int:
    """The index of the bracket opening the one closing at ``end``."""
    depth = 0
    for index in range(end, -1, -1):
        if masked[index] in ")]}":
            depth += 1
        elif masked[index] in _PAIRS:
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced")


def _names(masked: str) -> list[str]:
    return _NAME.findall(masked)


def _allowed_labels(name: str) -> frozenset[str]:
    return SAMPLES[name].labels | TARGET_LABELS


def _call_args(masked: str, function: str) -> Iterator[tuple[int, int]]:
    for match in re.finditer(rf"(?<![\w:])(?:{function})\s*\(", masked):
        start = match.end() - 1
        yield start, _close(masked, start)


def expr_problems(expr: str) -> list[str]:
    """What is wrong with ``expr`` against the metrics mmsc exports (empty: nothing)."""
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace(variable, "5m")
    masked = _mask(expr)
    problem = _balanced(masked)
    if problem:
        return [problem]
    problems: list[str] = []
    if "$" in masked:
        problems.append("a Grafana variable outside a label value")
    names = _names(masked)
    for name in names:
        if name not in SAMPLES:
            problems.append(f"{name}: not a sample name mmsc exports")
    if problems:
        return problems

    # Label matchers: names the metric has; values the code writes, where that is known.
    for match in re.finditer(r"(mmsc_[A-Za-z0-9_:]*)\s*\{", masked):
        name, start = match.group(1), match.end() - 1
        inside = expr[start + 1 : _close(masked, start)]
        pos = 0
        while pos < len(inside.rstrip()):
            matcher = _MATCHER.match(inside, pos)
            if matcher is None:
                problems.append(f"{name}: cannot read the matchers {inside!r}")
                break
            pos = matcher.end()
            label, op, value = matcher.groups()
            if label not in _allowed_labels(name):
                problems.append(f"{name}: no label {label!r}")
                continue
            known = KNOWN_VALUES.get((SAMPLES[name].family, label))
            if known is None:
                continue
            if op in ("=", "!="):
                values = [value]
            elif re.fullmatch(r"[\w-]+(?:\|[\w-]+)*", value):
                values = value.split("|")
            else:
                values = []  # a real regular expression: not checked
            problems += [f"{name}: {label}={v!r} is not written" for v in values if v not in known]

    # Grouping: every label of by/without exists on every metric aggregated; on/ignoring
    # name a label of some metric of the expression.
    for match in re.finditer(r"(?<![\w:])(by|without)\s*\(", masked):
        end = _close(masked, match.end() - 1)
        labels = [x.strip() for x in masked[match.end() : end].split(",") if x.strip()]
        after = end + 1
        while after < len(masked) and masked[after].isspace():
            after += 1
        if after < len(masked) and masked[after] == "(":
            argument = masked[after : _close(masked, after) + 1]
        else:
            before = match.start() - 1
            while before >= 0 and masked[before].isspace():
                before -= 1
            if before < 0 or masked[before] != ")":
                problems.append(f"{match.group(1)} ({', '.join(labels)}): no aggregated argument")
                continue
            argument = masked[_open(masked, before) : before + 1]
        for name in set(_names(argument)):
            problems += [
                f"{match.group(1)} ({label}): {name} has no such label"
                for label in labels
                if label not in _allowed_labels(name)
            ]
    every_label = frozenset().union(*(_allowed_labels(n) for n in names)) if names else None
    for match in re.finditer(r"(?<![\w:])(on|ignoring|group_left|group_right)\s*\(", masked):
        end = _close(masked, match.end() - 1)
        labels = [x.strip() for x in masked[match.end() : end].split(",") if x.strip()]
        if every_label is not None:
            problems += [
                f"{match.group(1)} ({label}): no metric of the expression has it"
                for label in labels
                if label not in every_label
            ]

    # Functions over ranges: a range, and the right kind of metric.
    for function, kinds in (("rate|irate|increase", "counter"), ("deriv|delta", "gauge")):
        for start, end in _call_args(masked, function):
            argument = masked[start : end + 1]
            if not _DURATION.search(argument):
                problems.append(f"{function.split('|')[0]}(...) without a [range]: {argument}")
            for name in _names(argument):
                # A histogram's _bucket, _sum and _count are counters.
                kind = SAMPLES[name].kind
                if kinds == "counter" and kind == "gauge":
                    problems.append(f"{name} is a gauge: rate/increase make no sense")
                if kinds == "gauge" and kind != "gauge":
                    problems.append(f"{name} is a {kind}: deriv/delta want a gauge")

    # histogram_quantile: over _bucket series, keeping le when aggregating.
    for start, end in _call_args(masked, "histogram_quantile"):
        argument = masked[start : end + 1]
        buckets = [n for n in _names(argument) if n.endswith("_bucket")]
        if not buckets:
            problems.append(f"histogram_quantile over no _bucket series: {argument}")
        grouping = re.search(r"(?<![\w:])(by|without)\s*\(([^)]*)\)", argument)
        aggregates = re.search(r"(?<![\w:])(sum|avg|max|min|count)\s*(\(|by|without)", argument)
        if grouping is not None:
            kept = {x.strip() for x in grouping.group(2).split(",")}
            if (grouping.group(1) == "by") != ("le" in kept):
                problems.append(f"histogram_quantile: {grouping.group(0)} loses le")
        elif aggregates is not None:
            problems.append("histogram_quantile: the aggregation drops le")
    return problems


# --------------------------------------------------------------------------- loaded files


def load_rules() -> dict[str, Any]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(rules, dict)
    return rules


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    return dashboard


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = load_dashboard()
    found = [
        (f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target["expr"])
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", text)
            assert inner is not None, f"variable {variable['name']}: {text}"
            found.append((f"variable {variable['name']}", inner.group(1)))
    return found


# --------------------------------------------------------------------------- tests


def test_the_checker_catches_mistakes() -> None:
    good = (
        "histogram_quantile(0.99, sum by (interface, le)"
        ' (rate(mmsc_request_duration_seconds_bucket{interface="mm1"}[5m]))) > 0.05'
        " and on (job) sum by (job)"
        ' (rate(mmsc_notifications_total{result=~"sent|retry"}[5m])) > 1'
    )
    assert expr_problems(good) == []
    bad = {
        "rate(mmsc_notifications[5m])": "not a sample name",  # counter without _total
        "rate(mmsc_notificatons_total[5m])": "not a sample name",
        "mmsc_delivery_latency_seconds > 1": "not a sample name",  # histogram, no suffix
        'mmsc_queue_depth{stat="outbox"}': "no label",
        'mmsc_queue_depth{state="outbx"}': "not written",
        'mmsc_notifications_total{result=~"sent|failure"}': "not written",
        'mmsc_notifications_total{kind="notifications"}': "not written",
        'mmsc_mm7_outbound_total{result="dropped"}': "not written",
        "sum by (result) (rate(mmsc_messages_received_total[5m]))": "no such label",
        "sum(rate(mmsc_smpp_submits_total[5m])) by (bnd)": "no such label",
        "mmsc_smpp_connected == 0 unless on (bnd) mmsc_smpp_in_flight": "no metric",
        "sum(rate(mmsc_notifications_total[5m])": "unclosed",
        "sum(rate(mmsc_notifications_total[5m]))))": "unbalanced",
        "rate(mmsc_notifications_total)": "without a [range]",
        "rate(mmsc_queue_depth[5m])": "is a gauge",
        "deriv(mmsc_notifications_total[5m])": "want a gauge",
        "histogram_quantile(0.9, sum by (job) (rate(mmsc_commit_stage_seconds_bucket[5m])))": (
            "loses le"
        ),
        "histogram_quantile(0.9, sum(rate(mmsc_delivery_latency_seconds_bucket[5m])))": "drops le",
        "histogram_quantile(0.9, rate(mmsc_delivery_latency_seconds_count[5m]))": "no _bucket",
    }
    for expr, expected in bad.items():
        problems = expr_problems(expr)
        assert any(expected in p for p in problems), (expr, problems)


def test_alert_rules_are_complete() -> None:
    rules = load_rules()
    assert set(rules) == {"groups"}
    groups = rules["groups"]
    assert len({g["name"] for g in groups}) == len(groups), "group names must be unique"
    names: list[str] = []
    for group in groups:
        assert set(group) == {"name", "rules"}, group["name"]
        for rule in group["rules"]:
            name = rule.get("alert")
            assert name, f"group {group['name']}: a rule without alert (no recording rules here)"
            names.append(name)
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
            assert re.fullmatch(r"(\d+[smhd])+", rule.get("for", "")), f"{name}: for"
            assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
            annotations = rule.get("annotations", {})
            for key in ("summary", "description"):
                assert isinstance(annotations.get(key), str), f"{name}: {key}"
                assert annotations[key].strip(), f"{name}: {key}"
                assert annotations[key].count("{{") == annotations[key].count("}}"), name
    assert len(set(names)) == len(names), "alert names must be unique"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r.get("alert", "?"))
def test_alert_expression(rule: dict[str, Any]) -> None:
    assert expr_problems(rule["expr"]) == []


def test_alerts_watch_what_an_operator_needs() -> None:
    used = {n for rule in alert_rules() for n in _names(_mask(rule["expr"]))}
    assert {
        "mmsc_messages_received_total",
        "mmsc_notifications_total",
        "mmsc_notification_latency_seconds_bucket",
        "mmsc_delivery_latency_seconds_bucket",
        "mmsc_request_duration_seconds_bucket",
        "mmsc_queue_depth",
        "mmsc_smpp_connected",
        "mmsc_mm7_requests_total",
        "mmsc_commit_stage_seconds_bucket",
    } <= used
    assert any(re.search(r"\bup\{", rule["expr"]) for rule in alert_rules())


def _selected(op: str, value: str, known: frozenset[str]) -> frozenset[str]:
    """The values of ``known`` a label matcher selects."""
    if op in ("=", "!="):
        hit = frozenset({value}) & known
    else:
        hit = frozenset(v for v in known if re.fullmatch(value, v))
    return hit if op in ("=", "=~") else known - hit


def test_notification_alerts_judge_notifications_a_gateway_was_given() -> None:
    """The failure ratios are of m-notification-ind pushes alone (a report to a sender
    is not a recipient left unnotified), and of pushes handed to a gateway: with
    notify.backend "none" every push is dropped, on purpose, and must not page anyone."""
    watched = [r for r in alert_rules() if "mmsc_notifications_total" in r["expr"]]
    assert watched
    for rule in watched:
        expr = rule["expr"]
        selectors = re.findall(r"mmsc_notifications_total\{([^}]*)\}", expr)
        assert len(selectors) == expr.count("mmsc_notifications_total"), rule["alert"]
        for inside in selectors:
            matchers = {
                label: _selected(op, value, KNOWN_VALUES[("mmsc_notifications", label)])
                for label, op, value in (m.groups() for m in _MATCHER.finditer(inside))
            }
            assert matchers.get("kind") == {"notification"}, (rule["alert"], inside)
            assert "dropped" not in matchers.get("result", _NOTIFY_RESULTS), rule["alert"]


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        title = f"panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("title"), title
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title} overlaps panel {cells[x, y]}"
                cells[x, y] = panel["id"]
        if panel["type"] == "row":
            assert not panel.get("targets"), title
            continue
        assert panel["type"] in ("timeseries", "stat"), title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        targets = panel.get("targets", [])
        assert targets, f"{title}: no target"
        assert len({t["refId"] for t in targets}) == len(targets), title
        for target in targets:
            assert target["expr"].strip(), title
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], title


@pytest.mark.parametrize("where,expr", dashboard_exprs(), ids=lambda x: x[:40])
def test_dashboard_expression(where: str, expr: str) -> None:
    assert expr_problems(expr) == [], where


def test_dashboard_covers_the_contract_metrics() -> None:
    used = {n for _where, expr in dashboard_exprs() for n in _names(_mask(expr))}
    families = {SAMPLES[n].family for n in used}
    assert {
        "mmsc_messages_received",
        "mmsc_messages_delivered",
        "mmsc_notifications",
        "mmsc_delivery_latency_seconds",
        "mmsc_notification_latency_seconds",
        "mmsc_request_duration_seconds",
        "mmsc_queue_depth",
        "mmsc_smpp_connected",
        "mmsc_adaptation_seconds",
        "mmsc_commit_stage_seconds",
        "mmsc_mm7_requests",
    } <= families


def test_promtool_accepts_rules_and_dashboard_queries(tmp_path: Path) -> None:
    def check(path: Path) -> None:
        run = subprocess.run(
            ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stdout + run.stderr

    check(RULES)
    # The dashboard's queries as recording rules (JSON is YAML to promtool).
    records = []
    for index, (_where, expr) in enumerate(dashboard_exprs()):
        for variable in GRAFANA_INTERVALS:
            expr = expr.replace(variable, "5m")
        records.append({"record": f"dashboard:query{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.json"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": records}]}))
    check(path)
