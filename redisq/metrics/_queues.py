"""Queue-level gauges read from Redis at each scrape: `redisq metrics`, `QueueCollector`.

A scrape reads the store's registry of queues (one SMEMBERS), then for every queue, in one
pipelined round trip (on Redis Cluster, one call after another): its counts and paused flag,
its monotonic totals, its rate limit, and the job the next claim takes (for the oldest ready
job's age). So it costs 2 + 5 per queue Redis calls whatever the queues hold: no KEYS, no SCAN,
nothing that grows with the jobs. Workers need not be reachable: one scrape covers the fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisq._core.calls import Op, Settings, command, queue_keys, registry, script_call
from redisq._core.queries import _page_parse, _parse_counts, _sorted_names, totals
from redisq._core.rates import parse_rate, rate_state
from redisq._core.validate import check_int, check_name
from redisq.errors import InvalidArgument, RedisqError
from redisq.metrics._names import QUEUE_METRICS
from redisq.metrics._serve import Server, require_prometheus
from redisq.models import JobState, RateState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from redisq._sync.store import Store

__all__ = [
    "MAX_QUEUES",
    "QueueCollector",
    "QueueExporter",
    "QueueStats",
    "list_queues",
    "read_queues",
]

logger = logging.getLogger("redisq.metrics")

#: Most queues one scrape reads by default (the first, by name): bounds a scrape's calls.
MAX_QUEUES = 1_000


@dataclass(frozen=True)
class QueueStats:
    """What a scrape read of one queue."""

    queue: str
    counts: dict[JobState, int]
    totals: dict[str, int]
    paused: bool
    rate: RateState
    #: The due time (run_at, Redis clock ms) of the job the next claim takes; None: none.
    head_due_ms: int | None


def _flag(reply: Any) -> bool:
    return reply in (b"1", "1")


def _server_ms(reply: Any) -> int:
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def _valid(name: str) -> bool:
    try:
        check_name("queue", name)
    except InvalidArgument:
        return False
    return True


def list_queues(s: Settings) -> Op[list[str]]:
    """The names in the store's registry of queues, sorted (names no queue could have, which
    only a foreign writer could have put there, are left out)."""
    names: list[str] = yield command(_sorted_names, "SMEMBERS", registry(s))
    return [name for name in names if _valid(name)]


def read_queues(s: Settings, names: Sequence[str]) -> Op[tuple[list[QueueStats], int]]:
    """Read these queues in one pipelined round trip (one after another on a cluster).

    Returns:
        The queues' stats and the server's time (ms).
    """
    calls: list[Any] = [command(_server_ms, "TIME")]
    for queue in names:
        keys = queue_keys(s.prefix, queue)
        calls += [
            script_call("counts", keys, _parse_counts(queue), now_ms=s.now_arg()),
            totals(s, queue),
            rate_state(s, queue),
            command(_flag, "HGET", keys.meta, "paused"),
            # The job the next claim takes: the ready set merged with the earliest due
            # scheduled job (batch 1), as a claim would promote it.
            script_call(
                "peek", keys, _page_parse(queue), now_ms=s.now_arg(), offset=0, limit=1, batch=1
            ),
        ]
    replies = yield calls
    now_ms = int(s.clock()) if s.clock is not None else replies[0]
    stats = []
    for n, queue in enumerate(names):
        counts, sums, rate, paused, (head, _covered, _more) = replies[1 + 5 * n : 6 + 5 * n]
        due = head[0].run_at_ms if head else None
        stats.append(QueueStats(queue, counts, sums, paused, rate, due))
    return stats, now_ms


def _per_second(spec: str | None) -> float | None:
    if spec is None:
        return None
    parsed = parse_rate("rate_limit", spec)
    return None if parsed is None else parsed.limit * 1000 / parsed.period_ms


class QueueCollector:
    """A prometheus-client collector of queue-level gauges, read from Redis at each scrape.

    Register it on a registry of your own (``registry.register(QueueCollector(store))``), or
    let `QueueExporter` (``redisq metrics``) serve it. A scrape whose reads fail (Redis
    unreachable) reports ``redisq_queue_up 0`` and no queue, and logs a WARNING; a queue whose
    keys cannot be read (a key of another type) is left out with a WARNING, the others reported.

    Args:
        store: the sync store to read (its prefix decides the queues).
        queues: only these queues (default: every queue of the store's registry).
        max_queues: most queues one scrape reads (the first by name); beyond, a WARNING.

    Raises:
        MissingExtra: prometheus-client is not installed.
        InvalidArgument: a queue name or max_queues is invalid.
    """

    def __init__(
        self, store: Store, queues: Sequence[str] | None = None, *, max_queues: int = MAX_QUEUES
    ) -> None:
        require_prometheus("redisq.metrics.QueueCollector")
        if isinstance(queues, str):
            queues = [queues]
        if queues is not None:
            for i, queue in enumerate(queues):
                check_name(f"queues[{i}]", queue)
            if not queues:
                raise InvalidArgument("queues", "None or a non-empty list of names", queues)
        self._store = store
        self._queues = None if queues is None else list(dict.fromkeys(queues))
        self._limit = check_int("max_queues", max_queues, 1, 100_000)
        self._warned = False

    def _read(self) -> tuple[list[QueueStats], int, bool]:
        store = self._store
        s = store.settings
        names = self._queues if self._queues is not None else store._run(list_queues(s))
        left_out = len(names) > self._limit
        names = names[: self._limit]
        try:
            stats, now_ms = store._run(read_queues(s, names))
        except RedisqError:
            # A queue whose keys redisq cannot read (a key of another type, a schema it does
            # not know): read the queues one by one and leave those out, each with a WARNING.
            stats, now_ms = [], 0
            for name in names:
                try:
                    one, now_ms = store._run(read_queues(s, [name]))
                except RedisqError as exc:
                    logger.warning("metrics leave queue %r out: %s", name, exc)
                    continue
                stats += one
        return stats, now_ms, left_out

    def collect(self) -> Iterator[Metric]:
        """Read the queues and yield their metric families (prometheus-client calls this)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        started = time.perf_counter()
        try:
            stats, now_ms, left_out = self._read()
            up = 1
        except (OSError, RedisqError, _redis_errors()) as exc:
            logger.warning("reading the queues for metrics failed: %s: %s", type(exc).__name__, exc)
            stats, now_ms, left_out, up = [], 0, False, 0
        elapsed = time.perf_counter() - started
        if left_out and not self._warned:
            self._warned = True
            logger.warning(
                "metrics cover the first %d queues only (max_queues); name the queues to"
                " scrape, or raise the limit",
                self._limit,
            )
        specs = {spec.name: spec for spec in QUEUE_METRICS}

        def gauge(name: str) -> GaugeMetricFamily:
            spec = specs[name]
            return GaugeMetricFamily(name, spec.help, labels=spec.labels)

        def counter(name: str) -> CounterMetricFamily:
            spec = specs[name]
            return CounterMetricFamily(name, spec.help, labels=spec.labels)

        jobs = gauge("redisq_queue_jobs")
        age = gauge("redisq_queue_oldest_ready_age_seconds")
        paused = gauge("redisq_queue_paused")
        limit = gauge("redisq_queue_rate_limit_per_second")
        held = gauge("redisq_queue_rate_held_seconds")
        sums = {
            name: counter(f"redisq_queue_jobs_{name}_total")
            for name in ("enqueued", "completed", "retried", "dead")
        }
        for row in stats:
            q = row.queue
            for state, n in row.counts.items():
                jobs.add_metric([q, str(state)], n)
            due = row.head_due_ms
            age.add_metric([q], max(0, now_ms - due) / 1000 if due is not None else 0.0)
            paused.add_metric([q], 1 if row.paused else 0)
            rate = row.rate
            per_second = _per_second(rate.limit)
            if per_second is not None:
                limit.add_metric([q], per_second)
            if rate.limit is not None or rate.next_at_ms is not None:
                until = rate.next_at_ms
                held.add_metric([q], max(0, until - now_ms) / 1000 if until else 0.0)
            for name, family in sums.items():
                family.add_metric([q], row.totals.get(name, 0))
        yield from (jobs, age, paused, limit, held, *sums.values())
        yield GaugeMetricFamily("redisq_queue_up", specs["redisq_queue_up"].help, value=up)
        yield GaugeMetricFamily(
            "redisq_queue_queues", specs["redisq_queue_queues"].help, value=len(stats)
        )
        yield GaugeMetricFamily(
            "redisq_queue_scrape_duration_seconds",
            specs["redisq_queue_scrape_duration_seconds"].help,
            value=elapsed,
        )


def _redis_errors() -> type[Exception]:
    import redis.exceptions

    return redis.exceptions.RedisError


class QueueExporter:
    """Serves `QueueCollector`'s gauges at ``/metrics`` from a daemon thread (``redisq
    metrics``), with prometheus-client's process metrics.

    Args:
        store: the sync store to read.
        host: the address to listen on.
        port: the port (0: any free one; see `url`).
        queues: only these queues (default: every queue).
        max_queues: most queues one scrape reads.

    Raises:
        MissingExtra: prometheus-client is not installed.
        ConfigurationError: the port cannot be bound.
    """

    def __init__(
        self,
        store: Store,
        host: str,
        port: int,
        queues: Sequence[str] | None = None,
        *,
        max_queues: int = MAX_QUEUES,
    ) -> None:
        prometheus = require_prometheus("redisq metrics")
        self.registry = prometheus.CollectorRegistry()
        self.registry.register(QueueCollector(store, queues, max_queues=max_queues))
        prometheus.ProcessCollector(registry=self.registry)
        prometheus.PlatformCollector(registry=self.registry)
        self._server = Server(self.registry, host, port, "queue metrics")

    @property
    def url(self) -> str:
        """Where to scrape it."""
        return self._server.url

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.close()
