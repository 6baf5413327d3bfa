"""The names, kinds and labels of every metric redisq's exporters produce (docs/metrics.md).

One table per exporter: the exporters build their metrics from it, and the tests check the
docs and the Grafana dashboard against it, so a name cannot drift in one place only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QUEUE_METRICS", "STANDARD_METRICS", "WORKER_METRICS", "MetricSpec"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric family as exposed (a counter's name ends with ``_total``).

    Attributes:
        name: the exposed name.
        kind: ``"counter"``, ``"gauge"``, ``"histogram"`` or ``"info"``.
        labels: its label names.
        help: what it measures.
        counter: for the worker's totals, the `WorkerMetrics` counter it reads.
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str
    counter: str = ""

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names it exposes (a histogram's buckets, sum and count)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


_QT = ("queue", "task")

#: Per queue and task, counted at the points where `WorkerMetrics` counts the same events.
WORKER_PER_TASK = (
    MetricSpec(
        "redisq_worker_jobs_completed_total",
        "counter",
        _QT,
        "Jobs acknowledged (completed).",
        "completed",
    ),
    MetricSpec(
        "redisq_worker_jobs_retried_total",
        "counter",
        _QT,
        "Failed attempts sent back for a retry.",
        "retried",
    ),
    MetricSpec("redisq_worker_jobs_dead_total", "counter", _QT, "Jobs dead-lettered.", "dead"),
    MetricSpec(
        "redisq_worker_jobs_cancelled_total",
        "counter",
        _QT,
        "Jobs held by the worker that were cancelled meanwhile.",
        "cancelled",
    ),
    MetricSpec(
        "redisq_worker_jobs_rate_limited_total",
        "counter",
        _QT,
        "Jobs whose handler raised RateLimited (released, the queue held back).",
        "rate_limited",
    ),
    MetricSpec(
        "redisq_worker_pickup_seconds",
        "histogram",
        _QT,
        "From a job's due time to its claim (Redis clock).",
    ),
    MetricSpec(
        "redisq_worker_run_seconds",
        "histogram",
        _QT,
        "How long handlers ran.",
    ),
)

#: The worker's totals, read from `Worker.metrics` at each scrape (no labels).
WORKER_TOTALS = (
    MetricSpec(
        "redisq_worker_jobs_claimed_total", "counter", (), "Jobs leased by the worker.", "claimed"
    ),
    MetricSpec(
        "redisq_worker_jobs_snoozed_total", "counter", (), "Jobs put back by Snooze.", "snoozed"
    ),
    MetricSpec(
        "redisq_worker_jobs_released_total",
        "counter",
        (),
        "Leases given back without counting the attempt (stop, buffer trim, RateLimited).",
        "released",
    ),
    MetricSpec(
        "redisq_worker_jobs_timed_out_total",
        "counter",
        (),
        "Runs stopped by their task's timeout.",
        "timed_out",
    ),
    MetricSpec(
        "redisq_worker_leases_lost_total",
        "counter",
        (),
        "Leases a renewal found lost (cancelled, or taken over after expiry).",
        "lease_lost",
    ),
    MetricSpec(
        "redisq_worker_stale_acks_refused_total",
        "counter",
        (),
        "Acks, nacks or releases the store refused: the job had moved on (stale token).",
        "refused",
    ),
    MetricSpec(
        "redisq_worker_outcomes_abandoned_total",
        "counter",
        (),
        "Outcomes given up after the lease ended during an outage (the reaper returns the job).",
        "abandoned",
    ),
    MetricSpec(
        "redisq_worker_jobs_reaped_total",
        "counter",
        (),
        "Expired leases (any worker's) this worker's reaper returned to ready or dead.",
        "reaped",
    ),
    MetricSpec(
        "redisq_worker_claims_rate_limited_total",
        "counter",
        (),
        "Claims a queue's rate limit held back.",
        "claims_held",
    ),
    MetricSpec(
        "redisq_worker_connection_errors_total",
        "counter",
        (),
        "Transient Redis errors the worker's loops saw.",
        "connection_errors",
    ),
    MetricSpec(
        "redisq_worker_errors_total",
        "counter",
        (),
        "Unexpected errors in the worker's loops (logged with a traceback).",
        "errors",
    ),
    MetricSpec("redisq_worker_jobs_running", "gauge", (), "Handlers running now."),
    MetricSpec(
        "redisq_worker_jobs_prefetched",
        "gauge",
        (),
        "Claimed jobs waiting in memory for a free handler.",
    ),
    MetricSpec(
        "redisq_worker_jobs_in_flight",
        "gauge",
        (),
        "Leases the worker holds: prefetched, running, or waiting for their outcome to be sent.",
    ),
    MetricSpec("redisq_worker_concurrency", "gauge", (), "Handlers that may run at once."),
    MetricSpec(
        "redisq_worker_info",
        "info",
        ("worker", "version", "pool"),
        "The worker's name, redisq's version and the pool (value 1).",
    ),
)

WORKER_METRICS = WORKER_PER_TASK + WORKER_TOTALS

_Q = ("queue",)

#: What `redisq metrics` serves, read from Redis at each scrape.
QUEUE_METRICS = (
    MetricSpec(
        "redisq_queue_jobs",
        "gauge",
        ("queue", "state"),
        "Jobs per state (completed, dead and cancelled as kept by retention).",
    ),
    MetricSpec(
        "redisq_queue_oldest_ready_age_seconds",
        "gauge",
        _Q,
        "How long the job the next claim takes has been due (0: none is ready).",
    ),
    MetricSpec("redisq_queue_paused", "gauge", _Q, "1 while the queue is paused."),
    MetricSpec(
        "redisq_queue_rate_limit_per_second",
        "gauge",
        _Q,
        "The queue's rate limit in jobs per second (queues with a limit only).",
    ),
    MetricSpec(
        "redisq_queue_rate_held_seconds",
        "gauge",
        _Q,
        "How long claims are still held back by the rate limit or a RateLimited hold"
        " (queues with a limit or a hold only).",
    ),
    MetricSpec("redisq_queue_jobs_enqueued_total", "counter", _Q, "Jobs created by enqueue, ever."),
    MetricSpec("redisq_queue_jobs_completed_total", "counter", _Q, "Jobs acknowledged, ever."),
    MetricSpec(
        "redisq_queue_jobs_retried_total",
        "counter",
        _Q,
        "Failed attempts sent back to ready or scheduled (by nack or the reaper), ever.",
    ),
    MetricSpec("redisq_queue_jobs_dead_total", "counter", _Q, "Jobs dead-lettered, ever."),
    MetricSpec(
        "redisq_queue_up", "gauge", (), "1 when the last scrape read Redis, 0 when it failed."
    ),
    MetricSpec("redisq_queue_queues", "gauge", (), "Queues the scrape covered."),
    MetricSpec(
        "redisq_queue_scrape_duration_seconds", "gauge", (), "How long the scrape's reads took."
    ),
)

#: What prometheus-client adds to both exporters (process and Python figures).
STANDARD_METRICS = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "python_info",
)
