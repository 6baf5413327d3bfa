"""`redisq worker`, `redisq.Supervisor` and `redisq.Worker` share the same defaults."""

from __future__ import annotations

import inspect
import threading
import time
from types import SimpleNamespace
from typing import Any

import redis.exceptions

import redisq
from redisq.cli import build_parser
from redisq.supervisor import WORKER_OPTIONS
from redisq.worker import _Runtime
from redisq.worker._schedules import ScheduleDriver
from redisq.worker._support import Episode


def test_the_command_line_passes_the_workers_own_defaults() -> None:
    args = build_parser().parse_args(["worker", "tasks:app"])
    defaults = inspect.signature(redisq.Worker).parameters
    passed = [name for name in WORKER_OPTIONS if hasattr(args, name)]
    assert {"concurrency", "prefetch", "pool", "grace_ms"} <= set(passed)
    for name in passed:
        assert getattr(args, name) == defaults[name].default, name


def test_a_worker_built_with_the_command_lines_defaults_is_a_default_worker() -> None:
    app = redisq.App()
    app.task(queue="q")(lambda: None)
    args = build_parser().parse_args(["worker", "tasks:app"])
    options = {name: getattr(args, name) for name in WORKER_OPTIONS if hasattr(args, name)}
    built, plain = redisq.Worker(app, **options), redisq.Worker(app)
    for attribute in ("queues", "concurrency", "pool", "prefetch", "grace_ms", "idle_wait_ms"):
        assert getattr(built, attribute) == getattr(plain, attribute), attribute
    # The defaults themselves: 10 handler threads, the adaptive buffer
    assert (plain.concurrency, plain.prefetch) == (10, None)
    assert redisq.Worker(app, pool="async").concurrency == 100


def test_the_supervisor_leaves_the_workers_defaults_alone() -> None:
    supervisor = redisq.Supervisor("tasks:app", processes=2)
    assert supervisor.worker_options == {}  # each child builds Worker(app) as it is
    grace = inspect.signature(redisq.Worker).parameters["grace_ms"].default
    assert supervisor.grace_ms == grace


def test_after_an_outage_a_worker_tries_again_within_the_plans_5_s() -> None:
    # The reliability plan (S8): every worker claims again within 5 s of a restore. Its
    # fetcher and settler pause at most their cap, +25% jitter, between tries; a cap of 5 s
    # let one pause reach 6.25 s (S8 saw claims resume 5.4-5.5 s after a restore).
    app = redisq.App("memory://")
    app.task(queue="q")(lambda: None)
    runtime = _Runtime(redisq.Worker(app), app.store, app.hooks)
    error = ConnectionError("refused")
    for episode in (runtime.fetcher._outage, runtime.settler._outage):
        pauses = [episode.failed(error) for _ in range(40)]
        assert max(pauses) <= 3.75, episode
        assert max(pauses) >= 3.0 * 0.75  # it does back off


class _Unreachable:
    """A store whose every call fails as when Redis is down."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise redis.exceptions.ConnectionError("Connection refused")

        return fail


def test_the_reaper_and_the_schedule_driver_come_back_soon_after_an_outage() -> None:
    # README: "When Redis cannot be reached every loop backs off (0.1 s doubling to 3 s)".
    # The reaper's per-queue episode backed off to 60 s (+25%) on any error, so after an
    # outage a worker reaped again only up to 75 s later (chaos S8 seed 22: "trying again in
    # 73.3 s"); the schedule driver waited up to 36 s, so ticks came that late.
    app = redisq.App("memory://")
    app.task(queue="q")(lambda: None)
    runtime = _Runtime(redisq.Worker(app), app.store, app.hooks)
    keeper = runtime.keeper
    keeper._store = _Unreachable()
    for _ in range(12):
        failing = keeper._reap_failing.get("q")
        if failing is not None:
            failing.retry_at = 0.0  # due now: the next reap tries again
        before = time.monotonic()
        keeper._reap()
        assert keeper._reap_failing["q"].retry_at - before <= 3.75
    # An unexpected error still backs off far.
    episode = Episode("p", "r", first_s=1.0, cap_s=60.0, transient_cap_s=3.0)
    pauses = [episode.failed(ValueError("bug")) for _ in range(12)]
    assert max(pauses) > 40

    stop = threading.Event()
    waits: list[float] = []

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        if len(waits) >= 12:
            stop.set()
        return stop.is_set()

    driver = ScheduleDriver(_Unreachable(), ["q"], stop)  # type: ignore[arg-type]
    driver._stop_event = SimpleNamespace(is_set=stop.is_set, wait=wait)  # type: ignore[assignment]
    driver.run()
    assert len(waits) == 12
    assert max(waits) <= 3.0 * 1.2
