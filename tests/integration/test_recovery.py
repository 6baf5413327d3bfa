"""Mass recovery: expired leases come back in seconds, not at a wake-up every few seconds
(issue 9, point 2).

A claim reaps at most a batch of expired leases; when it leaves more behind, its reply says
so (next_in_ms = 0) and the store knows to claim again at once instead of waiting for a wake
that never comes. The worker's reaper loops while its reaps come back full.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq.worker import _keeper
from redisq.worker._keeper import Keeper
from redisq.worker._state import State
from redisq.worker._support import WorkerMetrics
from tests.integration._worker_support import running
from tests.support.clock import TestClock
from tests.support.polling import wait_for

Q = "fleet"


def _expire_with_clock(client: Any, clock: TestClock, n: int, **options: Any) -> None:
    client.enqueue_many(Q, list(range(n)), **options)
    assert len(client.claim(Q, worker="gone", count=n, lease_ms=1_000)) == n
    clock.advance(1_001)


def _expire_now(store: redisq.Store, n: int) -> None:
    """Lease `n` ready jobs of Q for a moment, and wait (Redis clock) until the leases ended."""
    deadline = 0
    leased = 0
    while leased < n:
        jobs = store.claim(Q, worker="gone", count=min(1000, n - leased), lease_ms=1_000)
        leased += len(jobs)
        deadline = max([deadline, *(j.lease_deadline_ms or 0 for j in jobs)])

    def redis_ms() -> int:
        seconds, micros = store.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    wait_for(lambda: redis_ms() > deadline, timeout=5, message="the leases to end")


@pytest.mark.parametrize("max_attempts", [3, 1], ids=["to_ready", "to_dead"])
def test_a_claim_that_left_expired_leases_behind_says_to_claim_again_at_once(
    client: Any, clock: TestClock, max_attempts: int
) -> None:
    # Given 250 expired leases: more than one claim reaps (its batch is 100)
    _expire_with_clock(client, clock, 250, max_attempts=max_attempts)
    # When a claim reaps the first 100
    jobs = client.claim(Q, worker="w", count=1_000)
    assert len(jobs) == (100 if max_attempts == 3 else 0)
    # Then the store knows that more is due at once: a wait returns without blocking
    assert client.wait(Q, timeout_ms=0) is True
    # and claiming on brings every lease back
    total = len(jobs)
    for _ in range(3):
        total += len(client.claim(Q, worker="w", count=1_000))
    assert client.counts(Q)[JobState.LEASED] == total
    done = JobState.LEASED if max_attempts == 3 else JobState.DEAD
    assert client.counts(Q)[done] == 250
    # Once nothing is left behind, a short claim does not say "again" any more
    client.claim(Q, worker="w", count=1_000)
    assert client.wait(Q, timeout_ms=0) is False


def test_due_jobs_beyond_the_batch_also_say_claim_again(client: Any, clock: TestClock) -> None:
    # Given 250 scheduled jobs that are due (a claim promotes 100)
    client.enqueue_many(Q, list(range(250)), delay_ms=10)
    clock.advance(10)
    # When a claim promotes and leases the first 100: the store knows to claim again at once
    assert len(client.claim(Q, worker="w", count=1_000)) == 100
    assert client.wait(Q, timeout_ms=0) is True
    assert len(client.claim(Q, worker="w", count=1_000)) == 100
    assert len(client.claim(Q, worker="w", count=1_000)) == 50
    assert client.wait(Q, timeout_ms=0) is False


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    options: dict[str, Any] = {}
    if not url.startswith("memory://"):
        options["socket_timeout"] = 30  # waits may block for 29 s: a missed wake would show
    app = redisq.App(url, prefix=prefix, **options)
    yield app
    app.close()


def test_a_worker_brings_many_expired_leases_back_without_waiting_for_a_wake(
    app: redisq.App,
) -> None:
    # Given 300 jobs whose holder died (their leases expired), three claims' worth of reaping
    @app.task(name="noop", queue=Q)
    def noop(n: int) -> None:
        pass

    # (enqueued without the task's own lease_ms, so that a 1 ms lease can be taken)
    app.store.enqueue_many(Q, [{"args": [n], "kwargs": {}} for n in range(300)], name="noop")
    _expire_now(app.store, 300)
    # When a worker starts (its periodic reaper far off: only claims reap here)
    worker = redisq.Worker(
        app,
        concurrency=8,
        prefetch=100,
        reaper_interval_ms=3_600_000,
        idle_wait_ms=60_000,
        handle_signals=False,
    )
    with running(worker):
        # Then it brings them all back and runs them, never waiting for a wake in between
        wait_for(
            lambda: app.store.counts(Q)[JobState.COMPLETED] == 300,
            timeout=15,
            message=lambda: f"300 completed; now {app.store.counts(Q)}",
        )
    assert worker.metrics.completed == 300


def test_the_reaper_loops_while_its_reaps_come_back_full(
    app: redisq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 2,500 expired leases (a reap returns at most 1,000)
    store = app.store
    store.enqueue_many(Q, list(range(2_500)))
    _expire_now(store, 2_500)
    keeper = Keeper(
        store,
        State(1, 0, lambda: None, lambda _: None),
        [Q],
        10_000,
        WorkerMetrics(),
        lambda _: None,
        lambda _: 0,
        "test-keeper",
    )
    # When the keeper reaps once, with time to spare: every lease comes back
    monkeypatch.setattr(_keeper, "REAP_BUDGET_S", 60.0)
    assert keeper._reap() is False
    assert store.counts(Q)[JobState.READY] == 2_500
    # With a time budget that runs out, it says so, and the next rounds finish the job
    _expire_now(store, 2_500)
    monkeypatch.setattr(_keeper, "REAP_BUDGET_S", 0.0)
    rounds = 1
    while keeper._reap():
        rounds += 1
        assert rounds <= 3
    assert rounds == 3
    assert store.counts(Q)[JobState.READY] == 2_500
    assert store.counts(Q)[JobState.LEASED] == 0
