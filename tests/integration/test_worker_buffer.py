"""Jobs a worker claimed ahead of its handlers (its buffer): leases, attempts, releases.

The default buffer holds what the handlers finish in a few milliseconds (see
redisq/worker/_sizing.py); these tests check what it must never cost: a lease or an attempt
used up while a job waits, a job held by one worker while another idles, a prefetched job
kept at stop, a cancelled job run anyway. None of them times anything.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from tests.support.polling import wait_for

from ._worker_support import running

POOLS = ["thread", "async"]


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def _all_jobs(app: redisq.App, queue: str = "q") -> list[redisq.Job]:
    return app.store.list(queue, limit=10_000)


def _completed(app: redisq.App, count: int, queue: str = "q") -> bool:
    return app.store.counts(queue)[JobState.COMPLETED] == count


@pytest.mark.parametrize("pool", POOLS)
def test_jobs_waiting_in_a_buffer_keep_their_lease_and_their_attempt(
    app: redisq.App, pool: str
) -> None:
    # Given jobs whose lease (300 ms) is shorter than the time the last of them waits in a
    # fixed buffer of 10 behind one handler that takes 60 ms a job (about 600 ms)
    runs: Counter[str] = Counter()

    if pool == "thread":

        @app.task(name="slow", queue="q", lease_ms=300)
        def slow(n: int, ctx: redisq.Context) -> None:
            runs[ctx.id] += 1
            time.sleep(0.06)

    else:

        @app.task(name="slow", queue="q", lease_ms=300)
        async def slow_async(n: int, ctx: redisq.Context) -> None:
            runs[ctx.id] += 1
            await asyncio.sleep(0.06)

    task = app.tasks["slow"]
    task.enqueue_many([task.call(n) for n in range(12)])
    worker = redisq.Worker(app, pool=pool, concurrency=1, prefetch=10, idle_wait_ms=50, grace_ms=0)
    # When one worker runs them all
    with running(worker):
        wait_for(lambda: _completed(app, 12), timeout=30)
    # Then each ran once, on its first attempt: the keeper renewed the waiting ones' leases
    assert sorted(runs.values()) == [1] * 12
    assert {(job.state, job.attempts) for job in _all_jobs(app)} == {(JobState.COMPLETED, 1)}
    metrics = worker.metrics
    assert (metrics.lease_lost, metrics.refused, metrics.released, metrics.abandoned) == (
        0,
        0,
        0,
        0,
    )


def _quick_then_slow(
    app: redisq.App, quick: int, slow: int, slow_s: float, lease_ms: int
) -> Counter[str]:
    """Enqueue `quick` no-op jobs, then `slow` jobs of `slow_s` (lease `lease_ms`), in that
    order on queue q; return the counter of runs per job id that their handlers fill."""
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @app.task(name="quick", queue="q")
    def quick_task(n: int, ctx: redisq.Context) -> None:
        with lock:
            runs[ctx.id] += 1

    @app.task(name="slow", queue="q", lease_ms=lease_ms)
    def slow_task(n: int, ctx: redisq.Context) -> None:
        with lock:
            runs[ctx.id] += 1
        time.sleep(slow_s)

    quick_task.enqueue_many([quick_task.call(n) for n in range(quick)])
    slow_task.enqueue_many([slow_task.call(n) for n in range(slow)])
    return runs


def test_slow_jobs_behind_quick_ones_run_once_each_on_their_first_attempt(
    app: redisq.App,
) -> None:
    # Given quick jobs (the default buffer grows to hundreds) followed by slow jobs whose
    # lease (250 ms) is shorter than the slow jobs' total time in the buffer (about 800 ms)
    runs = _quick_then_slow(app, quick=200, slow=20, slow_s=0.08, lease_ms=250)
    worker = redisq.Worker(app, concurrency=2, idle_wait_ms=50, grace_ms=0)
    # When one worker with the default buffer runs them
    with running(worker):
        wait_for(lambda: _completed(app, 220), timeout=30)
    # Then every job ran once and completed on its first attempt
    assert sorted(runs.values()) == [1] * 220
    assert {(job.state, job.attempts) for job in _all_jobs(app)} == {(JobState.COMPLETED, 1)}
    metrics = worker.metrics
    assert (metrics.lease_lost, metrics.refused, metrics.abandoned) == (0, 0, 0)
    # And the slow ones it had claimed beyond its new estimate went back to the queue (the
    # release does not count the attempt) instead of waiting behind the slow handlers
    assert metrics.released >= 1


def test_an_idle_worker_gets_the_slow_jobs_another_claimed_for_quick_ones(
    app: redisq.App,
) -> None:
    # Given worker A, alone, has claimed every job: quick ones, then slow ones
    runs = _quick_then_slow(app, quick=200, slow=20, slow_s=0.1, lease_ms=30_000)
    first = redisq.Worker(app, concurrency=2, idle_wait_ms=50, grace_ms=0, name="a")
    second = redisq.Worker(app, concurrency=2, idle_wait_ms=50, grace_ms=0, name="b")
    with running(first):
        wait_for(lambda: app.store.counts("q")[JobState.READY] == 0, timeout=20)
        # When worker B starts while A's two handlers work through the slow jobs
        with running(second):
            wait_for(lambda: _completed(app, 220), timeout=30)
    # Then A gave back what it could not start soon, and B ran some of it
    assert first.metrics.released >= 1
    assert second.metrics.completed >= 1
    assert sorted(runs.values()) == [1] * 220
    assert {(job.state, job.attempts) for job in _all_jobs(app)} == {(JobState.COMPLETED, 1)}


def test_stop_gives_back_the_default_buffer_without_counting_attempts(
    app: redisq.App,
) -> None:
    # Given a task whose first 200 jobs are quick (the buffer grows to hundreds) and whose
    # later ones block, so that the worker holds claimed jobs it cannot start
    ran: list[int] = []
    gate = threading.Event()
    lock = threading.Lock()

    @app.task(name="work", queue="q")
    def work(n: int) -> None:
        with lock:
            ran.append(n)
            count = len(ran)
        if count > 200:
            gate.wait(30)

    work.enqueue_many([work.call(n) for n in range(1_000)])
    worker = redisq.Worker(app, concurrency=2, idle_wait_ms=50, grace_ms=0)
    try:
        with running(worker):
            wait_for(lambda: len(ran) == 202, timeout=20)
        # When it stopped (running() stops at once: the two blocked jobs are released too)
        # Then nothing claimed stays leased, and only the jobs that ran used an attempt
        jobs = _all_jobs(app)
        states = Counter((job.state, job.attempts) for job in jobs)
        assert states == {(JobState.COMPLETED, 1): 200, (JobState.READY, 0): 800}, states
        assert len(ran) == 202
        assert worker.metrics.released >= 2
    finally:
        gate.set()


def test_a_cancelled_job_waiting_in_the_buffer_never_runs(app: redisq.App) -> None:
    # Given one handler busy with a blocking job and a second job waiting in the buffer,
    # with short leases (renewed every 100 ms)
    ran: list[int] = []
    gate = threading.Event()

    @app.task(name="work", queue="q", lease_ms=300)
    def work(n: int) -> None:
        ran.append(n)
        if n == 0:
            gate.wait(30)

    blocker = work.enqueue(0)
    waiting = work.enqueue(1)
    worker = redisq.Worker(app, concurrency=1, prefetch=1, idle_wait_ms=50, grace_ms=0)
    try:
        with running(worker):
            wait_for(lambda: ran == [0], timeout=20)
            wait_for(lambda: app.store.get("q", waiting.id).state is JobState.LEASED)
            # When the waiting job is cancelled, and the worker hears of it (its cancel watch,
            # or a renewal that finds the lease lost, whichever comes first)
            assert app.store.cancel("q", waiting.id)
            wait_for(lambda: worker.metrics.cancelled + worker.metrics.lease_lost == 1, timeout=20)
            # (and a later job, claimed after it, marks when the buffer has moved past it)
            later = work.enqueue(2)
            gate.set()
            wait_for(lambda: app.store.get("q", later.id).state is JobState.COMPLETED)
        # Then the handler never ran it (it would have acted on a cancelled job)
        assert ran == [0, 2]
        job: Any = app.store.get("q", waiting.id)
        assert job.state is JobState.CANCELLED
        assert app.store.get("q", blocker.id).state is JobState.COMPLETED
    finally:
        gate.set()
