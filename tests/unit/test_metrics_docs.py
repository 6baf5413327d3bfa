"""The Grafana dashboard and docs/metrics.md name only metrics the exporters produce, and the
docs name every one of them (the tables in redisq.metrics are what the exporters build from;
tests/integration/test_metrics_*.py check that the exporters serve exactly those)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redisq.metrics import QUEUE_METRICS, STANDARD_METRICS, WORKER_METRICS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "redisq.json"
DOCS = ROOT / "docs" / "metrics.md"
#: A metric name of ours, or of prometheus-client's standard collectors.
NAME = re.compile(r"\b(?:redisq|process|python)_[a-z0-9_]+\b")

SAMPLES = {s for spec in WORKER_METRICS + QUEUE_METRICS for s in spec.samples} | set(
    STANDARD_METRICS
)


def _strings(node: Any, key: str) -> Iterator[str]:
    """Every string under `key` anywhere in a JSON document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _strings(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)


def test_the_dashboard_queries_only_metrics_the_exporters_produce() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [*_strings(dashboard, "expr"), *_strings(dashboard["templating"], "query")]
    exprs = list(_strings(dashboard, "expr"))
    assert len(exprs) >= 20
    used: set[str] = set()
    for query in queries:
        unquoted = re.sub(r'"[^"]*"', '""', query)  # label values are not names
        used |= set(NAME.findall(unquoted))
    for expr in exprs:
        assert NAME.search(expr), expr
    assert used, "no metric names found"
    assert used <= SAMPLES, sorted(used - SAMPLES)
    # Both exporters' main figures are on it.
    for name in (
        "redisq_queue_jobs",
        "redisq_queue_oldest_ready_age_seconds",
        "redisq_worker_run_seconds_bucket",
        "redisq_worker_pickup_seconds_bucket",
        "redisq_worker_jobs_completed_total",
    ):
        assert name in used, name


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for expr in _strings(dashboard, "expr"):
        assert set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"} <= variables, expr


def test_the_docs_name_every_metric_and_no_other() -> None:
    text = DOCS.read_text()
    for spec in WORKER_METRICS + QUEUE_METRICS:
        assert f"`{spec.name}`" in text, spec.name
    named = set(NAME.findall(text))
    assert named <= SAMPLES | {s.name for s in WORKER_METRICS + QUEUE_METRICS}, sorted(
        named - SAMPLES
    )
