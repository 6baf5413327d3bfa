"""`redisq worker`, `redisq.Supervisor` and `redisq.Worker` share the same defaults."""

from __future__ import annotations

import inspect

import redisq
from redisq.cli import build_parser
from redisq.supervisor import WORKER_OPTIONS
from redisq.worker import _Runtime


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
