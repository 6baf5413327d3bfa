"""Rate limits with workers: RateLimited in a handler (test clock), and four worker processes
on a 50/s limit (a ledger of lease grant times on the Redis clock, polled with a deadline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import redisq
from redisq import JobState
from tests.integration._worker_support import running, wait_job
from tests.support.clock import TestClock
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
LONG = 600_000


def test_rate_limited_holds_the_queue_and_does_not_use_the_attempt(url: str, prefix: str) -> None:
    clock = TestClock()
    app = redisq.App(url, prefix=prefix, clock=clock)
    runs: list[int] = []

    @app.task(name="call", queue="api", max_attempts=1, lease_ms=LONG)
    def call(ctx: redisq.Context) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            raise redisq.RateLimited(30_000)

    worker = redisq.Worker(app, concurrency=2, idle_wait_ms=50, grace_ms=0)
    with running(worker):
        ref = call.enqueue()
        wait_for(lambda: worker.metrics.released == 1)  # the limited run was settled
        job = wait_job(app, ref, state=JobState.READY)
        assert job.attempts == 0  # the run that met the limit does not count
        assert job.last_error is None
        held = app.store.rate_limit("api")
        assert held.limit is None
        assert held.next_at_ms == clock.now_ms + 30_000
        # Held for every claimer: a claim of the queue leases nothing.
        assert app.store.claim("api", worker="other", count=5) == []
        clock.advance(30_000)
        assert wait_job(app, ref, state=JobState.COMPLETED).attempts == 1
    assert runs == [1, 1]  # with max_attempts=1: the limited run did not use it up
    app.close()


def test_rate_limited_refuses_a_bad_delay() -> None:
    with pytest.raises(redisq.InvalidArgument) as info:
        redisq.RateLimited(-1)
    assert info.value.field == "delay_ms"


RATE = 50
SECONDS = 30


@pytest.mark.slow
def test_four_worker_processes_keep_a_50_per_second_limit(real_url: str, prefix: str) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    store.set_rate_limit("rq", f"{RATE}/s")
    ledger = f"{prefix}:ledger"
    total = RATE * (SECONDS + 8)
    payload = {"args": [ledger], "kwargs": {}}
    for i in range(0, total, 500):
        store.enqueue_many("rq", [payload] * min(500, total - i), name="tick")
    env = {**os.environ, "REDISQ_PROC_URL": real_url, "REDISQ_PROC_PREFIX": prefix}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "redisq", "worker", "tests.integration._rate_app:app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(4)
    ]
    try:

        def span() -> list[float] | None:
            starts = sorted(float(t) for t in store.redis.lrange(ledger, 0, -1))
            return starts if starts and starts[-1] - starts[0] >= SECONDS + 1 else None

        starts = wait_for(span, SECONDS + 60, 0.2, message=lambda: "the ledger never spanned 31 s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        store.close()
    # 30 s from the first grant (the workers may still have been starting before it).
    first = starts[0] + 1.0
    window = [t for t in starts if first <= t < first + SECONDS]
    busiest = max(
        sum(1 for u in window[i : i + RATE + 5] if u < t + 1.0) for i, t in enumerate(window)
    )
    assert busiest <= RATE + 1, f"{busiest} leases granted in one second"
    assert len(window) >= 0.95 * RATE * SECONDS, f"{len(window)} leases granted in {SECONDS} s"
    assert all(p.returncode == 0 for p in procs)


def test_a_task_gives_its_queue_a_limit_that_workers_store(url: str, prefix: str) -> None:
    app = redisq.App(url, prefix=prefix)

    @app.task(name="a", queue="api", rate_limit="5/m")
    def a() -> None: ...

    @app.task(name="b", queue="api")
    def b() -> None: ...

    assert (a.rate_limit, b.rate_limit) == ("5/m", None)
    assert app.rate_limits() == {"api": "5/m"}
    for _ in range(3):
        a.enqueue()
    worker = redisq.Worker(app, concurrency=2, idle_wait_ms=50, grace_ms=0)
    with running(worker):
        wait_for(lambda: worker.metrics.completed == 1)
        assert app.store.rate_limit("api").limit == "5/m"
        # The next two wait their turns, 12 s apart: none started meanwhile.
        assert app.store.counts("api")[JobState.READY] == 2
    app.close()


def test_task_rate_limits_are_validated_and_must_agree_per_queue(url: str, prefix: str) -> None:
    app = redisq.App(url, prefix=prefix)
    with pytest.raises(redisq.InvalidArgument) as bad:
        app.task(name="x", queue="api", rate_limit="fast")(lambda: None)
    assert bad.value.field == "rate_limit"

    @app.task(name="a", queue="api", rate_limit="5/s")
    def a() -> None: ...

    with pytest.raises(redisq.InvalidArgument) as clash:
        app.task(name="b", queue="api", rate_limit="6/s")(lambda: None)
    assert clash.value.field == "rate_limit"
    assert "'a'" in str(clash.value)
    assert set(app.tasks) == {"a"}  # nothing registered

    @app.task(name="c", queue="api", rate_limit="5/s")
    def c() -> None: ...

    app.close()
