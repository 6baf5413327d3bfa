"""The schedule driver: enqueues the due ticks of periodic schedules (docs/schedules.md).

Every worker runs one for the queues it serves (unless ``schedules=False``), and so does
`redisq scheduler`. Any number of drivers may run: the tick script decides on the Redis clock
which call enqueues a tick, so each tick becomes one job. A driver does not poll: after a pass
over its queues (`Store.tick_schedules`) it blocks on Redis (`Store.wait_schedules`, an XREAD
on the queues' schedule streams) until the next pending tick is due, or until a schedule of
its queues changes. Its store is its own, with a socket timeout above a minute
(`driver_store`), so that one blocking read can last a minute; a read that times out with no
change and no tick due leads to another read, not to a pass, and a pass runs at least every
`_PASS_S` anyway. Idle, a driver thus costs one blocking read a minute and one pass (one read
script per queue) every five minutes: about 0.02 commands/s.

On Redis Cluster each queue has its own slot, so a driver there drives one queue; the worker
starts one per queue.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.backoff
import redis.exceptions
import redis.retry

from redisq._connect import connect
from redisq._sync.store import Store
from redisq.errors import RedisqError
from redisq.worker._support import OUTAGE_CAP_S, is_transient, logger

__all__ = ["Drivers", "ScheduleDriver", "driver_store", "start_drivers"]

#: Pause after a failed pass (s): doubles up to the cap, jittered.
_RETRY_S = 0.5
_RETRY_CAP_S = 30.0
#: Pause after passes that found ticks due but enqueued none (another driver is on them, or
#: a clock step): keeps a driver from spinning on a tick it cannot take (s).
_SPIN_S = 0.05
#: The longest time between passes, whatever the waits say (s): a safety net.
_PASS_S = 300.0
#: The drivers' socket timeout (s): above the longest blocking read (60 s).
DRIVER_SOCKET_TIMEOUT_S = 65.0


def driver_store(url: str, prefix: str, options: dict[str, Any]) -> Store:
    """Open the store a driver uses: the app's settings with a socket timeout that lets a
    blocking read last a minute (a hung server delays only the schedules, by a minute), and no
    retry inside redis-py: the driver's loop retries a failed pass itself, after a pause. (On
    Redis Cluster redis-py would otherwise reconnect a read cut by the store's closing at
    stop, and the driver would stay blocked on a new socket for up to a minute.)"""
    extra: dict[str, Any] = {"socket_timeout": DRIVER_SOCKET_TIMEOUT_S}
    if not url.startswith("memory"):
        extra["retry"] = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    return connect(url, prefix=prefix, **{**options, **extra})


class ScheduleDriver(threading.Thread):
    """A daemon thread that drives the schedules of `queues` until `stop` is set.

    Args:
        store: the store to drive with (shared with the worker's other threads).
        queues: the queues whose schedules it drives (one on Redis Cluster).
        stop: set to stop; call `store.stop_waiting()` too, to cut a wait short.
        declare: called once before the first pass (the worker stores the app's declared
            schedules there); retried like a pass when it fails.
        name: the thread name.
    """

    def __init__(
        self,
        store: Store,
        queues: Sequence[str],
        stop: threading.Event,
        declare: Callable[[], object] | None = None,
        name: str = "redisq-schedules",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.store = store
        self.queues = list(queues)
        self._stop_event = stop
        self._declare = declare
        #: Jobs this driver enqueued (ticks it won).
        self.enqueued = 0
        #: Passes over the queues.
        self.passes = 0
        # Monotonic time by which the next pass must run (the next tick, or _PASS_S).
        self._pass_by = 0.0

    def run(self) -> None:
        delay = _RETRY_S
        declared = self._declare is None
        failing = False
        while not self._stop_event.is_set():
            try:
                if not declared and self._declare is not None:
                    self._declare()
                    declared = True
                self.pass_once()
                if failing:
                    logger.info("schedule driver %s: working again", self.name)
                failing, delay = False, _RETRY_S
            except (RedisqError, redis.exceptions.RedisError, OSError) as exc:
                if not failing:
                    logger.warning(
                        "schedule driver %s: %s; retrying (backing off up to %d s)",
                        self.name,
                        exc,
                        _RETRY_CAP_S,
                    )
                failing = True
                # Back soon after an outage (as the other loops); far on other errors.
                pause = min(delay, OUTAGE_CAP_S) if is_transient(exc) else delay
                self._stop_event.wait(pause * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _RETRY_CAP_S)

    def pass_once(self) -> None:
        """Tick every due schedule of the queues, then wait for the next tick or a change
        (waits that time out before either wait again, without a pass)."""
        started = time.monotonic()
        next_ms: float = _PASS_S * 1000
        enqueued = 0
        for queue in self.queues:
            ticks = self.store.tick_schedules(queue)
            enqueued += len(ticks.enqueued)
            if ticks.next_due_ms is not None:
                next_ms = min(next_ms, ticks.next_due_ms - ticks.now_ms)
        self.enqueued += enqueued
        self.passes += 1
        self._pass_by = started + max(0.0, next_ms) / 1000
        if next_ms <= 0:
            if not enqueued and not self._stop_event.is_set():
                self._stop_event.wait(_SPIN_S)
            return
        while not self._stop_event.is_set():
            left_ms = int((self._pass_by - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            block_ms = min(left_ms, self.store.settings.max_block_ms)
            if self.store.wait_schedules(self.queues, timeout_ms=block_ms):
                return  # a schedule changed: pass again


class Drivers:
    """The running drivers of a worker or scheduler, on their own store."""

    def __init__(self, store: Store, drivers: list[ScheduleDriver], stop: threading.Event):
        self.store = store
        self.drivers = drivers
        self._stop = stop

    def stop(self) -> None:
        """Ask every driver to stop and cut their waits short (returns at once)."""
        self._stop.set()
        self.store.stop_waiting()

    def join(self, timeout: float) -> None:
        """Wait for the drivers to end (at most `timeout` each), then close the store."""
        for driver in self.drivers:
            driver.join(timeout)
        self.store.close()


def start_drivers(
    url: str,
    prefix: str,
    options: dict[str, Any],
    queues: Sequence[str],
    declare: Callable[[Store], object] | None,
    name: str,
) -> Drivers:
    """Start the drivers of `queues` on a store of their own (`driver_store`): one driver for
    all the queues, or one per queue on Redis Cluster. `declare(store)` runs first."""
    store = driver_store(url, prefix, options)
    stop = threading.Event()
    groups = [[q] for q in queues] if store.settings.cluster else [list(queues)]
    drivers = []
    for i, group in enumerate(groups):
        driver = ScheduleDriver(
            store,
            group,
            stop,
            (lambda: declare(store)) if declare is not None and i == 0 else None,
            f"{name}-schedules" + (f"-{i}" if len(groups) > 1 else ""),
        )
        driver.start()
        drivers.append(driver)
    return Drivers(store, drivers, stop)
