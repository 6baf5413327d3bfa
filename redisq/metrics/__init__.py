"""Prometheus metrics (docs/metrics.md); needs ``pip install 'redisq[metrics]'``.

- A worker serves its own at ``/metrics`` with ``Worker(app, metrics_port=9100)`` or
  ``redisq worker module:app --metrics-port 9100``: outcomes per queue and task, pickup and
  run time histograms, leases lost, stale acks refused, jobs reaped, rate limiting, jobs in
  flight and prefetched (`WorkerExporter`).
- ``redisq metrics --port 9200`` serves queue-level gauges read from Redis: depth by state,
  the oldest ready job's age, paused, rate limits (`QueueCollector`, `QueueExporter`). One
  scrape covers every queue, whichever workers run.

This module imports without prometheus-client; its exporters raise `redisq.MissingExtra`
(naming the extra) when it is missing.
"""

from __future__ import annotations

from redisq.metrics._names import (
    QUEUE_METRICS,
    STANDARD_METRICS,
    WORKER_METRICS,
    MetricSpec,
)
from redisq.metrics._queues import QueueCollector, QueueExporter
from redisq.metrics._serve import require_prometheus
from redisq.metrics._worker import PICKUP_BUCKETS, RUN_BUCKETS, WorkerExporter

__all__ = [
    "PICKUP_BUCKETS",
    "QUEUE_METRICS",
    "RUN_BUCKETS",
    "STANDARD_METRICS",
    "WORKER_METRICS",
    "MetricSpec",
    "QueueCollector",
    "QueueExporter",
    "WorkerExporter",
    "require_prometheus",
]
