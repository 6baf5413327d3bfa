"""The schedule driver: enqueues the due ticks of periodic schedules (docs/schedules.md).

Every worker runs one for the queues it serves (unless ``schedules=False``), and so does
`redisq scheduler`. Any number of drivers may run: the tick script decides on the Redis clock
which call enqueues a tick, so each tick becomes one job. A driver does not poll: after a pass
over its queues (`Store.tick_schedules`) it blocks on Redis (`Store.wait_schedules`, an XREAD
on the queues' schedule streams) until the next pending tick is due, or until a schedule of
its queues changes, and at most `Settings.max_block_ms` (60 s). Idle, with no schedule due
within the minute, a driver costs one pass (one read script per queue) and one blocking read
a minute.

On Redis Cluster each queue has its own slot, so a driver there drives one queue; the worker
starts one per queue.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence

import redis.exceptions

from redisq._core.schedules import wait_timeout
from redisq._sync.store import Store
from redisq.errors import RedisqError
from redisq.worker._support import logger

__all__ = ["ScheduleDriver", "start_drivers"]

#: Pause after a failed pass (s): doubles up to the cap, jittered.
_RETRY_S = 0.5
_RETRY_CAP_S = 30.0
#: Pause after passes that found ticks due but enqueued none (another driver is on them, or
#: a clock step): keeps a driver from spinning on a tick it cannot take (s).
_SPIN_S = 0.05


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
                self._stop_event.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _RETRY_CAP_S)

    def pass_once(self) -> None:
        """Tick every due schedule of the queues, then wait for the next tick or a change."""
        wait_ms = self.store.settings.max_block_ms
        enqueued = 0
        for queue in self.queues:
            ticks = self.store.tick_schedules(queue)
            enqueued += len(ticks.enqueued)
            wait_ms = min(wait_ms, wait_timeout(self.store.settings, ticks))
        self.enqueued += enqueued
        self.passes += 1
        if self._stop_event.is_set():
            return
        if wait_ms <= 0:
            if not enqueued:
                self._stop_event.wait(_SPIN_S)
            return
        self.store.wait_schedules(self.queues, timeout_ms=wait_ms)


def start_drivers(
    store: Store,
    queues: Sequence[str],
    stop: threading.Event,
    declare: Callable[[], object] | None,
    name: str,
) -> list[ScheduleDriver]:
    """Start the drivers of `queues`: one for all of them, or one per queue on a cluster."""
    groups = [[q] for q in queues] if store.settings.cluster else [list(queues)]
    drivers = []
    for i, group in enumerate(groups):
        driver = ScheduleDriver(
            store,
            group,
            stop,
            declare if i == 0 else None,
            f"{name}-schedules" + (f"-{i}" if len(groups) > 1 else ""),
        )
        driver.start()
        drivers.append(driver)
    return drivers
