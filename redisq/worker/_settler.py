"""The settler thread: tells the store how each job ended (ack, nack, release).

Acks are batched: whatever accumulated while the previous call was on the wire goes out in
one ack_many (one script call per queue and 1,000 jobs). When Redis is unreachable the
outcomes wait and are sent again with a growing pause; ack, nack and release are idempotent
by token, so a repeat after a lost reply is harmless. An outcome is given up only once the
job's lease has ended (the reaper will hand the job to another run: at-least-once).

A queue that refuses outcomes (it migrates, is denied, or on Redis Cluster its master is down)
holds up only its own outcomes: acks are sent per queue, and that queue's outcomes wait for
its next try while the other queues' go through. Each such episode logs a WARNING once (then
a summary at most every minute while it lasts) and INFO when it ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redisq._sync.store import Store, queue_refusal
from redisq.errors import JobNotFound, LeaseLost
from redisq.models import Job, JobState
from redisq.worker._state import Entry, Outcome, Settlement, State, outcome_of
from redisq.worker._support import (
    OUTAGE_CAP_S,
    Episode,
    WorkerMetrics,
    is_cancelled,
    is_transient,
    logger,
)

if TYPE_CHECKING:
    from redisq.metrics import WorkerExporter

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
        self._cluster = store.settings.cluster
        #: Redis cannot be reached: every outcome waits.
        self._outage = Episode(
            "sending outcome(s) failed: Redis is unreachable",
            "sending outcome(s) works again",
            first_s=0.1,
            cap_s=OUTAGE_CAP_S,
        )
        #: Queues that refuse outcomes: theirs wait.
        self._refusing: dict[str, Episode] = {}
        #: The Prometheus exporter (`--metrics-port`), told what is counted per job; None
        #: (metrics off) costs one test per batch of outcomes.
        self.observer: WorkerExporter | None = None

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
        now = time.monotonic()
        if self._outage.waiting(now):
            self._defer([outcome_of(item) for item in batch], self._outage.retry_at)
            return
        acks: dict[str, list[Settlement]] = {}
        others: list[Outcome] = []
        for item in batch:
            entry = _entry(item)
            refusing = self._refusing.get(entry.job.queue) if self._refusing else None
            if refusing is not None and refusing.waiting(now):
                self._defer([outcome_of(item)], refusing.retry_at)
            elif isinstance(item, Entry) or item.kind == "ack":
                acks.setdefault(entry.job.queue, []).append(item)
            else:
                others.append(item)
        groups = list(acks.items())
        for n, (name, items) in enumerate(groups):
            if not self._ack(name, items):  # Redis is unreachable: the rest waits too
                retry_at = self._outage.retry_at
                self._defer([outcome_of(i) for _, rest in groups[n + 1 :] for i in rest], retry_at)
                self._defer(others, retry_at)
                return
        for outcome in others:
            self._one(outcome)

    def _ack(self, name: str, acks: list[Settlement]) -> bool:
        """Ack the outcomes of one queue; False when Redis is unreachable (retried later)."""
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
                # All or nothing per call: drop the refused job and send the others again.
                bad = next((i for i, e in enumerate(entries) if e.job.id == exc.job_id), None)
                if bad is None:
                    for item in remaining:
                        self._one(outcome_of(item))
                    return True
                self._refused(outcome_of(remaining[bad]), exc)
                remaining = remaining[:bad] + remaining[bad + 1 :]
                continue
            except Exception as exc:
                return self._send_failed(name, [outcome_of(a) for a in remaining], exc, True)
            self._sent(name)
            self._acked(entries)
            return True
        return True

    def _send_failed(self, name: str, outcomes: list[Outcome], exc: Exception, batch: bool) -> bool:
        """Handle an error sending `outcomes` of queue `name`: retry them later when it is a
        refusal of that queue or an outage (then return False: the rest waits too), else send
        a batch one by one or give a single outcome up."""
        if queue_refusal(exc, self._cluster):
            refusing = self._refusing.get(name)
            if refusing is None:
                refusing = self._refusing[name] = Episode(
                    f"queue {name!r} refuses outcomes",
                    f"queue {name!r} accepts outcomes again",
                    first_s=0.1,
                    cap_s=5.0,
                    note="they wait until its jobs' leases end",
                )
            self._metrics.add("connection_errors" if is_transient(exc) else "errors")
            self._defer(outcomes, time.monotonic() + refusing.failed(exc))
            return True
        if is_transient(exc):
            self._metrics.add("connection_errors")
            self._defer(outcomes, time.monotonic() + self._outage.failed(exc))
            return False
        if batch:
            logger.error("ack_many failed (%s); acknowledging one by one", exc)
            for outcome in outcomes:
                self._one(outcome)
            return True
        outcome = outcomes[0]
        logger.error("job %s/%s: the %s failed", *outcome.entry.key, outcome.kind, exc_info=exc)
        self._metrics.add("errors")
        self._abandon(outcome, f"the store failed: {exc}")
        return True

    def _sent(self, name: str) -> None:
        """The store took an outcome of queue `name`: episodes under way end."""
        self._outage.succeeded()
        if self._refusing:
            refusing = self._refusing.pop(name, None)
            if refusing is not None:
                refusing.succeeded()

    def _acked(self, entries: list[Entry]) -> None:
        """Acks the store took: count them and forget their entries, all at once."""
        self._metrics.add("completed", len(entries))
        if self.observer is not None:
            self.observer.count("completed", entries)
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
            elif outcome.label == "rate_limited":
                # Hold first, so that no worker claims the job back before the hold is on (a
                # re-send repeats both: a hold never shortens, a release re-sent succeeds).
                if outcome.delay_ms:
                    self._store.hold(job.queue, outcome.delay_ms)
                stored = self._store.release(job)
            else:
                stored = self._store.release(job, delay_ms=outcome.delay_ms or 0)
        except (LeaseLost, JobNotFound) as exc:
            self._refused(outcome, exc)
        except Exception as exc:
            self._send_failed(job.queue, [outcome], exc, False)
        else:
            self._sent(job.queue)
            self._done(outcome, stored)

    def _count(self, counter: str, entry: Entry) -> None:
        self._metrics.add(counter)
        if self.observer is not None:
            self.observer.count(counter, (entry,))

    def _done(self, outcome: Outcome, job: Job) -> None:
        entry = outcome.entry
        if outcome.kind == "ack":
            self._count("completed", entry)
            logger.debug("job %s/%s completed", *entry.key)
        elif outcome.label == "snooze":
            self._count("snoozed", entry)
            logger.info("job %s/%s snoozed for %s ms", *entry.key, outcome.delay_ms)
        elif outcome.label == "rate_limited":
            self._metrics.add("released")
            self._count("rate_limited", entry)
            logger.info(
                "job %s/%s rate limited: its queue is held back for %s ms (the attempt is not"
                " counted)",
                *entry.key,
                outcome.delay_ms,
            )
        elif outcome.kind == "release":
            self._metrics.add("released")
            logger.info("job %s/%s released (the attempt is not counted)", *entry.key)
        elif job.state is JobState.DEAD:
            self._count("dead", entry)
            logger.warning(
                "job %s/%s dead after attempt %d of %d (%s)",
                *entry.key,
                job.attempts,
                job.max_attempts,
                outcome.label,
            )
        else:
            self._count("retried", entry)
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
        entry = outcome.entry
        if entry.cancelled or is_cancelled(exc):
            # Counted here when the cancel came after the handler returned (its outcome was on
            # its way), or when only this refusal told the worker; else the keeper counted it.
            self._count("cancelled", entry)
        if entry.cancelled:
            # The cancel crossed the outcome: expected, and the job's outcome is the cancel.
            logger.debug("job %s/%s: %s refused after a cancel", *entry.key, outcome.kind)
            self.state.settled((entry,))
            return
        logger.warning(
            "job %s/%s: the store refused the %s (%s); the job has moved on (cancelled, or"
            " its lease ended and another run took it)",
            *outcome.entry.key,
            outcome.kind,
            exc,
        )
        self.state.settled((outcome.entry,))

    def _defer(self, outcomes: list[Outcome], retry_at: float) -> None:
        """Send outcomes again at `retry_at`; give up those whose lease has ended."""
        now = time.monotonic()
        for outcome in outcomes:
            if now >= outcome.entry.lease_until:
                self._abandon(outcome, "its lease ended while the store could not take it")
            else:
                outcome.not_before = retry_at
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
