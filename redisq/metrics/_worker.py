"""A worker's Prometheus metrics: `Worker(metrics_port=...)`, `redisq worker --metrics-port`.

What the worker counts anyway (`Worker.metrics`) is read at each scrape: nothing more is
counted for it. Per queue and task, the exporter also keeps the outcome counters (told by the
settler and the keeper where they count the same events in `Worker.metrics`) and two
histograms: pickup time (observed per claim) and run time (observed when a handler returns).
None of this runs when metrics are off: the worker's threads then hold None instead of the
exporter and test for it once per claim or batch of outcomes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from redisq._version import __version__
from redisq.metrics._names import WORKER_PER_TASK, WORKER_TOTALS
from redisq.metrics._serve import Server, require_prometheus
from redisq.worker._state import Entry, Settlement, State

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from redisq.worker import Worker

__all__ = ["PICKUP_BUCKETS", "RUN_BUCKETS", "WorkerExporter"]

#: The histograms' buckets (s): from a millisecond (an idle worker's pickup, a no-op job) to
#: an hour (a backlog; a long job).
PICKUP_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip
RUN_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
    900, 3600,
)  # fmt: skip
#: The task label of a job whose name no task of the app has (the label stays bounded: job
#: names come from whoever enqueues).
UNKNOWN_TASK = "(unknown)"

_Key = tuple[str, str]


def _key(entry: Entry) -> _Key:
    task = entry.task
    return entry.job.queue, UNKNOWN_TASK if task is None else task.name


class WorkerExporter:
    """Serves one worker's metrics while it runs, and takes the observations its threads make.

    Made by `Worker.run` when the worker has a metrics_port; the port is bound at once, so a
    port in use fails the start before anything is claimed.

    Args:
        worker: the worker.
        host: the address to listen on.
        port: the port (0: any free one).

    Raises:
        MissingExtra: prometheus-client is not installed.
        ConfigurationError: the port cannot be bound.
    """

    def __init__(self, worker: Worker, host: str, port: int) -> None:
        prometheus = require_prometheus("metrics_port (Prometheus metrics)")
        self.registry = prometheus.CollectorRegistry()
        self._state: State | None = None
        self._counters: dict[str, Any] = {}
        histograms: dict[str, Any] = {}
        for spec in WORKER_PER_TASK:
            if spec.kind == "counter":
                self._counters[spec.counter] = prometheus.Counter(
                    spec.name, spec.help, spec.labels, registry=self.registry
                )
            else:
                buckets = PICKUP_BUCKETS if "pickup" in spec.name else RUN_BUCKETS
                histograms[spec.name] = prometheus.Histogram(
                    spec.name, spec.help, spec.labels, buckets=buckets, registry=self.registry
                )
        self._pickup = histograms["redisq_worker_pickup_seconds"]
        self._run = histograms["redisq_worker_run_seconds"]
        #: Label children, made on first use (labels() takes a lock and builds a tuple).
        self._children: dict[_Key, tuple[Any, Any]] = {}
        self._counted: dict[tuple[str, str, str], Any] = {}
        self.registry.register(_Totals(worker, self))
        prometheus.ProcessCollector(registry=self.registry)
        prometheus.PlatformCollector(registry=self.registry)
        self._server = Server(self.registry, host, port, "worker metrics (metrics_port)")

    @property
    def url(self) -> str:
        """Where to scrape the worker."""
        return self._server.url

    def bind(self, state: State) -> None:
        """Attach the worker's state, for the gauges (jobs running, prefetched, in flight)."""
        self._state = state

    def close(self) -> None:
        """Stop serving (the worker's run ends)."""
        self._server.close()

    # ---------------------------------------------------------------- observations

    def _histograms(self, key: _Key) -> tuple[Any, Any]:
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self._pickup.labels(*key), self._run.labels(*key))
        return children

    def claimed(self, entries: Iterable[Entry]) -> None:
        """Observe the pickup times of a claim's jobs: from due (run_at) to leased (the
        lease's deadline less its length), both on the Redis clock."""
        for entry in entries:
            job = entry.job
            deadline = job.lease_deadline_ms
            if deadline is None:
                continue
            pickup_ms = deadline - entry.lease_ms - job.run_at_ms
            self._histograms(_key(entry))[0].observe(pickup_ms / 1000 if pickup_ms > 0 else 0.0)

    def timed(self, settle: Callable[[Settlement], None]) -> Callable[[Settlement], None]:
        """Wrap the state's hand-over of outcomes so that each handler's run time is
        observed as it returns (releases of jobs that never started are not runs)."""
        histograms = self._histograms
        now = time.monotonic

        def put(item: Settlement) -> None:
            entry = item if isinstance(item, Entry) else item.entry
            if entry.started:
                histograms(_key(entry))[1].observe(now() - entry.started)
            settle(item)

        return put

    def count(self, counter: str, entries: Sequence[Entry]) -> None:
        """Count an outcome per queue and task (the `Worker.metrics` counter it follows)."""
        family = self._counters.get(counter)
        if family is None:
            return  # counted in Worker.metrics only
        if len(entries) == 1:
            keys: Iterable[tuple[_Key, int]] = ((_key(entries[0]), 1),)
        else:
            keys = Counter(_key(e) for e in entries).items()
        for key, n in keys:
            child = self._counted.get((counter, *key))
            if child is None:
                child = self._counted[(counter, *key)] = family.labels(*key)
            child.inc(n)


class _Totals:
    """The worker's own counters and its gauges, read at each scrape."""

    def __init__(self, worker: Worker, exporter: WorkerExporter) -> None:
        self._worker = worker
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        worker = self._worker
        counters = worker.metrics.counters()
        state = self._exporter._state
        gauges = {
            "redisq_worker_jobs_running": 0 if state is None else state.running,
            "redisq_worker_jobs_prefetched": 0 if state is None else len(state.pending),
            "redisq_worker_jobs_in_flight": 0 if state is None else len(state.entries),
            "redisq_worker_concurrency": worker.concurrency,
        }
        for spec in WORKER_TOTALS:
            if spec.kind == "counter":
                yield CounterMetricFamily(spec.name, spec.help, value=counters[spec.counter])
            elif spec.kind == "gauge":
                yield GaugeMetricFamily(spec.name, spec.help, value=gauges[spec.name])
            else:
                info = {"worker": worker.name, "version": __version__, "pool": worker.pool}
                yield InfoMetricFamily(spec.name.removesuffix("_info"), spec.help, value=info)
