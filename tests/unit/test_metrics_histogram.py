"""The worker's histograms: per (queue, task), cumulative buckets, `le` inclusive, sum and
count, in prometheus-client's text format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from redisq.metrics._worker import _Histogram


def test_the_worker_histograms_buckets_are_cumulative_with_le_inclusive() -> None:
    histogram = _Histogram("redisq_worker_run_seconds", "runs", (0.5, 1, 2))
    histogram.add(("q", "t"), [4, 0.5, 0.1, 1, 3])  # unsorted, one exactly on a bound
    histogram.add(("q", "t"), [0.7])
    histogram.add(("q", "u"), [1.5])

    class One:
        def collect(self) -> Iterator[Any]:
            yield histogram.family()

    registry = CollectorRegistry()
    registry.register(One())  # type: ignore[arg-type]
    [family] = text_string_to_metric_families(generate_latest(registry).decode())
    t = {(s.name, s.labels.get("le")): s.value for s in family.samples if s.labels["task"] == "t"}
    assert t[("redisq_worker_run_seconds_bucket", "0.5")] == 2  # 0.1 and 0.5 (le: <=)
    assert t[("redisq_worker_run_seconds_bucket", "1.0")] == 4
    assert t[("redisq_worker_run_seconds_bucket", "2.0")] == 4
    assert t[("redisq_worker_run_seconds_bucket", "+Inf")] == 6
    assert t[("redisq_worker_run_seconds_count", None)] == 6
    assert t[("redisq_worker_run_seconds_sum", None)] == pytest.approx(9.3)
    u = [s for s in family.samples if s.labels["task"] == "u" and s.name.endswith("_count")]
    assert u[0].value == 1
