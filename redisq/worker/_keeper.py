"""The keeper thread: lease renewals, hard timeouts and the periodic reaper.

It runs apart from the handlers in both pools, so a handler that blocks its event loop or
hogs a CPU does not lose its lease (the GIL is released by blocking calls and switched every
few ms otherwise). Each lease is renewed every lease_ms / 3, in batches: one renew_many call
covers every lease due within the next sixth of its period.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

from redisq._sync.store import Store
from redisq.errors import JobNotFound, LeaseLost
from redisq.models import Job
from redisq.worker._state import Entry, Outcome, Phase, State
from redisq.worker._support import Reconnect, WorkerMetrics, is_transient, logger

__all__ = ["Keeper"]


class Keeper:
    """Renews the leases of every job in flight, enforces timeouts, runs the reaper.

    Args:
        store: the sync store.
        state: the worker's state.
        queues: the queues to reap.
        reaper_interval_ms: mean time between reaps (+-20% jitter, so a fleet spreads out).
        metrics: the worker's counters.
        cancel: stops a handler (the executor's cancel).
        backoff_ms: the retry delay for a timed-out attempt.
        name: the thread's name.
    """

    def __init__(
        self,
        store: Store,
        state: State,
        queues: Sequence[str],
        reaper_interval_ms: int,
        metrics: WorkerMetrics,
        cancel: Callable[[Entry], None],
        backoff_ms: Callable[[Entry], int],
        name: str,
    ) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._store = store
        self._state = state
        self._queues = list(queues)
        self._reap_s = reaper_interval_ms / 1000
        self._metrics = metrics
        self._cancel = cancel
        self._backoff_ms = backoff_ms
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._reconnect = Reconnect(self._halt, cap_s=1.0)
        self._retry_at = 0.0
        # The first reap comes at a random point of the first interval: workers started
        # together do not reap together.
        self._next_reap = time.monotonic() + random.uniform(0, self._reap_s)

    def wake(self) -> None:
        """Look at the entries again now (new jobs were admitted)."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread."""
        self._halt.set()
        self._wake.set()

    def renewed(self, entry: Entry, job: Job, sent_at: float) -> None:
        """Note a successful renewal of `entry` sent at monotonic time `sent_at`."""
        with self._state.lock:
            entry.lease_until = sent_at + entry.lease_ms / 1000
            entry.renew_at = sent_at + entry.lease_ms / 3000

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    def _main(self) -> None:
        while not self._halt.is_set():
            try:
                next_at = self._tick(time.monotonic())
            except Exception:  # never let the keeper die: leases depend on it
                logger.exception("the lease keeper failed; it carries on")
                self._metrics.add("errors")
                next_at = time.monotonic() + 0.5
            timeout = max(0.0, next_at - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()

    def _tick(self, now: float) -> float:
        entries = self._state.snapshot()
        self._timeouts(entries, now)
        next_at = self._next_reap
        if now >= self._retry_at:
            due = [
                e
                for e in entries
                if not e.lost and not e.timed_out and e.renew_at - now <= e.lease_ms / 18000
            ]
            if due:
                self._renew(due, now)
        for entry in self._state.snapshot():
            if not entry.lost and not entry.timed_out:
                next_at = min(next_at, max(entry.renew_at, self._retry_at))
            running = entry.phase is Phase.RUNNING and not entry.timed_out
            if running and entry.timeout_at is not None:
                next_at = min(next_at, entry.timeout_at)
        if now >= self._next_reap:
            self._reap()
            self._next_reap = time.monotonic() + self._reap_s * random.uniform(0.8, 1.2)
            next_at = min(next_at, self._next_reap)
        return next_at

    def _timeouts(self, entries: list[Entry], now: float) -> None:
        for entry in entries:
            if entry.timeout_at is None or entry.timeout_at > now or entry.timed_out:
                continue
            task = entry.task
            with self._state.lock:
                if entry.phase is not Phase.RUNNING:
                    continue
                entry.timed_out = True
            timeout_ms = task.timeout_ms if task is not None else 0
            logger.warning(
                "job %s/%s: timeout after %s ms; the attempt fails and its handler is %s",
                entry.job.queue,
                entry.job.id,
                timeout_ms,
                "cancelled" if task is not None and task.is_async else "left to finish",
            )
            self._metrics.add("timed_out")
            outcome = Outcome(
                entry,
                "nack",
                "timeout",
                error=f"timeout after {timeout_ms} ms",
                delay_ms=self._backoff_ms(entry),
            )
            self._state.decide(entry, outcome)
            self._cancel(entry)

    def _renew(self, due: list[Entry], now: float) -> None:
        try:
            outcomes = self._store.renew_many([e.job for e in due])
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._metrics.add("connection_errors")
            delay = self._reconnect.delay()
            logger.warning("lease renewal failed (%s); retrying in %.2f s", exc, delay)
            self._retry_at = time.monotonic() + delay
            return
        self._reconnect.reset()
        self._retry_at = 0.0
        for entry, result in zip(due, outcomes, strict=True):
            if isinstance(result, Job):
                self.renewed(entry, result, now)
            elif isinstance(result, (LeaseLost, JobNotFound)):
                self._lost(entry, result)
            else:
                logger.error("job %s/%s: renewal failed: %s", *entry.key, result)
                self._lost(entry, result)

    def _lost(self, entry: Entry, exc: Exception) -> None:
        with self._state.lock:
            entry.lost = True
        entry.cancelled.set()
        self._metrics.add("lease_lost")
        logger.warning(
            "job %s/%s: lease lost (%s); the handler is told through ctx.cancelled and its"
            " ack will be refused",
            entry.job.queue,
            entry.job.id,
            exc,
        )

    def _reap(self) -> None:
        for queue in self._queues:
            try:
                count = self._store.reap(queue)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._metrics.add("connection_errors")
                logger.warning("reaping queue %s failed (%s); next time", queue, exc)
                return
            if count:
                logger.info("reaped queue %s: %d expired leases or due jobs moved", queue, count)
