"""The cancel watch: how a worker learns at once that a job it runs was cancelled.

`Store.cancel` of a leased job appends (id, token) to the queue's cancel stream (see
`redisq/_core/cancels.py`). The watch blocks on the streams of the worker's queues
(`Store.wait_cancels`, an XREAD of up to a minute) on a store of its own, whose socket timeout
lets a read last that long, and hands what it reads to the keeper, which stops the handler of
the matching lease (`Keeper.cancelled`). Idle, it costs one blocking read a minute per thread
(about 0.02 commands/s); a worker's claims, acks and renewals are not changed at all.

On Redis Cluster each queue has its own slot, so the watch runs one thread per queue there
(as the schedule drivers do); elsewhere one thread reads every queue's stream at once.

The signal is advisory: when Redis cannot be reached, or a burst trims entries before they
are read, the next renewal of the lease finds it lost, as without the watch.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redisq._sync.store import Store
from redisq.models import CancelNotice
from redisq.worker._schedules import driver_store
from redisq.worker._support import OUTAGE_CAP_S, Episode, WorkerMetrics, is_transient, logger

__all__ = ["CancelWatch", "watch_store"]

#: Longest blocking read (ms): the watch's store allows a minute (its socket timeout is above).
_BLOCK_MS = 60_000
#: How long `start` waits for the streams' positions before the worker claims (s).
_POSITION_WAIT_S = 2.0


def watch_store(url: str, prefix: str, options: dict[str, Any]) -> Store:
    """Open the store of a cancel watch: the schedule drivers' (`driver_store`): a socket
    timeout that lets a blocking read last a minute, and no retry inside redis-py (the
    watch's loop retries after a pause itself)."""
    return driver_store(url, prefix, options)


class CancelWatch:
    """Threads that block on the queues' cancel streams and report what they read.

    Args:
        open_store: opens the watch's own store (called once, in `start`).
        queues: the queues to watch.
        notify: takes the cancels read (called from the watch's threads).
        metrics: the worker's counters.
        name: the threads' name.
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        queues: Sequence[str],
        notify: Callable[[list[CancelNotice]], None],
        metrics: WorkerMetrics,
        name: str,
    ) -> None:
        self._open_store = open_store
        self._queues = list(queues)
        self._notify = notify
        self._metrics = metrics
        self._name = name
        self._halt = threading.Event()
        self._store: Store | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Open the store, note where the streams are (so that cancels of jobs claimed from
        now on are seen; a failure is retried by the threads), and start the threads."""
        store = self._store = self._open_store()
        groups = [[q] for q in self._queues] if store.settings.cluster else [self._queues]
        positioned = [threading.Event() for _ in groups]
        for i, group in enumerate(groups):
            thread = threading.Thread(
                target=self._main,
                args=(store, group, positioned[i]),
                name=self._name + (f"-{i}" if len(groups) > 1 else ""),
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        for event in positioned:
            # Claims wait for this (briefly: a Redis that cannot be reached does not hold the
            # worker up; the lease renewals tell the handlers meanwhile).
            event.wait(_POSITION_WAIT_S)

    def stop(self) -> None:
        """Ask the threads to end and cut their reads short (returns at once)."""
        self._halt.set()
        if self._store is not None:
            self._store.stop_waiting()

    def join(self, timeout: float) -> None:
        """Wait for the threads (at most `timeout` in all), then close the store.

        On Redis Cluster a read under way cannot be cut short (it would end at its own
        timeout, up to a minute): closing the store ends it, and the daemon threads go.
        """
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._store is not None:
            self._store.close()

    def _main(self, store: Store, queues: list[str], positioned: threading.Event) -> None:
        failing = Episode(
            f"watching cancels of {', '.join(queues)} failed (cancels reach the handlers at"
            " the next lease renewal meanwhile)",
            "watching cancels works again",
            first_s=0.5,
            cap_s=30.0,
            transient_cap_s=OUTAGE_CAP_S,
        )
        timeout_ms = 0  # the first read notes where the streams are
        while not self._halt.is_set():
            try:
                notices = store.wait_cancels(queues, timeout_ms=timeout_ms)
            except Exception as exc:
                if self._halt.is_set():
                    return  # the store is closing under the read
                self._metrics.add("connection_errors" if is_transient(exc) else "errors")
                self._halt.wait(failing.failed(exc, trace=not is_transient(exc)))
                continue
            failing.succeeded()
            if not timeout_ms:
                positioned.set()
                timeout_ms = int(_BLOCK_MS * random.uniform(0.9, 1.0))
            if notices:
                try:
                    self._notify(notices)
                except Exception:  # a bug: the renewals still tell the handlers
                    self._metrics.add("errors")
                    logger.exception("handling %d cancel(s) failed", len(notices))
