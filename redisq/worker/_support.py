"""Small pieces the worker's threads share: metrics, transient errors, failure episodes."""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions

from redisq.errors import LeaseLost

__all__ = [
    "Episode",
    "WorkerMetrics",
    "frozen_heap",
    "is_cancelled",
    "is_transient",
    "logger",
    "stop_signals",
]

#: Every message of the worker runtime goes to this logger.
logger = logging.getLogger("redisq.worker")

_TRANSIENT_REPLIES = ("UNBLOCKED", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY")


def is_transient(exc: BaseException) -> bool:
    """Tell whether an error means "Redis is unreachable for now": retry after a pause.

    Connection errors and timeouts, a server still loading its data, a replica that was a
    primary (READONLY), a blocking command unblocked by a failover, a cluster reconfiguring.
    """
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return True
    if isinstance(
        exc,
        (
            redis.exceptions.ReadOnlyError,
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
        ),
    ):
        return True
    if isinstance(exc, redis.exceptions.ResponseError):
        return str(exc).startswith(_TRANSIENT_REPLIES)
    return isinstance(exc, (ConnectionError, TimeoutError))


def is_cancelled(exc: BaseException) -> bool:
    """Tell whether a refused renewal or outcome means that the job was cancelled."""
    return isinstance(exc, LeaseLost) and exc.state == "cancelled"


#: While a failure lasts, a WARNING summary at most this often (s).
SUMMARY_S = 60.0
#: The longest pause between tries while Redis cannot be reached (s), before jitter. The
#: reliability plan asks every worker to claim again within 5 s of a restore: the pause's
#: +25% jitter makes 3.75 s at most, which leaves time to reconnect and claim (with a 5 s cap,
#: 6.25 s: chaos S8 saw a worker claim again 5.4-5.5 s after the restore). A try against a
#: server that is down is one refused connection, so this costs an outage under 1 try per
#: second per loop.
OUTAGE_CAP_S = 3.0


class Episode:
    """A failure that may last (Redis unreachable, a queue that refuses): when to try again,
    and what to log, so that an operator hears of it without being flooded.

    The first failure of an episode logs a WARNING naming the problem and the error (with its
    traceback when `trace`: an unexpected error); while it lasts, a WARNING summary at most
    every `SUMMARY_S` (60 s) and DEBUG otherwise; the first success after it logs INFO with
    how long it lasted. The pauses between tries grow exponentially from `first_s` to
    `cap_s`, jittered by +-25% so that a fleet does not retry in step.

    Args:
        problem: what fails, as a phrase ("Redis is unreachable", "queue 'b' refuses claims").
        recovery: what is said when it works again ("Redis is reachable again").
        first_s: the first pause.
        cap_s: the longest pause.
        note: said once, after the first failure ("the worker goes on with its other queues").
        transient_cap_s: the longest pause after an error that means Redis is unreachable
            for now (`is_transient`), when that must be shorter than `cap_s`: a loop that backs
            off far on unexpected errors still comes back soon after an outage.
    """

    def __init__(
        self,
        problem: str,
        recovery: str,
        *,
        first_s: float,
        cap_s: float,
        note: str = "",
        transient_cap_s: float | None = None,
    ) -> None:
        self.problem = problem
        self.recovery = recovery
        self.note = note
        self._first = first_s
        self._cap = cap_s
        self._transient_cap = transient_cap_s
        self._next = first_s
        #: Failures in the current episode (0: none under way).
        self.failures = 0
        #: When the episode started, the next try is due, and the next summary (monotonic).
        self.started = 0.0
        self.retry_at = 0.0
        self._summary_at = 0.0

    def __repr__(self) -> str:
        return f"<Episode {self.problem!r} failures={self.failures}>"

    @property
    def active(self) -> bool:
        """Tell whether an episode is under way (the last try failed)."""
        return self.failures > 0

    def waiting(self, now: float) -> bool:
        """Tell whether an episode is under way and its next try is not due at `now`."""
        return self.failures > 0 and now < self.retry_at

    def failed(self, error: BaseException, *, trace: bool = False) -> float:
        """Count a failure, log it as the episode calls for; return the pause before the
        next try (also kept as `retry_at`)."""
        now = time.monotonic()
        self.failures += 1
        pause = self._next
        if self._transient_cap is not None and is_transient(error):
            pause = min(pause, self._transient_cap)
        pause *= random.uniform(0.75, 1.25)
        self._next = min(self._next * 2, self._cap)
        self.retry_at = now + pause
        what = f"{type(error).__name__}: {error}"
        if self.failures == 1:
            self.started = now
            self._summary_at = now + SUMMARY_S
            note = f"; {self.note}" if self.note else ""
            logger.warning(
                "%s (%s)%s; trying again in %.1f s",
                self.problem,
                what,
                note,
                pause,
                exc_info=error if trace else None,
            )
        elif now >= self._summary_at:
            self._summary_at = now + SUMMARY_S
            logger.warning(
                "%s for %.0f s now (%d failures; the last: %s); trying again in %.1f s",
                self.problem,
                now - self.started,
                self.failures,
                what,
                pause,
            )
        else:
            logger.debug("%s (%s); trying again in %.1f s", self.problem, what, pause)
        return pause

    def succeeded(self) -> None:
        """The last try worked: end the episode (logging INFO when one was under way)."""
        if self.failures:
            logger.info(
                "%s after %.1f s (%d failures)",
                self.recovery,
                time.monotonic() - self.started,
                self.failures,
            )
            self.failures = 0
        self._next = self._first
        self.retry_at = 0.0


_COUNTERS = (
    "claimed",
    "completed",
    "retried",
    "dead",
    "snoozed",
    "released",
    "timed_out",
    "cancelled",
    "lease_lost",
    "refused",
    "abandoned",
    "rate_limited",
    "claims_held",
    "reaped",
    "connection_errors",
    "errors",
)


@dataclass
class WorkerMetrics:
    """What a worker counted since it started; read them on `Worker.metrics`.

    Attributes:
        claimed: jobs leased by this worker.
        completed: jobs acknowledged (completed).
        retried: failed attempts sent back for a retry (scheduled or ready).
        dead: jobs dead-lettered by this worker.
        snoozed: jobs put back by a Snooze signal.
        released: leases given back at stop (attempt not counted).
        timed_out: runs stopped by the task's timeout_ms.
        cancelled: jobs this worker held when they were cancelled (their handler stopped,
            or never started), as the cancel watch, a renewal or a refused outcome told it
            (counted once per job).
        lease_lost: leases the renewal found lost (cancelled, or taken over).
        refused: acks, nacks or releases the store refused (LeaseLost): the job had moved on.
        abandoned: outcomes given up after the lease ran out during an outage.
        rate_limited: jobs whose handler raised `RateLimited` (released, also counted there).
        claims_held: claims that a queue's rate limit held back (`Claimed.held_ms`).
        reaped: expired leases this worker's reaper returned to ready (or dead).
        connection_errors: transient Redis errors seen by the loops.
        errors: unexpected errors in the loops (logged with their traceback).
        pickup_ms: the latest pickup latencies (ms from due to claimed, Redis clock).
    """

    claimed: int = 0
    completed: int = 0
    retried: int = 0
    dead: int = 0
    snoozed: int = 0
    released: int = 0
    timed_out: int = 0
    cancelled: int = 0
    lease_lost: int = 0
    refused: int = 0
    abandoned: int = 0
    rate_limited: int = 0
    claims_held: int = 0
    reaped: int = 0
    connection_errors: int = 0
    errors: int = 0
    pickup_ms: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, counter: str, n: int = 1) -> None:
        """Add `n` to a counter (thread-safe)."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def pickups(self, values: list[int]) -> None:
        """Record pickup latencies (thread-safe)."""
        with self._lock:
            self.pickup_ms.extend(values)

    def claimed_batch(self, count: int, pickups: list[int]) -> None:
        """Count a claim's jobs and record their pickup latencies (thread-safe)."""
        with self._lock:
            self.claimed += count
            self.pickup_ms.extend(pickups)

    def pickup_percentile(self, q: float) -> float | None:
        """Return a pickup latency percentile (q in [0, 1]) over the recorded ones, or None."""
        with self._lock:
            ordered = sorted(self.pickup_ms)
        if not ordered:
            return None
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    def counters(self) -> dict[str, int]:
        """Return the counters as a plain dict (read at once, without the percentiles)."""
        with self._lock:
            return {name: getattr(self, name) for name in _COUNTERS}

    def snapshot(self) -> dict[str, Any]:
        """Return the counters and pickup percentiles as a plain dict."""
        values: dict[str, Any] = self.counters()
        values["pickup_p50_ms"] = self.pickup_percentile(0.5)
        values["pickup_p99_ms"] = self.pickup_percentile(0.99)
        return values


