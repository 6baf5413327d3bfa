"""The fetcher thread: claims jobs when handler slots are free, blocks on Redis otherwise.

Loop: wait for free capacity; claim up to that many jobs (weighted or strict over the
queues); when a claim comes back short, block in ``store.wait`` (BZPOPMIN on the queues'
wake keys, signalled by every enqueue and every script that makes jobs ready) until work may
be there or ``idle_wait_ms`` passes. An idle worker thus costs about one command per wait,
plus a safety claim every few waits and the reaper.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redisq._core.rotation import Rotation
from redisq._sync.store import Store
from redisq.models import Job
from redisq.worker._support import Reconnect, WorkerMetrics, is_transient, logger

__all__ = ["Fetcher"]

#: Claim at least this often (s) even when no wake-up came: a signal can be lost (a server
#: restarted without persistence, or a wake key removed by hand).
_SAFETY_CLAIM_S = 5.0


class Fetcher:
    """Claims jobs for the worker.

    Args:
        store: the sync store.
        queues: the queues to claim from.
        rotation: the claim plan over the queues.
        worker: the worker's name (recorded on claimed jobs).
        capacity: blocks until jobs may be claimed and returns how many (0: stop).
        admit: takes the claimed jobs and the monotonic time the claim was sent.
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
        admit: Callable[[list[Job], float], None],
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
        self._haltping = stopping
        self._idle_wait_ms = idle_wait_ms
        self._metrics = metrics
        self._reconnect = Reconnect(stopping)
        self._wait: Callable[..., Any] | None = getattr(store, "wait", None)
        self._poll_s = 0.005

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    def _main(self) -> None:
        must_claim = True
        last_claim = 0.0
        while not self._haltping.is_set():
            count = self._capacity()
            if count <= 0:
                continue  # stopping (capacity() returns 0 then) or a spurious wake-up
            try:
                if not must_claim:
                    woke = self._block()
                    must_claim = woke or time.monotonic() - last_claim >= _SAFETY_CLAIM_S
                    self._reconnect.reset()
                    continue
                sent_at = time.monotonic()
                jobs = self._claim(count)
                last_claim = sent_at
                self._reconnect.reset()
            except Exception as exc:
                self._failed(exc)
                continue
            if jobs:
                self._admit(jobs, sent_at)
                self._poll_s = 0.005
            # A full batch: more may be waiting; a short one: the queues are drained.
            must_claim = len(jobs) >= count

    def _failed(self, exc: Exception) -> None:
        if is_transient(exc):
            self._metrics.add("connection_errors")
            delay = self._reconnect.delay()
            level = logger.warning if self._reconnect.failures <= 3 else logger.debug
            level("Redis is unreachable (%s); trying again in %.2f s", exc, delay)
        else:
            self._metrics.add("errors")
            delay = self._reconnect.delay()
            logger.exception("claiming failed; trying again in %.2f s", delay)
        self._haltping.wait(delay)

    def _block(self) -> bool:
        """Wait for work; True when woken by a signal (or when polling)."""
        if self._wait is not None:
            return bool(self._wait(self._queues, timeout_ms=self._idle_wait_ms))
        # Until the store has `wait`: poll with a short growing sleep.
        self._haltping.wait(self._poll_s)
        self._poll_s = min(self._poll_s * 2, 0.1)
        return True

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
