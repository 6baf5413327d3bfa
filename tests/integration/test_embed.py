"""`Worker.arun`: a worker inside the application's own event loop, stopped by a cancel or
by `stop`, with no job lost or left leased (docs/embedding.md)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import redisq
from redisq import JobState

from ._worker_support import job_state


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


async def _until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll `predicate` from the event loop (without blocking it) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_cancel_mid_run_loses_nothing_and_leaves_nothing_leased(app: redisq.App, pool: str) -> None:
    # Given jobs in flight: two running (one finishes within grace, one does not), the rest
    # prefetched or ready
    gate = threading.Event()
    started: list[int] = []

    @app.task(name="slow", queue="q")
    def slow(n: int) -> None:
        started.append(n)
        if n == 0:
            gate.wait(20)  # still running after the grace period: released
        # n == 1 returns at once once it runs

    @app.task(name="hold", queue="q")
    async def hold(n: int) -> None:
        started.append(n)
        await asyncio.sleep(0.3)  # finishes within the grace period

    refs = [slow.enqueue(0), hold.enqueue(1)] + [slow.enqueue(n) for n in range(2, 10)]
    worker = redisq.Worker(
        app, concurrency=2, prefetch=3, grace_ms=3_000, pool=pool, idle_wait_ms=50
    )

    async def main() -> None:
        task = asyncio.create_task(worker.arun())
        await _until(lambda: sorted(started)[:2] == [0, 1])
        # When the task awaiting arun() is cancelled while both handlers run
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Then arun returned only after the drain: the worker is no longer running
        assert not worker.running

    try:
        asyncio.run(main())
    finally:
        gate.set()
    # Then no job is leased: each completed, or is back in ready without a counted attempt
    states = {ref.id: job_state(app, "q", ref.id) for ref in refs}
    assert app.store.counts("q")[JobState.LEASED] == 0
    assert states[refs[1].id].state is JobState.COMPLETED  # finished within grace
    assert states[refs[0].id].state is JobState.READY  # released after grace
    assert states[refs[0].id].attempts == 0
    for job in states.values():
        assert job.state in (JobState.COMPLETED, JobState.READY)
        if job.state is JobState.READY:
            assert job.attempts == 0


def test_stop_from_the_same_loop_returns_none_after_the_jobs(app: redisq.App) -> None:
    # Given a worker in the loop, working async handlers on that very loop
    loops: list[asyncio.AbstractEventLoop] = []

    @app.task(name="note", queue="q")
    async def note(n: int) -> int:
        loops.append(asyncio.get_running_loop())
        return n

    refs = [note.enqueue(n) for n in range(5)]
    worker = redisq.Worker(app, pool="async", idle_wait_ms=50)

    async def main() -> asyncio.AbstractEventLoop:
        task = asyncio.create_task(worker.arun())
        await _until(lambda: app.store.counts("q")[JobState.COMPLETED] == 5)
        # When stop() is called from the loop itself
        worker.stop()
        # Then arun returns None (no CancelledError)
        await asyncio.wait_for(task, 20)
        assert task.result() is None
        return asyncio.get_running_loop()

    host = asyncio.run(main())
    # the handlers ran as tasks of the host's loop (no loop of the worker's own)
    assert loops
    assert all(loop is host for loop in loops)
    assert app.store.counts("q")[JobState.LEASED] == 0
    assert all(job_state(app, "q", r.id).state is JobState.COMPLETED for r in refs)


def test_arun_installs_no_signal_handler(app: redisq.App) -> None:
    @app.task(name="noop", queue="q")
    def noop() -> None:
        return None

    before: dict[signal.Signals, object] = {}
    seen: dict[signal.Signals, object] = {}
    worker = redisq.Worker(app, idle_wait_ms=50)  # handle_signals=True, the default

    async def main() -> None:
        # (asyncio.run installs its own SIGINT handler: compare from inside the loop)
        before.update({sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)})
        task = asyncio.create_task(worker.arun())
        ref = noop.enqueue()
        await _until(lambda: job_state(app, "q", ref.id).state is JobState.COMPLETED)
        seen.update({sig: signal.getsignal(sig) for sig in before})
        worker.stop()
        await task

    asyncio.run(main())
    assert seen == before


def test_a_second_cancel_releases_the_running_jobs_at_once(app: redisq.App) -> None:
    gate = threading.Event()
    started = threading.Event()

    @app.task(name="stuck", queue="q")
    def stuck() -> None:
        started.set()
        gate.wait(20)

    ref = stuck.enqueue()
    worker = redisq.Worker(app, grace_ms=60_000, idle_wait_ms=50)

    async def main() -> None:
        task = asyncio.create_task(worker.arun())
        await _until(started.is_set)
        task.cancel()
        await asyncio.sleep(0)  # the first cancel is taken (a graceful stop, 60 s grace)
        await _until(lambda: worker._stop.is_set())
        # When it is cancelled again
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)

    try:
        asyncio.run(main())
    finally:
        gate.set()
    # Then the running job was released long before the grace period
    job = job_state(app, "q", ref.id)
    assert (job.state, job.attempts) == (JobState.READY, 0)


def test_a_cancel_after_stop_is_not_a_second_stop_request(app: redisq.App) -> None:
    # Given a running job and a worker asked to stop (gracefully)
    started = threading.Event()

    @app.task(name="short", queue="q")
    def short() -> None:
        started.set()
        time.sleep(0.3)

    ref = short.enqueue()
    worker = redisq.Worker(app, grace_ms=20_000, idle_wait_ms=50)

    async def main() -> None:
        task = asyncio.create_task(worker.arun())
        await _until(started.is_set)
        worker.stop()
        # When the task is then cancelled (the usual lifespan shutdown)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # Then the job still finished within the grace period (not released at once)
    assert job_state(app, "q", ref.id).state is JobState.COMPLETED


def test_a_failing_start_hook_raises_from_arun_and_claims_nothing(app: redisq.App) -> None:
    @app.task(name="noop", queue="q")
    def noop() -> None:
        return None

    @app.on_worker_start
    def broken(worker: redisq.Worker) -> None:
        raise RuntimeError("no pool")

    ref = noop.enqueue()
    worker = redisq.Worker(app, idle_wait_ms=50)
    with pytest.raises(redisq.WorkerStartError):
        asyncio.run(worker.arun())
    assert job_state(app, "q", ref.id).state is JobState.READY
    assert not worker.running


def test_a_cancel_as_the_start_completes_is_not_lost() -> None:
    # The race that once left a cancelled arun() running: the cancel arrives in the loop
    # iteration in which the start (in its thread) completes.
    from redisq.worker import _finish

    async def main() -> tuple[int, list[int]]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        requests: list[int] = []
        task = asyncio.create_task(_finish(future, lambda: requests.append(1)))
        await asyncio.sleep(0)  # the task waits on the future
        future.set_result(5)
        task.cancel()  # before the task saw the result
        return await task, requests

    value, requests = asyncio.run(main())
    assert value == 5
    assert requests == [1]  # the cancel was taken as a stop request
