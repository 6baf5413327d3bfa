"""The heartbeat thread: the worker's record in the worker registry (`Store.workers`).

Every third of `ttl_ms` it rewrites the worker's record (host, pid, version, queues,
concurrency, the jobs it holds, its counters) with that TTL, on the Redis clock: one script
call, so an idle worker spends 3 / ttl_ms commands per second on it (0.1/s at the default
30 s). A worker killed without a word drops out of the list once its TTL has passed; a clean
stop removes the record at once.

It runs on its own thread, not the keeper's: on Redis Cluster the registry lives in one slot
(`redisq.keys.registry_keys`) whose master may be down while the queues' are fine, and a
heartbeat stuck in a socket timeout must never hold up a lease renewal. A heartbeat that
fails is logged once (WARNING, then a summary a minute while it lasts, INFO when it works
again: `Episode`) and tried again at the next beat; the worker goes on working.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from redisq._sync.store import Store
from redisq._version import __version__
from redisq.worker._state import State
from redisq.worker._support import Episode, WorkerMetrics

__all__ = ["Heartbeat"]

#: Job ids one record lists at most (the count of jobs held is always there).
MAX_LISTED_JOBS = 100


class Heartbeat:
    """Keeps a worker's record in the registry while it runs.

    Args:
        store: the sync store.
        state: the worker's state (jobs held).
        metrics: the worker's counters.
        name: the worker's name.
        queues: the queues it works.
        concurrency: its handler slots.
        pool: its pool.
        ttl_ms: the record's TTL; it is rewritten every third of it.
        thread_name: the thread's name.
    """

    def __init__(
        self,
        store: Store,
        state: State,
        metrics: WorkerMetrics,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        pool: str,
        ttl_ms: int,
        thread_name: str,
    ) -> None:
        self._thread = threading.Thread(target=self._main, name=thread_name, daemon=True)
        self._store = store
        self._state = state
        self._metrics = metrics
        self._name = name
        self._ttl_ms = ttl_ms
        self._halt = threading.Event()
        self._fixed: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "queues": list(queues),
            "concurrency": concurrency,
            "pool": pool,
            "started_at_ms": int(time.time() * 1000),
            "ttl_ms": ttl_ms,
        }
        self._failing = Episode(
            f"writing worker {name!r}'s heartbeat to the worker registry failed",
            "the worker registry takes heartbeats again",
            first_s=ttl_ms / 3000,  # (tried again at each beat)
            cap_s=ttl_ms / 3000,
            note="the worker goes on working; `redisq workers` may not list it meanwhile",
        )

    def start(self) -> None:
        """Start the thread (its first beat goes out at once)."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Remove the record (a clean stop) and end the thread, waiting at most `timeout`."""
        self._halt.set()
        self._thread.join(timeout)

    def record(self) -> dict[str, Any]:
        """The record as of now."""
        state = self._state
        with state.lock:
            held = len(state.entries)
            listed = list(itertools.islice(state.entries, MAX_LISTED_JOBS))
        snapshot = self._metrics.snapshot()
        counters = {k: v for k, v in snapshot.items() if isinstance(v, int)}
        return {
            **self._fixed,
            "in_flight": held,
            "jobs": sorted(f"{e.job.queue}/{e.job.id}" for e in listed),
            "counters": counters,
        }

    def _main(self) -> None:
        period = self._ttl_ms / 3000
        while True:
            self._beat(self._ttl_ms)
            if self._halt.wait(period):
                break
        self._beat(0)

    def _beat(self, ttl_ms: int) -> None:
        try:
            self._store._heartbeat(self._name, self.record() if ttl_ms else {}, ttl_ms)
        except Exception as exc:  # never let the heartbeat stop the worker
            self._failing.failed(exc)
        else:
            self._failing.succeeded()
