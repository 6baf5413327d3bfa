"""The fetcher thread: claims jobs when handler slots are free, blocks on Redis otherwise.

Loop: wait for free capacity; claim up to that many jobs (weighted or strict over the
queues); when a claim comes back short, claim with ``wait_ms``: the store blocks on the
queues' wake keys (BZPOPMIN; every enqueue and every script that makes jobs ready signals
them) and the claim rides behind the blocking command in the same round trip, so a woken
worker has its jobs as soon as it wakes. An idle worker thus costs a wait and a claim every
few seconds (the claim after a timed-out wait also catches a lost signal), plus the reaper.
At stop, `stop_waiting` unblocks the wait; the claim behind it still runs, and what it leased
is admitted while the worker stops, which releases it.

The loop starts on the fetcher's own thread but need not stay there: with a thread pool,
when a waiting claim brings jobs to an idle worker, `admit` may keep the first job for the
thread that received it (`State.hand_over`); `work` returns it, that thread runs it, and an
idle handler thread carries on with the loop (`work` again). So the claim's state lives on
the Fetcher, not in one thread's locals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from redisq._core.rotation import Rotation
from redisq._sync.store import Store
from redisq.models import Job
from redisq.worker._state import Entry
from redisq.worker._support import Reconnect, WorkerMetrics, is_transient, logger

__all__ = ["Fetcher"]

#: How long a claim's reply may have taken to come back, when dating leases from a wait.
_REPLY_MARGIN_S = 0.05


class Fetcher:
    """Claims jobs for the worker.

    Args:
        store: the sync store.
        queues: the queues to claim from.
        rotation: the claim plan over the queues.
        worker: the worker's name (recorded on claimed jobs).
        capacity: blocks until jobs may be claimed and returns how many (0: stop).
        admit: takes the claimed jobs, the monotonic time the claim was sent, and whether it
            may keep the first for this thread to run (then returns it, else None).
        adopt: runs a kept job in the calling thread, which then works as a handler thread
            (None: never keep one, as with the async pool).
        stopping: set when the worker stops.
        idle_wait_ms: longest blocking wait when no work is there.
        metrics: the worker's counters.
        name: the thread's name.
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
    ) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._store = store
        self._queues = list(queues)
        self._rotation = rotation
        self._worker = worker
        self._capacity = capacity
        self._admit = admit
        self._adopt = adopt
        self._stopping = stopping
        self._idle_wait_ms = idle_wait_ms
        self._metrics = metrics
        self._reconnect = Reconnect(stopping)
        self._lock = threading.Lock()
        #: Notified when a claim under way was admitted (for `quiesce`).
        self._claimed = threading.Condition(self._lock)
        self._closed = False
        #: Claims under way, until admitted (see `work`).
        self._claiming = 0
        #: A full batch came back last time: claim again at once (else wait for work).
        self._must_claim = True

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
        keep = self._adopt is not None
        while not self._stopping.is_set():
            count = self._capacity()
            if count <= 0:
                continue  # stopping (capacity() returns 0 then) or a spurious wake-up
            with self._lock:
                if self._closed:
                    return None
                # A count, not a flag: the loop may move on to another thread before this
                # one has finished with its claim.
                self._claiming += 1
            try:
                sent_at = time.monotonic()
                waited = not self._must_claim
                if waited:
                    # The queues were drained: wait for work and claim it in one round trip.
                    jobs = self._store.claim(
                        self._queues, worker=self._worker, count=count, wait_ms=self._idle_wait_ms
                    )
                    # That claim ran when the wait was woken, not when it was sent: date the
                    # leases from the reply, less a margin for its way back. (This only
                    # schedules renewals; the store itself enforces every lease.)
                    sent_at = max(sent_at, time.monotonic() - _REPLY_MARGIN_S)
                else:
                    jobs = self._claim(count)
                self._reconnect.reset()
            except Exception as exc:
                self._done_claiming()
                self._failed(exc)
                self._must_claim = True  # wake-ups may have been missed meanwhile
                continue
            # A full batch: more may be waiting; a short one: the queues are drained.
            self._must_claim = len(jobs) >= count
            kept: Entry | None = None
            try:
                # Woken from a wait, the worker was idle: its first job may start right here
                # (the last step: the loop may go on in another thread from then on).
                kept = self._admit(jobs, sent_at, keep and waited) if jobs else None
            except Exception:  # a bug: the jobs' leases run out and the reaper returns them
                self._metrics.add("errors")
                logger.exception("admitting %d claimed job(s) failed", len(jobs))
            finally:
                self._done_claiming()
            if kept is not None:
                return kept
        return None

    def _done_claiming(self) -> None:
        with self._lock:
            self._claiming -= 1
            self._claimed.notify_all()

    def _failed(self, exc: Exception) -> None:
        if self._stopping.is_set():
            return  # the store is closing under a blocked wait: nothing to report
        if is_transient(exc):
            self._metrics.add("connection_errors")
            delay = self._reconnect.delay()
            level = logger.warning if self._reconnect.failures <= 3 else logger.debug
            level("Redis is unreachable (%s); trying again in %.2f s", exc, delay)
        else:
            self._metrics.add("errors")
            delay = self._reconnect.delay()
            logger.exception("claiming failed; trying again in %.2f s", delay)
        self._stopping.wait(delay)

    def _claim(self, count: int) -> list[Job]:
        """Claim up to `count` jobs following the rotation's plan."""
        jobs: list[Job] = []
        short: set[str] = set()
        plan = self._rotation.plan(count)
        # First pass: each queue its quota (strict mode: the whole rest, in order).
        for queue, quota in plan:
            need = count - len(jobs) if self._rotation.strict else quota
            need = min(need, count - len(jobs))
            if need <= 0:
                continue
            got = self._store.claim(queue, worker=self._worker, count=need)
            jobs += got
            if len(got) < need:
                short.add(queue)
        # Second pass: what queues that came up short left goes to the others.
        for queue, _ in plan:
            need = count - len(jobs)
            if need <= 0:
                break
            if queue in short:
                continue
            got = self._store.claim(queue, worker=self._worker, count=need)
            jobs += got
            if len(got) < need:
                short.add(queue)
        return jobs
