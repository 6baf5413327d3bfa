"""The fetcher thread: claims jobs when handler slots are free, blocks on Redis otherwise.

Loop: wait for free capacity; claim up to that many jobs (weighted or strict over the
queues); when a claim comes back short, claim with ``wait_ms``: the store blocks on the
queues' wake keys (BZPOPMIN; every enqueue and every script that makes jobs ready signals
them) and the claim rides behind the blocking command in the same round trip, so a woken
worker has its jobs as soon as it wakes. An idle worker thus costs a wait and a claim every
few seconds (the claim after a timed-out wait also catches a lost signal), plus the reaper.
At stop, `stop_waiting` unblocks the wait; the claim behind it still runs, and what it leased
is admitted while the worker stops, which releases it.

How many jobs a claim asks for is the State's business (`State.wait_capacity`: the free
handler slots plus the buffer, see `_sizing.py`). A claim over several queues may bring
hundreds of jobs; in weighted mode they are admitted interleaved by the queues' weights, so
the handlers start them in the rotation's order, not one queue's share after the other's.

A queue that refuses claims (it migrates, a key has another type, an ACL denies it, or on Redis
Cluster its master is down) is set aside alone: the other queues are claimed as usual, what
they leased is admitted, and the refusing queue is tried again after a pause that grows from
0.5 s to 30 s (jittered); a WARNING says so once per episode, and INFO when the queue works
again. When Redis itself cannot be reached, or claiming fails in an unexpected way, the whole
loop pauses (0.1 s doubling to 3 s; 1 s doubling to 60 s) and logs the same way.

The loop starts on the fetcher's own thread but need not stay there: with a thread pool,
when a waiting claim brings jobs to an idle worker, `admit` may keep the first job for the
thread that received it (`State.hand_over`); `work` returns it, that thread runs it, and an
idle handler thread carries on with the loop (`work` again). So the claim's state lives on
the Fetcher, not in one thread's locals.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from redisq._core.rotation import Rotation
from redisq._sync.store import Store, queue_refusal
from redisq.models import Claimed, Job
from redisq.worker._state import Entry
from redisq.worker._support import (
    OUTAGE_CAP_S,
    Episode,
    WorkerMetrics,
    is_transient,
    logger,
)

__all__ = ["Fetcher"]

#: A rate limit's next job this near (ms) is waited for on the worker's clock (the store
#: returns such claims at once: Redis times blocking waits out in steps of about 100 ms).
_HELD_WAIT_MS = 250
#: How long a claim's reply may have taken to come back, when dating leases from a wait.
_REPLY_MARGIN_S = 0.05
#: Pauses before a refusing queue is tried again (s): the first, and the longest.
REFUSAL_FIRST_S = 0.5
REFUSAL_CAP_S = 30.0


class Fetcher:
    """Claims jobs for the worker.

    Args:
        store: the sync store.
        queues: the queues to claim from.
        rotation: the claim plan over the queues.
        worker: the worker's name (recorded on claimed jobs).
        capacity: blocks until jobs may be claimed and returns how many (0: stop).
        admit: takes the claimed jobs, the monotonic time the claim was sent, and whether
            they came after a wait for work (the worker was idle: it may keep the first for
            this thread to run, and then returns it, else None).
        adopt: runs a kept job in the calling thread, which then works as a handler thread
            (None: never keep one, as with the async pool).
        stopping: set when the worker stops.
        idle_wait_ms: longest blocking wait when no work is there.
        metrics: the worker's counters.
        name: the thread's name.
        idle: burst mode (``Worker(burst=True)``): tells whether the worker holds no job
            (none pending, running or waiting for its outcome to be stored).
        drained: burst mode: called once a claim sent while the worker was idle leased
            nothing (no queue refused, no rate limit held jobs back); the loop then ends.
    """

    def __init__(
        self,
        store: Store,
        queues: Sequence[str],
        rotation: Rotation,
        worker: str,
        capacity: Callable[[], int],
        admit: Callable[[list[Job], float, bool], Entry | None],
        adopt: Callable[[Entry], None] | None,
        stopping: threading.Event,
        idle_wait_ms: int,
        metrics: WorkerMetrics,
        name: str,
        idle: Callable[[], bool] | None = None,
        drained: Callable[[], None] | None = None,
    ) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._store = store
        self._queues = list(queues)
        self._rotation = rotation
        #: While queues are set aside, the rotation over the others (their weights kept).
        self._partial: tuple[list[str], Rotation] | None = None
        self._worker = worker
        self._capacity = capacity
        self._admit = admit
        self._adopt = adopt
        self._stopping = stopping
        self._idle_wait_ms = idle_wait_ms
        self._metrics = metrics
        self._cluster = store.settings.cluster
        #: Redis cannot be reached (every queue fails alike).
        self._outage = Episode(
            "Redis is unreachable: claiming paused",
            "Redis is reachable again: claiming resumed",
            first_s=0.1,
            cap_s=OUTAGE_CAP_S,
        )
        #: Claiming fails in a way that is neither an outage nor one queue's refusal.
        self._failing = Episode("claiming failed", "claiming works again", first_s=1.0, cap_s=60.0)
        #: Queues that refuse claims, set aside until their next try is due.
        self._refusing: dict[str, Episode] = {}
        self._lock = threading.Lock()
        #: Notified when a claim under way was admitted (for `quiesce`).
        self._claimed = threading.Condition(self._lock)
        self._closed = False
        #: Claims under way, until admitted (see `work`).
        self._claiming = 0
        #: A full batch came back last time: claim again at once (else wait for work).
        self._must_claim = True
        #: A rate limit held ready jobs back in this round: the least ms until the next
        #: may start (claims then wait on this clock; see `_held`), else None.
        self._held_ms: int | None = None
        self._idle = idle
        self._drained = drained

    def quiesce(self, timeout: float) -> None:
        """Claim nothing more; wait for a claim under way to be admitted.

        A claim waiting for work counts as under way: call `stop_waiting` first, which cuts
        its wait short.
        """
        with self._lock:
            self._closed = True
            self._claimed.wait_for(lambda: self._claiming == 0, timeout)

    def stop_waiting(self) -> None:
        """Claim nothing more; cut a blocked wait short (the claim behind it still lands)."""
        with self._lock:
            self._closed = True
        self._store.stop_waiting()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def _main(self) -> None:
        entry = self.work()
        if entry is not None and self._adopt is not None:
            self._adopt(entry)  # this thread runs the job, then works as a handler thread

    def work(self) -> Entry | None:
        """Run the loop in the calling thread until the worker stops (returns None), or until
        a waiting claim's first job is kept for this thread (returns it: the caller runs it;
        an idle handler thread has taken over the loop)."""
        while not self._stopping.is_set():
            count = self._capacity()
            if count <= 0:
                continue  # stopping (capacity() returns 0 then) or a spurious wake-up
            now = time.monotonic()
            healthy = [q for q in self._queues if q not in self._refusing]
            due = [
                q
                for q in self._queues
                if q in self._refusing and not self._refusing[q].waiting(now)
            ]
            if not healthy and not due:
                # Every queue refuses: sleep until the first is due to be tried again.
                first = min(ep.retry_at for ep in self._refusing.values())
                self._stopping.wait(max(0.0, first - now))
                continue
            # Burst mode: once idle, one claim that leases nothing ends the burst.
            # (Not while a queue is set aside or a rate limit held jobs back last round:
            # those wait as usual.)
            burst_check = (
                self._idle is not None
                and not self._must_claim
                and not self._refusing
                and self._held_ms is None
                and self._idle()
            )
            with self._lock:
                if self._closed:
                    return None
                # A count, not a flag: the loop may move on to another thread before this
                # one has finished with its claim.
                self._claiming += 1
            error: Exception | None = None
            self._held_ms = None
            try:
                sent_at = time.monotonic()
                waited = not self._must_claim and not due
                if waited:
                    # The queues were drained: wait for work and claim it in one round trip
                    # (woken in time to try a refusing queue again).
                    wait_ms = 0 if burst_check else self._idle_wait_ms
                    jobs: list[Job] = self._interleave(
                        self._wait_and_claim(healthy, count, now, wait_ms)
                    )
                    # That claim ran when the wait was woken, not when it was sent: date the
                    # leases from the reply, less a margin for its way back. (This only
                    # schedules renewals; the store itself enforces every lease.)
                    sent_at = max(sent_at, time.monotonic() - _REPLY_MARGIN_S)
                else:
                    usable = [q for q in self._queues if q in healthy or q in due]
                    jobs, error = self._claim(count, usable)
            except Exception as exc:
                jobs, error = [], exc
            held_s = 0.0
            if error is None:
                self._outage.succeeded()
                self._failing.succeeded()
                # A full batch: more may be waiting; a short one: the queues are drained.
                self._must_claim = len(jobs) >= count
                held_s = self._held(len(jobs) < count)
            else:
                self._must_claim = True  # wake-ups may have been missed meanwhile
            kept: Entry | None = None
            try:
                # Woken from a wait, the worker was idle: its first job may start right here
                # (the last step: the loop may go on in another thread from then on).
                kept = self._admit(jobs, sent_at, waited) if jobs else None
            except Exception:  # a bug: the jobs' leases run out and the reaper returns them
                self._metrics.add("errors")
                logger.exception("admitting %d claimed job(s) failed", len(jobs))
            finally:
                self._done_claiming()
            if error is not None:
                self._failed(error, healthy if waited else healthy + due)
            if kept is not None:
                return kept
            if (
                burst_check
                and error is None
                and not jobs
                and self._held_ms is None
                and not self._refusing
                and self._drained is not None
            ):
                self._drained()
                return None
            if held_s > 0:
                self._stopping.wait(held_s)  # a rate limit's next job (see `_held`)
        return None

    def _held(self, short: bool) -> float:
        """After a short round in which a rate limit held ready jobs back and the next may
        start soon (the store returned instead of waiting on Redis, whose blocking timeouts
        are too coarse for it): the seconds to wait before claiming again, at once then.
        Otherwise 0 (the usual wait for work, woken in time by the claim's due hint)."""
        held = self._held_ms
        if not short or held is None or held >= _HELD_WAIT_MS:
            return 0.0
        self._must_claim = True
        return held / 1000

    def _done_claiming(self) -> None:
        with self._lock:
            self._claiming -= 1
            self._claimed.notify_all()

    def _wait_and_claim(self, queues: list[str], count: int, now: float, wait_ms: int) -> Claimed:
        """Claim with a wait for work on `queues` (up to `wait_ms`), waking in time for the
        next refusing queue's try; note the queues that refused."""
        if wait_ms and self._refusing:
            first = min(ep.retry_at for ep in self._refusing.values())
            wait_ms = max(1, min(wait_ms, int((first - now) * 1000) + 1))
        jobs = self._store.claim(queues, worker=self._worker, count=count, wait_ms=wait_ms)
        self._note_held(jobs)
        for queue, exc in jobs.refused.items():
            self._refused(queue, exc)
        return jobs

    def _failed(self, exc: Exception, queues: list[str]) -> None:
        """Handle a claim that raised: every queue of it refused (each is set aside), Redis
        is unreachable, or something unexpected failed (the loop pauses)."""
        if self._stopping.is_set():
            return  # the store is closing under a blocked wait: nothing to report
        if queue_refusal(exc, self._cluster):
            for queue in queues:  # a claim raises a refusal only when every queue refused
                self._refused(queue, exc)
            return
        if is_transient(exc):
            self._metrics.add("connection_errors")
            delay = self._outage.failed(exc)
        else:
            self._metrics.add("errors")
            delay = self._failing.failed(exc, trace=True)
        self._stopping.wait(delay)

    def _refused(self, queue: str, exc: Exception) -> None:
        """Set a refusing queue aside until its next try (its episode logs)."""
        episode = self._refusing.get(queue)
        if episode is None:
            others = len(self._queues) > 1
            episode = Episode(
                f"queue {queue!r} refuses claims",
                f"queue {queue!r} accepts claims again",
                first_s=REFUSAL_FIRST_S,
                cap_s=REFUSAL_CAP_S,
                note="the worker goes on with its other queues" if others else "",
            )
            self._refusing[queue] = episode
        self._metrics.add("connection_errors" if is_transient(exc) else "errors")
        episode.failed(exc)

    def _accepted(self, queue: str) -> None:
        """A refusing queue took a claim again: back into the rotation."""
        episode = self._refusing.pop(queue, None)
        if episode is not None:
            episode.succeeded()

    def _claim(self, count: int, usable: list[str]) -> tuple[list[Job], Exception | None]:
        """Claim up to `count` jobs from `usable` queues following the rotation's plan.

        Each queue is claimed alone, so a refusal is that queue's: it is set aside and the
        others go on. Returns the jobs, and the error that stopped the round early (Redis
        unreachable...): the jobs leased before it are returned all the same.
        """
        jobs: list[Job] = []
        short: set[str] = set()
        plan = self._rotation_of(usable).plan(count)
        try:
            # First pass: each queue its quota (strict mode: the whole rest, in order).
            for queue, quota in plan:
                need = count - len(jobs) if self._rotation.strict else quota
                need = min(need, count - len(jobs))
                if need <= 0:
                    continue
                got = self._claim_one(queue, need)
                if got is None:
                    short.add(queue)
                    continue
                jobs += got
                if len(got) < need:
                    short.add(queue)
            # Second pass: what queues that came up short left goes to the others.
            for queue, _ in plan:
                need = count - len(jobs)
                if need <= 0:
                    break
                if queue in short or queue in self._refusing:
                    continue
                got = self._claim_one(queue, need)
                if got is None:
                    continue
                jobs += got
                if len(got) < need:
                    short.add(queue)
        except Exception as exc:
            return self._interleave(jobs), exc
        return self._interleave(jobs), None

    def _interleave(self, jobs: list[Job]) -> list[Job]:
        """Order the jobs of a claim by the smooth weighted round-robin over their queues
        (strict mode, or jobs of one queue: as they are)."""
        if self._rotation.strict or len(jobs) < 2 or len(self._queues) < 2:
            return jobs
        by_queue: dict[str, deque[Job]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, deque()).append(job)
        if len(by_queue) < 2:
            return jobs
        weights = self._rotation.weights
        credit = dict.fromkeys(by_queue, 0)
        ordered: list[Job] = []
        while by_queue:
            total = sum(weights[q] for q in by_queue)
            best = ""
            for queue in by_queue:
                credit[queue] += weights[queue]
                if not best or credit[queue] > credit[best]:
                    best = queue
            credit[best] -= total
            left = by_queue[best]
            ordered.append(left.popleft())
            if not left:
                del by_queue[best]
        return ordered

    def _rotation_of(self, usable: list[str]) -> Rotation:
        """The rotation over `usable` queues: the worker's own, or while some are set aside
        one over the rest, so that their share is spread by weight, not given to one."""
        rotation = self._rotation
        if len(usable) == len(rotation.queues):
            self._partial = None
            return rotation
        if self._partial is None or self._partial[0] != usable:
            weights = {q: rotation.weights[q] for q in usable}
            self._partial = (usable, Rotation(usable, weights, rotation.strict))
        return self._partial[1]

    def _claim_one(self, queue: str, count: int) -> list[Job] | None:
        """Claim from one queue; None when it refused (it is set aside then)."""
        try:
            got = self._store.claim(queue, worker=self._worker, count=count)
        except Exception as exc:
            if not queue_refusal(exc, self._cluster):
                raise
            self._refused(queue, exc)
            return None
        self._accepted(queue)
        self._note_held(got)
        return got

    def _note_held(self, jobs: Claimed) -> None:
        """Keep the least `held_ms` of this round's claims."""
        held = jobs.held_ms
        if held is not None:
            self._metrics.add("claims_held")
            if self._held_ms is None or held < self._held_ms:
                self._held_ms = held
