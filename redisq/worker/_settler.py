"""The settler thread: tells the store how each job ended (ack, nack, release).

Acks are batched: whatever accumulated while the previous call was on the wire goes out in
one ack_many (one script call per queue and 1,000 jobs). When Redis is unreachable the
outcomes wait and are sent again with a growing pause; ack, nack and release are idempotent
by token, so a repeat after a lost reply is harmless. An outcome is given up only once the
job's lease has ended (the reaper will hand the job to another run: at-least-once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from redisq._sync.store import Store
from redisq.errors import JobNotFound, LeaseLost
from redisq.models import Job, JobState
from redisq.worker._state import Entry, Outcome, Settlement, State, outcome_of
from redisq.worker._support import Reconnect, WorkerMetrics, is_transient, logger

__all__ = ["Settler"]

#: Most outcomes handled per round (ack_many chunks them by 1,000 per script call anyway).
_BATCH = 1_000


class Settler:
    """Sends outcomes to the store, retrying through outages until the lease ends.

    Args:
        store: the sync store.
        metrics: the worker's counters.
        name: the thread's name.
    """

    def __init__(self, store: Store, metrics: WorkerMetrics, name: str) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._store = store
        self._state: State | None = None
        self._metrics = metrics
        self._queue: queue.SimpleQueue[Settlement] = queue.SimpleQueue()
        #: Queue an outcome (thread-safe, never blocks); an Entry stands for a plain ack.
        self.put: Callable[[Settlement], None] = self._queue.put
        self._waiting: list[Outcome] = []
        self._closing = threading.Event()
        self._give_up_at = float("inf")
        self._reconnect = Reconnect(threading.Event())

    def bind(self, state: State) -> None:
        """Attach the worker's state (entries are forgotten there once settled)."""
        self._state = state

    @property
    def state(self) -> State:
        """The worker's state (see `bind`)."""
        assert self._state is not None
        return self._state

    def close(self, timeout: float) -> None:
        """Send what is queued, retrying for at most `timeout` seconds, then end the thread."""
        self._give_up_at = time.monotonic() + timeout
        self._closing.set()
        self.join(timeout + 5)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    def _main(self) -> None:
        while True:
            try:
                batch = self._take()
                if batch:
                    self._process(batch)
            except Exception:  # never let the settler die: acks depend on it
                logger.exception("the settler failed; it carries on")
                self._metrics.add("errors")
            if self._closing.is_set() and self._queue.empty():
                if not self._waiting:
                    return
                if time.monotonic() >= self._give_up_at:
                    for outcome in self._waiting:
                        self._abandon(outcome, "the worker stopped while Redis was unreachable")
                    self._waiting.clear()
                    return

    def _take(self) -> list[Settlement]:
        batch: list[Settlement] = []
        timeout = 0.05
        if self._waiting:
            now = time.monotonic()
            batch += [o for o in self._waiting if o.not_before <= now]
            self._waiting = [o for o in self._waiting if o.not_before > now]
            if self._waiting:
                timeout = min(timeout, max(0.0, min(o.not_before for o in self._waiting) - now))
        get = self._queue.get_nowait
        if not batch:
            try:
                batch.append(self._queue.get(timeout=timeout))
            except queue.Empty:
                return batch
        try:
            while len(batch) < _BATCH:
                batch.append(get())
        except queue.Empty:
            pass
        return batch

    def _process(self, batch: list[Settlement]) -> None:
        acks: list[Settlement] = []
        others: list[Outcome] = []
        for item in batch:
            if isinstance(item, Entry) or item.kind == "ack":
                acks.append(item)
            else:
                others.append(item)
        if acks:
            self._ack(acks)
        for outcome in others:
            self._one(outcome)

    def _ack(self, acks: list[Settlement]) -> None:
        remaining = acks
        while remaining:
            entries = [_entry(a) for a in remaining]
            try:
                self._store.ack_many(
                    [e.job for e in entries],
                    [None if isinstance(a, Entry) else a.result for a in remaining],
                    snapshots=False,
                    result_ttl_ms=_result_ttls(remaining),
                )
            except (LeaseLost, JobNotFound) as exc:
                # All or nothing per call: drop the refused job and send the others again
                # (acks of another queue's chunk that went through are idempotent).
                bad = next((i for i, e in enumerate(entries) if e.job.id == exc.job_id), None)
                if bad is None:
                    for item in remaining:
                        self._one(outcome_of(item))
                    return
                self._refused(outcome_of(remaining[bad]), exc)
                remaining = remaining[:bad] + remaining[bad + 1 :]
                continue
            except Exception as exc:
                if is_transient(exc):
                    self._retry_later([outcome_of(a) for a in remaining], exc)
                    return
                logger.error("ack_many failed (%s); acknowledging one by one", exc)
                for item in remaining:
                    self._one(outcome_of(item))
                return
            self._reconnect.reset()
            self._acked(entries)
            return

    def _acked(self, entries: list[Entry]) -> None:
        """Acks the store took: count them and forget their entries, all at once."""
        self._metrics.add("completed", len(entries))
        if logger.isEnabledFor(logging.DEBUG):
            for entry in entries:
                logger.debug("job %s/%s completed", *entry.key)
        self.state.settled(entries)

    def _one(self, outcome: Outcome) -> None:
        job = outcome.entry.job
        try:
            if outcome.kind == "ack":
                ttl = None if outcome.entry.task is None else outcome.entry.task.result_ttl_ms
                stored = self._store.ack(job, outcome.result, result_ttl_ms=ttl)
            elif outcome.kind == "nack":
                stored = self._store.nack(
                    job, error=outcome.error, delay_ms=outcome.delay_ms, dead=outcome.dead
                )
            else:
                stored = self._store.release(job, delay_ms=outcome.delay_ms or 0)
        except (LeaseLost, JobNotFound) as exc:
            self._refused(outcome, exc)
        except Exception as exc:
            if is_transient(exc):
                self._retry_later([outcome], exc)
                return
            logger.exception("job %s/%s: the %s failed", *outcome.entry.key, outcome.kind)
            self._metrics.add("errors")
            self._abandon(outcome, f"the store failed: {exc}")
        else:
            self._reconnect.reset()
            self._done(outcome, stored)

    def _done(self, outcome: Outcome, job: Job) -> None:
        entry = outcome.entry
        if outcome.kind == "ack":
            self._metrics.add("completed")
            logger.debug("job %s/%s completed", *entry.key)
        elif outcome.label == "snooze":
            self._metrics.add("snoozed")
            logger.info("job %s/%s snoozed for %s ms", *entry.key, outcome.delay_ms)
        elif outcome.kind == "release":
            self._metrics.add("released")
            logger.info("job %s/%s released (the attempt is not counted)", *entry.key)
        elif job.state is JobState.DEAD:
            self._metrics.add("dead")
            logger.warning(
                "job %s/%s dead after attempt %d of %d (%s)",
                *entry.key,
                job.attempts,
                job.max_attempts,
                outcome.label,
            )
        else:
            self._metrics.add("retried")
            logger.info(
                "job %s/%s failed attempt %d of %d (%s); retry in %s ms",
                *entry.key,
                job.attempts,
                job.max_attempts,
                outcome.label,
                outcome.delay_ms,
            )
        self.state.settled((entry,))

    def _refused(self, outcome: Outcome, exc: Exception) -> None:
        self._metrics.add("refused")
        logger.warning(
            "job %s/%s: the store refused the %s (%s); the job has moved on (cancelled, or"
            " its lease ended and another run took it)",
            *outcome.entry.key,
            outcome.kind,
            exc,
        )
        self.state.settled((outcome.entry,))

    def _retry_later(self, outcomes: list[Outcome], exc: Exception) -> None:
        self._metrics.add("connection_errors")
        delay = self._reconnect.delay()
        now = time.monotonic()
        logger.warning(
            "sending %d outcome(s) failed (%s); retrying in %.2f s", len(outcomes), exc, delay
        )
        for outcome in outcomes:
            if now >= outcome.entry.lease_until:
                self._abandon(outcome, "its lease ended while Redis was unreachable")
            else:
                outcome.not_before = now + delay
                self._waiting.append(outcome)

    def _abandon(self, outcome: Outcome, why: str) -> None:
        self._metrics.add("abandoned")
        logger.warning(
            "job %s/%s: giving up its %s: %s; the reaper will make it ready again",
            *outcome.entry.key,
            outcome.kind,
            why,
        )
        self.state.settled((outcome.entry,))


def _entry(item: Settlement) -> Entry:
    return item if isinstance(item, Entry) else item.entry


def _result_ttls(acks: list[Settlement]) -> list[int | None] | None:
    """Per ack, its task's result_ttl_ms where a result is stored; None when no task sets one
    (the common case, checked without a list per batch)."""
    ttls: list[int | None] | None = None
    for i, item in enumerate(acks):
        if isinstance(item, Entry):
            continue  # no result to store
        task = item.entry.task
        if task is not None and task.result_ttl_ms is not None:
            if ttls is None:
                ttls = [None] * len(acks)
            ttls[i] = task.result_ttl_ms
    return ttls