@contextlib.contextmanager
def stop_signals(enabled: bool, on_signal: Callable[[int], None]) -> Iterator[None]:
    """Call `on_signal(signum)` on SIGTERM and SIGINT while the block runs, then restore.

    Python only lets the main thread install handlers: elsewhere (or when not `enabled`) the
    block runs without them and the caller's own stop() is the way to end it.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: on_signal(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_freeze_lock = threading.Lock()
#: Workers running inside `frozen_heap` now, and whether the first of them froze the heap.
_freeze_users = 0
_froze = False


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's passes while the block
    runs (`gc.freeze`); the last worker to leave unfreezes them.

    A worker process holds its application's modules, functions and data from start-up: tens
    of thousands of objects that stay alive, which every full collection would walk again
    while jobs flow (about 20 ms each on a small machine, a pause for every thread of the
    process). Frozen, they are skipped (garbage among them waits for the unfreeze: no
    collection runs first, which could take long in a big process). A heap someone else froze
    is left as it is.
    """
    global _freeze_users, _froze
    with _freeze_lock:
        if _freeze_users == 0 and gc.get_freeze_count() == 0:
            gc.freeze()
            _froze = True
        _freeze_users += 1
    try:
        yield
    finally:
        with _freeze_lock:
            _freeze_users -= 1
            if _freeze_users == 0 and _froze:
                _froze = False
                gc.unfreeze()
