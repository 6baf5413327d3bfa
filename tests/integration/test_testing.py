"""The test helpers of redisq.testing: `App.run_until_empty` (and its async twin) and eager
mode (`App.eager`), as docs/testing.md describes them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq.backoff import fixed

from ._worker_support import job_state


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def _tasks(app: redisq.App) -> dict[str, Any]:
    calls: dict[str, int] = {"flaky": 0}

    @app.task(name="add", queue="q", store_result=True)
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="boom", queue="q", max_attempts=2, backoff=fixed(0))
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="flaky", queue="q", max_attempts=3, backoff=fixed(0), store_result=True)
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("try again")
        return "ok"

    return {"add": add, "boom": boom, "flaky": flaky, "calls": calls}


# ------------------------------------------------------------------------ run_until_empty


def test_run_until_empty_runs_everything_ready_and_summarizes(app: redisq.App) -> None:
    # Given ready jobs, a job failing for good, one failing twice then passing, and a job
    # scheduled an hour ahead
    t = _tasks(app)
    adds = [t["add"].enqueue(n, n) for n in range(5)]
    dead = t["boom"].enqueue()
    flaky = t["flaky"].enqueue()
    later = t["add"].options(delay_ms=3_600_000).enqueue(1, 1)
    # When the worker runs until the queues are empty
    summary = app.run_until_empty(timeout=30)
    # Then every ready job ran (retries due at once included), and the summary says so
    assert [r.result(timeout=0) for r in adds] == [0, 2, 4, 6, 8]
    assert flaky.result(timeout=0) == "ok"
    assert job_state(app, "q", dead.id).state is JobState.DEAD
    assert (summary.completed, summary.dead, summary.retried) == (6, 1, 3)
    assert summary.failed == 4
    # the job scheduled for later did not keep it running, nor did it run
    assert job_state(app, "q", later.id).state is JobState.SCHEDULED
    assert app.store.counts("q")[JobState.LEASED] == 0


def test_run_until_empty_on_empty_queues_returns_at_once(app: redisq.App) -> None:
    _tasks(app)
    summary = app.run_until_empty(timeout=10)
    assert (summary.completed, summary.failed) == (0, 0)


def test_run_until_empty_raises_on_timeout_and_leaves_nothing_leased(app: redisq.App) -> None:
    gate = threading.Event()

    @app.task(name="stuck", queue="q")
    def stuck() -> None:
        gate.wait(20)

    ref = stuck.enqueue()
    try:
        with pytest.raises(TimeoutError, match=r"were not empty after 0\.5 s"):
            app.run_until_empty(timeout=0.5)
    finally:
        gate.set()
    job = job_state(app, "q", ref.id)
    assert (job.state, job.attempts) == (JobState.READY, 0)  # released, attempt not counted


def test_arun_until_empty_runs_in_the_event_loop(app: redisq.App) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @app.task(name="mark", queue="q", store_result=True)
    async def mark(n: int) -> int:
        loops.append(asyncio.get_running_loop())
        return n * 10

    t = _tasks(app)
    refs = [mark.enqueue(n) for n in range(3)]
    dead = t["boom"].enqueue()

    async def main() -> tuple[redisq.testing.RunSummary, asyncio.AbstractEventLoop]:
        summary = await app.arun_until_empty(timeout=30, pool="async")
        return summary, asyncio.get_running_loop()

    summary, loop = asyncio.run(main())
    assert [r.result(timeout=0) for r in refs] == [0, 10, 20]
    assert loops
    assert all(x is loop for x in loops)
    assert (summary.completed, summary.dead, summary.failed) == (3, 1, 2)
    assert job_state(app, "q", dead.id).state is JobState.DEAD


# ---------------------------------------------------------------------------------- eager


@pytest.fixture
def offline() -> Iterator[redisq.App]:
    """An App whose server does not exist: eager mode must not need it."""
    made = redisq.App("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    yield made
    made.close()


def test_eager_runs_at_enqueue_without_a_server(offline: redisq.App) -> None:
    t = _tasks(offline)
    with offline.eager():
        ref = t["add"].enqueue(2, 3)
        # the result is there when enqueue returns
        assert ref.get() is not None
        assert ref.get().state is JobState.COMPLETED
        assert ref.result(timeout=0) == 5
        refs = t["add"].enqueue_many([((1, 1), {}), ((2, 2), {})])
        assert [r.result(timeout=0) for r in refs] == [2, 4]


def test_eager_retries_at_once_then_dead_letters(offline: redisq.App) -> None:
    # Given a task that always fails and one that fails twice before it passes
    t = _tasks(offline)
    retries: list[str] = []
    offline.on_retry(lambda ctx, outcome: retries.append(ctx.job.name))
    with offline.eager():
        flaky = t["flaky"].enqueue()
        dead = t["boom"].enqueue()
        # Then the flaky one completed on its third attempt, at once
        assert flaky.result(timeout=0) == "ok"
        snapshot = flaky.get()
        assert snapshot is not None
        assert snapshot.attempts == 3
        # and the failing one is dead after max_attempts, its error kept
        with pytest.raises(redisq.JobFailed) as failed:
            dead.result(timeout=0)
        assert failed.value.job.attempts == 2
        assert "ValueError: boom" in (failed.value.job.last_error or "")
    assert retries == ["flaky", "flaky", "boom"]


def test_eager_non_retryable_dies_on_the_first_attempt(offline: redisq.App) -> None:
    @offline.task(name="strict", queue="q", max_attempts=5, non_retryable=(KeyError,))
    def strict() -> None:
        raise KeyError("missing")

    with offline.eager():
        ref = strict.enqueue()
        with pytest.raises(redisq.JobFailed):
            ref.result(timeout=0)
        assert ref.get().attempts == 1  # type: ignore[union-attr]


def test_eager_a_task_calling_another_runs_it_nested(offline: redisq.App) -> None:
    order: list[str] = []

    @offline.task(name="child", queue="other", store_result=True)
    def child(n: int) -> int:
        order.append(f"child {n}")
        return n + 1

    @offline.task(name="parent", queue="q", store_result=True)
    def parent(n: int) -> int:
        order.append("parent start")
        inner = child.enqueue(n)
        value: int = inner.result(timeout=0)  # ready: it ran inside this enqueue
        order.append("parent end")
        return value * 2

    with offline.eager():
        assert parent.enqueue(4).result(timeout=0) == 10
    assert order == ["parent start", "child 4", "parent end"]


def test_eager_async_tasks_from_sync_and_async_callers(offline: redisq.App) -> None:
    @offline.task(name="double", queue="q", store_result=True)
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @offline.task(name="outer", queue="q", store_result=True)
    async def outer(n: int) -> int:
        ref = await double.aenqueue(n)
        value: int = await ref.aresult(timeout=0)
        sync_ref = double.enqueue(value)  # a sync enqueue inside the running loop
        result: int = sync_ref.result(timeout=0)
        return result

    with offline.eager():
        assert double.enqueue(3).result(timeout=0) == 6

        async def main() -> int:
            ref = await outer.aenqueue(5)
            value: int = await ref.aresult(timeout=0)
            return value

        assert asyncio.run(main()) == 20


def test_eager_block_uses_a_private_store_and_restores_the_app(app: redisq.App) -> None:
    t = _tasks(app)
    with app.eager() as mode:
        ref = t["add"].enqueue(1, 2)
        assert ref.result(timeout=0) == 3
        assert mode.base.counts("q")[JobState.COMPLETED] == 1
        with pytest.raises(RuntimeError, match="eager mode already"), app.eager():
            pass
    # nothing reached the App's own store, which is used again after the block
    assert app.store.counts("q")[JobState.COMPLETED] == 0
    assert app.store.get("q", ref.id) is None


def test_eager_leaves_no_current_context_in_the_caller(offline: redisq.App) -> None:
    # A handler's current_context() is its own: after an eager run the caller has none
    # (it once stayed set in the caller's thread, and leaked into later code).
    @offline.task(name="whoami", queue="q", store_result=True)
    def whoami() -> str:
        return redisq.current_context().id

    @offline.task(name="awhoami", queue="q", store_result=True)
    async def awhoami() -> str:
        return redisq.current_context().id

    with offline.eager():
        ref = whoami.enqueue()
        assert ref.result(timeout=0) == ref.id
        with pytest.raises(LookupError):
            redisq.current_context()

        async def main() -> None:
            aref = await awhoami.aenqueue()
            assert await aref.aresult(timeout=0) == aref.id
            with pytest.raises(LookupError):
                redisq.current_context()

        asyncio.run(main())
