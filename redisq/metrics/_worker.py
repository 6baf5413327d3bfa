"""A worker's Prometheus metrics: `Worker(metrics_port=...)`, `redisq worker --metrics-port`.

What the worker counts anyway (`Worker.metrics`) is read at each scrape: nothing more is
counted for it. Per queue and task, the exporter also keeps the outcome counters (told by the
settler and the keeper where they count the same events in `Worker.metrics`) and two
histograms: pickup time (per claimed job) and run time (per handler run).

The worker's hot path only appends: a claim's list of entries (once per claim), and a handler's
(entry, run time) as it returns (a deque append: thread-safe, no lock, no object beyond the
tuple). The settler's thread folds them into the histograms' buckets with each batch of
outcomes, and so does each scrape. None of this runs when metrics are off: the worker's threads
then hold None instead of the exporter and test for it once per claim or batch of outcomes.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from redisq._version import __version__
from redisq.metrics._names import WORKER_PER_TASK, WORKER_TOTALS
from redisq.metrics._serve import Server, require_prometheus
from redisq.worker._state import Entry, Settlement, State
from redisq.worker._support import logger

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
#: Observations waiting beyond this many are folded by the thread that adds more (a worker
#: whose settler has nothing to count for long: releases only).
_MAX_PENDING = 10_000

_Key = tuple[str, str]
#: No task yet (a job without one has None).
_NO_TASK = object()


def _key(entry: Entry) -> _Key:
    task = entry.task
    return entry.job.queue, UNKNOWN_TASK if task is None else task.name


class _Histogram:
    """Bucket counts and sums per (queue, task), folded from observations (under `lock`)."""

    def __init__(self, spec_name: str, help: str, bounds: Sequence[float]) -> None:
        self.name = spec_name
        self.help = help
        self.bounds = list(bounds)
        #: (queue, task) -> [count per bucket (the last: above every bound)..., sum]
        self.rows: dict[_Key, list[float]] = {}

    def add(self, key: _Key, values: list[float]) -> None:
        """Count `values` (sorted here) into the buckets of `key`."""
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * (len(self.bounds) + 1) + [0.0]
        values.sort()
        below = 0
        for i, bound in enumerate(self.bounds):
            upto = bisect_right(values, bound)  # values <= bound (Prometheus' `le`)
            row[i] += upto - below
            below = upto
        row[-2] += len(values) - below
        row[-1] += sum(values)

    def family(self) -> Metric:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.help, labels=("queue", "task"))
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]  # as prometheus-client writes them
        for key, row in sorted(self.rows.items()):
            cumulative = 0.0
            buckets = []
            for le, n in zip(les, row[:-1], strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            family.add_metric(list(key), buckets, row[-1])
        return family


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
        histograms: dict[str, _Histogram] = {}
        for spec in WORKER_PER_TASK:
            if spec.kind == "counter":
                self._counters[spec.counter] = prometheus.Counter(
                    spec.name, spec.help, spec.labels, registry=self.registry
                )
            else:
                buckets = PICKUP_BUCKETS if "pickup" in spec.name else RUN_BUCKETS
                histograms[spec.name] = _Histogram(spec.name, spec.help, buckets)
        self._pickup = histograms["redisq_worker_pickup_seconds"]
        self._run = histograms["redisq_worker_run_seconds"]
        #: Observations not folded yet: claims' entries; (entry, run time) per run.
        self._claims: deque[Sequence[Entry]] = deque()
        self._runs: deque[tuple[Entry, float]] = deque()
        self._fold_lock = threading.Lock()
        #: Counter children per (counter, queue, task), made on first use.
        self._counted: dict[tuple[str, str, str], Any] = {}
        self.registry.register(_Totals(worker, self))
        prometheus.ProcessCollector(registry=self.registry)
        prometheus.PlatformCollector(registry=self.registry)
        self._server = Server(self.registry, host, port, "worker metrics (metrics_port)")
        logger.info("worker %s: serving metrics at %s", worker.name, self.url)

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

    def claimed(self, entries: Sequence[Entry]) -> None:
        """Take a claim's entries, for their pickup times (folded later)."""
        self._claims.append(entries)
        if len(self._runs) > _MAX_PENDING or len(self._claims) > _MAX_PENDING:
            self.fold()

    def timed(self, settle: Callable[[Settlement], None]) -> Callable[[Settlement], None]:
        """Wrap the state's hand-over of outcomes so that each handler's run time is taken
        as it returns (releases of jobs that never started are not runs)."""
        append = self._runs.append
        now = time.monotonic

        def put(item: Settlement) -> None:
            entry = item if isinstance(item, Entry) else item.entry
            started = entry.started
            if started:
                append((entry, now() - started))
            settle(item)

        return put

    def fold(self) -> None:
        """Fold the observations taken so far into the histograms (thread-safe)."""
        with self._fold_lock:
            claims, runs = self._claims, self._runs
            # Values per (queue, task), then bucketed per key in C (sort, bisect). Jobs come
            # in runs of one task and queue: the key is looked up when they change.
            pickups: dict[_Key, list[float]] = {}
            task: Any = _NO_TASK
            queue = ""
            values: list[float] = []
            while claims:
                for entry in claims.popleft():
                    job = entry.job
                    deadline = job.lease_deadline_ms
                    if deadline is None:
                        continue
                    if entry.task is not task or job.queue != queue:
                        task, queue = entry.task, job.queue
                        values = pickups.setdefault(_key(entry), [])
                    # From due (run_at) to leased (the deadline less the lease), both on the
                    # Redis clock.
                    ms = deadline - entry.lease_ms - job.run_at_ms
                    values.append(ms / 1000 if ms > 0 else 0.0)
            ran: dict[_Key, list[float]] = {}
            task = _NO_TASK
            while runs:
                entry, seconds = runs.popleft()
                if entry.task is not task or entry.job.queue != queue:
                    task, queue = entry.task, entry.job.queue
                    values = ran.setdefault(_key(entry), [])
                values.append(seconds)
            for key, found in pickups.items():
                self._pickup.add(key, found)
            for key, found in ran.items():
                self._run.add(key, found)

    def count(self, counter: str, entries: Sequence[Entry]) -> None:
        """Count an outcome per queue and task (the `Worker.metrics` counter it follows),
        from the settler's or the keeper's thread; fold the observations taken meanwhile."""
        if self._claims or self._runs:
            self.fold()
        family = self._counters.get(counter)
        if family is None:
            return  # counted in Worker.metrics only
        counts: dict[_Key, int] = {}
        task: Any = _NO_TASK
        queue = ""
        key: _Key = ("", "")
        for entry in entries:
            if entry.task is not task or entry.job.queue != queue:
                task, queue = entry.task, entry.job.queue
                key = _key(entry)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            child = self._counted.get((counter, *key))
            if child is None:
                child = self._counted[(counter, *key)] = family.labels(*key)
            child.inc(n)

    def histograms(self) -> list[Metric]:
        """The two histograms' families, with what was observed up to now."""
        self.fold()
        with self._fold_lock:
            return [self._pickup.family(), self._run.family()]


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
        yield from self._exporter.histograms()
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
