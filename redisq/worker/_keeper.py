"""The keeper thread: lease renewals, hard timeouts and the periodic reaper.

It runs apart from the handlers in both pools, so a handler that blocks its event loop or
hogs a CPU does not lose its lease (the GIL is released by blocking calls and switched every
few ms otherwise). Each lease is renewed every lease_ms / 3, in batches: one renew_many call
covers every lease due within the next sixth of its period.

Cancels reach it at once: its cancel watch (`_cancels.py`) blocks on the queues' cancel
streams, and `cancelled` stops the handler of each lease a cancel ended (an async handler's
task is cancelled, a sync handler sees `ctx.cancelled`; a job still in the buffer is dropped,
never started), frees its slot and sends nothing for it: the job's outcome is the cancel.

It also watches the buffer of claimed jobs waiting for a handler (`State.trim`): what it holds
beyond its size once its oldest job waited `STALE_WAIT_S` is released for other workers, and a
waiting job whose lease a renewal found lost is dropped, never started (`State.lose`).

The keeper is driven by time, not by the jobs: it sleeps until the earliest renewal, timeout,
buffer check or reap is due. Renewals wait in a heap of groups (the jobs of one claim with one
lease length share a group and a deadline), timeouts in a heap of single entries; both drop
finished entries lazily (when their time comes, or in a compaction when the heap holds more
finished entries than live ones), so admitting or starting a job costs one push and wakes
the keeper only when its deadline is earlier than the one the keeper sleeps until.

The reaper goes through every queue: one that fails (it migrates, is denied, or on Redis
Cluster its master is down) is skipped until its next try (a WARNING once per episode), and
the others are reaped all the same. While reaps come back full (a fleet died and left many
expired leases), it reaps again at once, within a time budget per tick so that renewals are
never held up. Renewals that fail for one queue are retried for that queue alone.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from redisq._sync.store import Store, queue_refusal
from redisq.errors import JobNotFound, LeaseLost
from redisq.models import CancelNotice, Job
from redisq.worker._cancels import CancelWatch
from redisq.worker._sizing import STALE_WAIT_S
from redisq.worker._state import Entry, Outcome, Phase, State
from redisq.worker._support import OUTAGE_CAP_S, Episode, WorkerMetrics, is_transient, logger

if TYPE_CHECKING:
    from redisq.metrics import WorkerExporter

__all__ = ["Keeper"]

#: A heap is compacted when it refers to more than twice its live entries plus this many.
_SLACK = 1024
#: Leases one reap returns at most (the store splits it into capped script calls).
REAP_LIMIT = 1000
#: Most time one tick spends reaping (s); a reap that keeps coming back full goes on at the
#: next tick, right after the renewals and timeouts due by then.
REAP_BUDGET_S = 0.25


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
        cancel_store: opens the store of the cancel watch (None: no watch; cancels then
            reach the handlers at the lease's next renewal).
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
        cancel_store: Callable[[], Store] | None = None,
    ) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._watch = (
            None
            if cancel_store is None
            else CancelWatch(cancel_store, queues, self.cancelled, metrics, f"{name}-cancels")
        )
        self._store = store
        self._state = state
        self._adaptive = state.sizer.adaptive
        self._queues = list(queues)
        self._reap_s = reaper_interval_ms / 1000
        self._metrics = metrics
        self._cancel = cancel
        self._backoff_ms = backoff_ms
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._cluster = store.settings.cluster
        #: Renewals fail for every queue alike (Redis unreachable), or unexpectedly.
        self._outage = Episode(
            "lease renewal failed: Redis is unreachable",
            "lease renewal works again",
            first_s=0.1,
            cap_s=1.0,
        )
        self._failing = Episode(
            "lease renewal failed", "lease renewal works again", first_s=0.5, cap_s=5.0
        )
        #: Per queue: renewals refused by that queue alone; reaps that failed.
        self._renew_refused: dict[str, Episode] = {}
        self._reap_failing: dict[str, Episode] = {}
        #: The Prometheus exporter (`--metrics-port`), or None.
        self.observer: WorkerExporter | None = None
        #: Where the next reap round starts (a round cut by the time budget resumes there).
        self._reap_from = 0
        # The first reap comes at a random point of the first interval: workers started
        # together do not reap together.
        self._next_reap = time.monotonic() + random.uniform(0, self._reap_s)
        #: Guards the heaps and _sleep_until (taken briefly by the fetcher and handlers).
        self._lock = threading.Lock()
        self._seq = itertools.count()
        #: (renew_at, seq, entries): the entries of one group share lease_ms.
        self._renewals: list[tuple[float, int, Sequence[Entry]]] = []
        self._renewal_refs = 0
        #: (timeout_at, seq, entry)
        self._timeouts: list[tuple[float, int, Entry]] = []
        #: When the keeper wakes next unless woken (inf while it works).
        self._sleep_until = float("-inf")

    # ---------------------------------------------------------------- from other threads

    def watch(self, entries: Sequence[Entry]) -> None:
        """Renew the leases of newly admitted entries from now on (thread-safe, cheap)."""
        # Entries claimed together share their renewal time unless their lease lengths
        # differ (a job's own lease_ms): usually one group.
        leases = {entry.lease_ms for entry in entries}
        groups: Iterable[Sequence[Entry]]
        if len(leases) == 1:
            groups = (entries,)
        else:
            by_lease: dict[int, list[Entry]] = {}
            for entry in entries:
                by_lease.setdefault(entry.lease_ms, []).append(entry)
            groups = by_lease.values()
        # When more wait than free handlers can start (an adaptive buffer holds some), the
        # first of them may wait too long: check then (State.trim). Otherwise the keeper is
        # not woken for it: waking it at every claim would cost an idle worker's pickup time.
        trim_at = (
            entries[0].claimed_at + STALE_WAIT_S
            if self._adaptive and self._state.buffered()
            else float("inf")
        )
        with self._lock:
            earliest = min(self._push_groups(groups), trim_at)
            wake = earliest < self._sleep_until
        if wake:
            self._wake.set()

    def watch_timeout(self, entry: Entry) -> None:
        """Enforce the timeout of a started entry (its timeout_at is set; thread-safe)."""
        at = entry.timeout_at
        assert at is not None
        with self._lock:
            timeouts = self._timeouts
            if len(timeouts) > 2 * len(self._state.entries) + _SLACK:
                # Compact: most handlers finish long before their timeout.
                timeouts[:] = [t for t in timeouts if t[2].phase is Phase.RUNNING]
                heapq.heapify(timeouts)
            heapq.heappush(timeouts, (at, next(self._seq), entry))
            wake = at < self._sleep_until
        if wake:
            self._wake.set()

    def renewed(self, entry: Entry, job: Job, sent_at: float) -> None:
        """Note a successful renewal of `entry` sent at monotonic time `sent_at`."""
        entry.renewed(sent_at)

    def cancelled(self, notices: Sequence[CancelNotice]) -> None:
        """Stop the handlers of the leases these cancels ended (thread-safe).

        A cancel of a lease this worker does not hold (another worker's, or one it finished)
        changes nothing. A running handler is told (`ctx.cancelled`), an async one's task is
        cancelled, and its slot is freed as soon as it returns; whatever it returns is
        dropped (the job's outcome is the cancel). A job still in the buffer is never started.
        """
        for entry in self._state.holding({(n.queue, n.id, n.token) for n in notices}):
            phase = self._state.cancel(entry)
            if phase is None:
                continue  # settled meanwhile: the store refused its outcome, or will
            entry.notify_cancelled()
            if phase is Phase.DECIDED:
                # Its outcome is on its way: the store refuses it (the settler says so quietly).
                logger.debug("job %s/%s: cancelled after its handler returned", *entry.key)
                continue
            self._metrics.add("cancelled")
            if self.observer is not None:
                self.observer.count("cancelled", (entry,))
            if phase is Phase.PENDING:
                logger.info("job %s/%s: cancelled before it started; it is not run", *entry.key)
                continue
            task = entry.task
            if task is not None and task.is_async:
                self._cancel(entry)  # its slot is free when the task ends
            logger.info(
                "job %s/%s: cancelled while running; the handler is %s",
                *entry.key,
                "cancelled" if task is not None and task.is_async else "told (ctx.cancelled)",
            )

    def stop(self) -> None:
        """End the thread."""
        self._halt.set()
        self._wake.set()
        if self._watch is not None:
            self._watch.stop()

    def start(self) -> None:
        """Start the thread (and the cancel watch, once it knows where the streams are)."""
        if self._watch is not None:
            self._watch.start()
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)
        if self._watch is not None:
            self._watch.join(min(1.0, 1.0 if timeout is None else timeout))

    # ----------------------------------------------------------------------- the heaps

    def _push_groups(self, groups: Iterable[Sequence[Entry]]) -> float:
        """Push groups of entries (each of one lease_ms); return the earliest deadline."""
        earliest = float("inf")
        renewals = self._renewals
        for group in groups:
            at = min(e.renew_at for e in group)
            earliest = min(earliest, at)
            heapq.heappush(renewals, (at, next(self._seq), group))
            self._renewal_refs += len(group)
        if self._renewal_refs > 2 * len(self._state.entries) + _SLACK:
            self._compact_renewals()
        return earliest

    def _compact_renewals(self) -> None:
        """Drop settled, lost and timed-out entries from the renewal heap."""
        kept: list[tuple[float, int, Sequence[Entry]]] = []
        refs = 0
        for at, seq, group in self._renewals:
            live = [e for e in group if _renewable(e)]
            if live:
                kept.append((at, seq, live))
                refs += len(live)
        heapq.heapify(kept)
        self._renewals = kept
        self._renewal_refs = refs

    def _take_due_renewals(self, now: float) -> list[Entry]:
        """Pop the entries whose renewal is due: within a sixth of their period from now."""
        due: list[Entry] = []
        later: dict[int, list[Entry]] = {}
        with self._lock:
            renewals = self._renewals
            while renewals:
                at, _, group = renewals[0]
                if at - now > group[0].lease_ms / 18000:
                    break
                heapq.heappop(renewals)
                self._renewal_refs -= len(group)
                for entry in group:
                    if not _renewable(entry):
                        continue
                    if entry.renew_at - now <= entry.lease_ms / 18000:
                        due.append(entry)
                    else:  # renewed meanwhile by the handler's heartbeat
                        later.setdefault(entry.lease_ms, []).append(entry)
            if later:
                self._push_groups(later.values())
        return due

    def _next_deadline(self) -> float:
        next_at = min(self._next_reap, self._state.trim_at())
        with self._lock:
            if self._renewals:
                next_at = min(next_at, self._renewals[0][0])
            timeouts = self._timeouts
            while timeouts and timeouts[0][2].phase is not Phase.RUNNING:
                heapq.heappop(timeouts)  # finished before its timeout
            if timeouts:
                next_at = min(next_at, timeouts[0][0])
            self._sleep_until = next_at
        return next_at

    # ------------------------------------------------------------------------- the loop

    def _main(self) -> None:
        while not self._halt.is_set():
            try:
                self._tick(time.monotonic())
                next_at = self._next_deadline()
            except Exception:  # never let the keeper die: leases depend on it
                logger.exception("the lease keeper failed; it carries on")
                self._metrics.add("errors")
                next_at = time.monotonic() + 0.5
            self._wake.wait(max(0.0, next_at - time.monotonic()))
            with self._lock:
                self._sleep_until = float("-inf")  # awake: pushes need not wake it
            self._wake.clear()

    def _tick(self, now: float) -> None:
        self._expire(now)
        self._state.trim(now)
        if not self._outage.waiting(now) and not self._failing.waiting(now):
            due = self._take_due_renewals(now)
            if due:
                self._renew(due, now)
        if now >= self._next_reap:
            left = self._reap()
            pause = 0.0 if left else self._reap_s * random.uniform(0.8, 1.2)
            self._next_reap = time.monotonic() + pause

    def _expire(self, now: float) -> None:
        """Fail the attempts whose handler ran past the task's timeout."""
        expired: list[Entry] = []
        with self._lock:
            timeouts = self._timeouts
            while timeouts and timeouts[0][0] <= now:
                expired.append(heapq.heappop(timeouts)[2])
        for entry in expired:
            if entry.timed_out or entry.timeout_at is None or entry.timeout_at > now:
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
        by_queue: dict[str, list[Entry]] = {}
        for entry in due:
            by_queue.setdefault(entry.job.queue, []).append(entry)
        groups = list(by_queue.items())
        for i, (queue, entries) in enumerate(groups):
            refused = self._renew_refused.get(queue)
            if refused is not None and refused.waiting(now):
                self._requeue(entries, refused.retry_at)
                continue
            try:
                outcomes = self._store.renew_many([e.job for e in entries])
            except Exception as exc:
                if queue_refusal(exc, self._cluster):
                    # This queue alone: the others are renewed as usual.
                    refused = self._renew_refused.get(queue)
                    if refused is None:
                        refused = self._renew_refused[queue] = Episode(
                            f"lease renewal refused by queue {queue!r}",
                            f"lease renewal works again for queue {queue!r}",
                            first_s=0.1,
                            cap_s=1.0,
                        )
                    self._count_error(exc)
                    self._requeue(entries, time.monotonic() + refused.failed(exc))
                    continue
                self._count_error(exc)
                if is_transient(exc):
                    pause = self._outage.failed(exc)
                else:
                    pause = self._failing.failed(exc, trace=True)
                retry_at = time.monotonic() + pause
                for _, rest in groups[i:]:  # every queue alike: try them all again then
                    self._requeue(rest, retry_at)
                return
            self._outage.succeeded()
            self._failing.succeeded()
            refused = self._renew_refused.pop(queue, None)
            if refused is not None:
                refused.succeeded()
            kept: list[Entry] = []
            for entry, result in zip(entries, outcomes, strict=True):
                if isinstance(result, Job):
                    self.renewed(entry, result, now)
                    kept.append(entry)
                elif isinstance(result, (LeaseLost, JobNotFound)):
                    self._lost(entry, result)
                else:
                    logger.error("job %s/%s: renewal failed: %s", *entry.key, result)
                    self._lost(entry, result)
            self._requeue(kept)

    def _count_error(self, exc: Exception) -> None:
        self._metrics.add("connection_errors" if is_transient(exc) else "errors")

    def _requeue(self, entries: list[Entry], at: float | None = None) -> None:
        """Push entries back into the renewal heap (at their renew_at, or at `at`)."""
        groups: dict[int, list[Entry]] = {}
        for entry in entries:
            groups.setdefault(entry.lease_ms, []).append(entry)
        with self._lock:
            if at is None:
                self._push_groups(groups.values())
            else:
                for group in groups.values():
                    heapq.heappush(self._renewals, (at, next(self._seq), group))
                    self._renewal_refs += len(group)

    def _lost(self, entry: Entry, exc: Exception) -> None:
        phase = self._state.lose(entry)
        if phase is Phase.PENDING:
            self._metrics.add("lease_lost")
            logger.warning(
                "job %s/%s: lease lost (%s) while it waited for a handler; it is not run",
                entry.job.queue,
                entry.job.id,
                exc,
            )
            return
        if phase is Phase.DECIDED:
            # The handler is done and its outcome is on its way: most often this renewal
            # crossed the ack that ended the lease. If the lease was really lost, the store
            # refuses the outcome and the settler reports that.
            logger.debug("job %s/%s: renewal after its outcome was decided: %s", *entry.key, exc)
            return
        entry.notify_cancelled()
        self._metrics.add("lease_lost")
        logger.warning(
            "job %s/%s: lease lost (%s); the handler is told through ctx.cancelled and its"
            " ack will be refused",
            entry.job.queue,
            entry.job.id,
            exc,
        )

    def _reap(self) -> bool:
        """Reap every queue (skipping those whose next try after a failure is not due);
        return True when the time budget ran out with expired leases left (reap again soon).
        """
        started = time.monotonic()
        queues = self._queues[self._reap_from :] + self._queues[: self._reap_from]
        for n, queue in enumerate(queues):
            failing = self._reap_failing.get(queue)
            if failing is not None and failing.waiting(started):
                continue
            reaped = 0
            while True:
                try:
                    count = self._store.reap(queue, limit=REAP_LIMIT)
                except Exception as exc:
                    self._count_error(exc)
                    if failing is None:
                        failing = self._reap_failing[queue] = Episode(
                            f"reaping queue {queue!r} failed",
                            f"reaping queue {queue!r} works again",
                            first_s=1.0,
                            cap_s=60.0,
                            transient_cap_s=OUTAGE_CAP_S,
                            note="the other queues are reaped as usual"
                            if len(self._queues) > 1
                            else "",
                        )
                    expected = is_transient(exc) or queue_refusal(exc, self._cluster)
                    failing.failed(exc, trace=not expected)
                    break
                if failing is not None:
                    del self._reap_failing[queue]
                    failing.succeeded()
                    failing = None
                reaped += count
                if count < REAP_LIMIT:
                    break
                if time.monotonic() - started >= REAP_BUDGET_S:
                    # Full batches still: resume with this queue right after the renewals.
                    self._reaped(queue, reaped)
                    self._reap_from = (self._reap_from + n) % len(self._queues)
                    return True
            self._reaped(queue, reaped)
        return False

    def _reaped(self, queue: str, count: int) -> None:
        """Count and log a queue's reaped leases (once per queue and round)."""
        if count:
            self._metrics.add("reaped", count)
            logger.info("reaped queue %s: %d expired leases returned (or dead)", queue, count)


def _renewable(entry: Entry) -> bool:
    """Tell whether the keeper still renews an entry's lease (in flight, not lost or failed)."""
    return not (entry.settled or entry.lost or entry.timed_out)
