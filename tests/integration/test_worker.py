"""The worker runs handlers: outcomes, retries and backoff, signals, leases, timeouts, cancels.

Workers run in a background thread (`running`); tests poll the store with deadlines. Retry
delays are checked on the test clock, where they are exact.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from tests.support.clock import TestClock
from tests.support.polling import wait_for
from tests.support.servers import ServerProcess

from ._worker_support import running, wait_job

POOLS = ["thread", "async"]
#: A lease longer than every test clock step (10 minutes).
LONG = 600_000


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def make_worker(app: redisq.App, **options: Any) -> redisq.Worker:
    options.setdefault("concurrency", 4)
    options.setdefault("idle_wait_ms", 50)
    options.setdefault("grace_ms", 0)
    return redisq.Worker(app, **options)


@pytest.mark.parametrize("pool", POOLS)
def test_sync_and_async_handlers_get_their_arguments_and_context(
    app: redisq.App, pool: str
) -> None:
    @app.task(name="sync", queue="q", store_result=True)
    def sync_task(x: int, ctx: redisq.Context, *, y: int = 0) -> list[Any]:
        ctx.progress({"half": True})
        same = redisq.current_context() is ctx
        return [x + y, ctx.attempt, ctx.token == ctx.job.token, ctx.id, same, ctx.cancelled]

    @app.task(name="async", queue="q", store_result=True)
    async def async_task(ctx: redisq.Context, x: int) -> list[Any]:
        await asyncio.sleep(0)
        await ctx.aprogress(7)
        await ctx.aheartbeat()
        return [x * 2, ctx.attempt, redisq.current_context() is ctx, ctx.worker]

    with running(make_worker(app, pool=pool, name=f"w-{pool}")) as worker:
        one = sync_task.enqueue(1, y=2)
        two = async_task.enqueue(21)
        assert one.result(timeout=10) == [3, 1, True, one.id, True, False]
        assert two.result(timeout=10) == [42, 1, True, f"w-{pool}"]
        assert wait_job(app, one, state=JobState.COMPLETED).progress == {"half": True}
        assert wait_job(app, two, state=JobState.COMPLETED).progress == 7
        wait_for(lambda: worker.metrics.completed == 2)
    with pytest.raises(LookupError, match="inside a task handler"):
        redisq.current_context()


def test_failures_retry_on_the_task_backoff_schedule_then_die_with_the_traceback(
    url: str, prefix: str
) -> None:
    # Given a task that always fails, on the test clock so delays are exact
    clock = TestClock()
    app = redisq.App(url, prefix=prefix, clock=clock)
    runs: list[int] = []

    @app.task(name="flaky", queue="q", max_attempts=3, backoff=redisq.backoff.linear(1000, 500))
    def flaky(n: int, ctx: redisq.Context) -> None:
        runs.append(ctx.attempt)
        raise ValueError(f"bad input {n}")

    with running(make_worker(app)):
        ref = flaky.enqueue(7)
        # When attempts fail, Then each retry is due exactly after the backoff
        delays = []
        for attempt in (1, 2):
            job = wait_job(app, ref, state=JobState.SCHEDULED, attempts=attempt)
            delays.append(job.run_at_ms - clock.now_ms)
            assert job.last_error is not None
            assert job.last_error.startswith("ValueError: bad input 7")
            clock.advance(job.run_at_ms - clock.now_ms)
            app.store.reap("q")  # promotes the due job and wakes the worker
        dead = wait_job(app, ref, state=JobState.DEAD)
    assert delays == [1000, 1500]
    assert runs == [1, 2, 3]
    assert dead.attempts == 3
    assert dead.last_error is not None
    assert "Traceback (most recent call last)" in dead.last_error
    assert "in flaky" in dead.last_error
    app.close()


def test_retry_signal_uses_its_delay_or_the_backoff(url: str, prefix: str) -> None:
    clock = TestClock()
    app = redisq.App(url, prefix=prefix, clock=clock)

    # Leases far longer than any clock step: a claim sent just before an advance runs with
    # the earlier "now", and must still hold a valid lease after it.
    @app.task(
        name="r", queue="q", max_attempts=4, backoff=redisq.backoff.fixed(30_000), lease_ms=LONG
    )
    def again(ctx: redisq.Context) -> int:
        if ctx.attempt == 1:
            raise redisq.Retry(delay_ms=5_000, reason="not yet")
        if ctx.attempt == 2:
            raise redisq.Retry()
        return ctx.attempt

    with running(make_worker(app)) as worker:
        ref = again.enqueue()
        job = wait_job(app, ref, state=JobState.SCHEDULED, attempts=1)
        assert job.run_at_ms - clock.now_ms == 5_000
        assert job.last_error is not None
        assert job.last_error.startswith("redisq.errors.Retry: not yet")
        clock.advance(5_000)
        app.store.reap("q")
        job = wait_job(app, ref, state=JobState.SCHEDULED, attempts=2)
        assert job.run_at_ms - clock.now_ms == 30_000
        clock.advance(30_000)
        app.store.reap("q")
        done = wait_job(app, ref, state=JobState.COMPLETED)
        assert done.attempts == 3
        wait_for(lambda: worker.metrics.retried == 2)
    app.close()


def test_snooze_puts_the_job_back_for_its_delay(url: str, prefix: str) -> None:
    clock = TestClock()
    app = redisq.App(url, prefix=prefix, clock=clock)

    runs: list[int] = []

    @app.task(name="s", queue="q", max_attempts=1, lease_ms=LONG)
    def sleepy(ctx: redisq.Context) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            raise redisq.Snooze(60_000)

    with running(make_worker(app)) as worker:
        ref = sleepy.enqueue()
        job = wait_job(app, ref, state=JobState.SCHEDULED)
        assert job.run_at_ms - clock.now_ms == 60_000
        assert job.last_error is None
        assert job.attempts == 0  # the snoozed run does not count
        clock.advance(60_000)
        app.store.reap("q")
        assert wait_job(app, ref, state=JobState.COMPLETED).attempts == 1
        wait_for(lambda: worker.metrics.snoozed == 1)
    assert runs == [1, 1]  # even with max_attempts=1, a snooze does not use the attempt up
    app.close()


def test_non_retryable_errors_and_bad_jobs_go_straight_to_dead(app: redisq.App) -> None:
    @app.task(name="strict", queue="q", non_retryable=KeyError)
    def strict() -> None:
        raise KeyError("no such account")

    @app.task(name="picky", queue="q", retry_for=(ConnectionError,))
    def picky() -> None:
        raise ValueError("not a network problem")

    @app.task(name="typed", queue="q")
    def typed(x: int) -> None: ...

    @app.task(name="unserializable", queue="q", store_result=True)
    def unserializable() -> object:
        return object()

    with running(make_worker(app)) as worker:
        refs = [strict.enqueue(), picky.enqueue()]
        unknown = app.store.enqueue("q", {"args": [], "kwargs": {}}, name="nobody.home")
        garbage = app.store.enqueue("q", "not a call", name="typed")
        wrong_args = typed.enqueue(1, 2)
        bad_result = unserializable.enqueue()
        dead = [wait_job(app, r, state=JobState.DEAD) for r in refs]
        for job in dead:
            assert job.attempts == 1
        assert dead[0].last_error is not None
        assert dead[0].last_error.startswith("KeyError: 'no such account'")
        assert "Traceback" in dead[0].last_error
        assert dead[1].last_error is not None
        assert dead[1].last_error.startswith("ValueError: not a network problem")
        errors = {}
        for name, job in (("unknown", unknown), ("garbage", garbage)):
            errors[name] = wait_job(app, redisq.JobRef(job, app), state=JobState.DEAD).last_error
        errors["args"] = wait_job(app, wrong_args, state=JobState.DEAD).last_error
        errors["result"] = wait_job(app, bad_result, state=JobState.DEAD).last_error
        wait_for(lambda: worker.metrics.dead == 6)
    assert "no task named 'nobody.home'" in (errors["unknown"] or "")
    assert "not a task call" in (errors["garbage"] or "")
    assert "too many positional arguments" in (errors["args"] or "")
    assert "result cannot be stored" in (errors["result"] or "")


def test_a_blocked_event_loop_keeps_its_lease_and_the_job_runs_once(app: redisq.App) -> None:
    # Given an async handler that blocks its event loop for 4 leases
    runs: list[str] = []
    started = threading.Event()

    @app.task(name="hog", queue="q", lease_ms=300, store_result=True)
    async def hog() -> str:
        runs.append("run")
        started.set()
        time.sleep(1.2)  # noqa: ASYNC251  (on purpose: only the keeper thread can renew the lease)
        return "done"

    # When it runs on one worker while another worker keeps claiming and reaping
    with running(make_worker(app, pool="async", name="holder")) as holder:
        ref = hog.enqueue()
        assert started.wait(10)
        with running(make_worker(app, name="thief", reaper_interval_ms=50)) as thief:
            # Then the lease holds, the job completes once, and the thief never gets it
            assert ref.result(timeout=10) == "done"
            done = wait_job(app, ref, state=JobState.COMPLETED)
    assert runs == ["run"]
    assert (done.attempts, done.worker) == (1, "holder")
    assert thief.metrics.claimed == 0
    assert holder.metrics.lease_lost == 0


@pytest.mark.parametrize("pool", POOLS)
def test_hard_timeout_fails_the_attempt_and_the_late_result_is_dropped(
    app: redisq.App, pool: str
) -> None:
    release = threading.Event()
    seen: list[str] = []

    @app.task(name="slow_sync", queue="q", timeout_ms=200, max_attempts=1)
    def slow_sync() -> str:
        seen.append("sync started")
        release.wait(10)
        seen.append("sync returned")
        return "late"

    @app.task(name="slow_async", queue="q", timeout_ms=200, max_attempts=1)
    async def slow_async() -> None:
        seen.append("async started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("async cancelled")
            raise

    with running(make_worker(app, pool=pool)) as worker:
        refs = [slow_sync.enqueue(), slow_async.enqueue()]
        dead = [wait_job(app, ref, state=JobState.DEAD) for ref in refs]
        assert [job.last_error for job in dead] == ["timeout after 200 ms"] * 2
        wait_for(lambda: "async cancelled" in seen)
        release.set()
        wait_for(lambda: "sync returned" in seen)
        assert worker.metrics.timed_out == 2
    # the late return of the thread handler changed nothing
    assert app.store.get("q", refs[0].id) == dead[0]
    assert worker.metrics.completed == 0
    assert worker.metrics.dead == 2


@pytest.mark.parametrize("pool", POOLS)
def test_cancelling_a_running_job_tells_the_handler_and_sends_no_outcome(
    app: redisq.App, pool: str
) -> None:
    started = threading.Event()
    noticed: list[bool] = []

    # a 30 s lease: the renewal (every 10 s) cannot be what tells the handler
    @app.task(name="long", queue="q", lease_ms=30_000)
    def long(ctx: redisq.Context) -> str:
        started.set()
        noticed.append(ctx.cancelled_event.wait(10))
        return "finished anyway"

    with running(make_worker(app, pool=pool)) as worker:
        ref = long.enqueue()
        assert started.wait(10)
        assert ref.cancel() is True
        # the cancel watch tells the handler at once, long before any renewal
        wait_for(lambda: noticed == [True], timeout=2)
        wait_for(lambda: worker.metrics.cancelled == 1)
        # what the handler returned is dropped: no ack is even sent
        assert worker.metrics.refused == 0
        assert worker.metrics.lease_lost == 0
        assert worker.metrics.completed == 0
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.state is JobState.CANCELLED
    with pytest.raises(redisq.JobFailed, match="cancelled"):
        ref.result(timeout=1)


def test_an_idle_worker_sends_at_most_two_commands_a_second(
    make_server: Callable[..., ServerProcess], prefix: str
) -> None:
    # Given an idle worker on two empty queues with its default timings
    server = make_server("valkey")
    app = redisq.App(server.url, prefix=prefix)
    app.task(name="a", queue="qa")(lambda: None)
    app.task(name="b", queue="qb")(lambda: None)
    calls = server.client()
    # What a worker sends: scripts and blocking waits (commands run inside a script are
    # counted by Redis too, under their own names: they are not round trips).
    # (xread, xrevrange: the cancel watch's blocking read, one a minute, and its start.)
    sent_commands = ("evalsha", "eval", "script|load", "bzpopmin", "xread", "xrevrange")

    def stat(*commands: str) -> int:
        stats = calls.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)

    with running(redisq.Worker(app)) as worker:
        # once its start-up is over, it is idle: each thread's first call loads its script on
        # this new server (the schedule drivers' due_schedules, the registry's heartbeat, the
        # fetcher's claim, the reaper's reap: 4 scripts) and the fetcher waits on the wake
        # sets (on a busy machine, counting from the first scripts let the others' start-up
        # calls fall in the window: 13 commands in 4 s)
        wait_for(lambda: stat("script|load") >= 4 and stat("bzpopmin") >= 1, timeout=10)
        before = stat(*sent_commands)
        window = 4.0
        time.sleep(window)  # a measurement window, not an ordering of events
        sent = stat(*sent_commands) - before
        # Then it stays within the budget (blocking waits, safety claims, the reaper)
        assert sent <= 2 * window, f"{sent} commands in {window} s"
        # and an enqueue still wakes it at once
        job = app.store.enqueue("qa", {"args": [], "kwargs": {}}, name="a")
        wait_job(app, redisq.JobRef(job, app), timeout=1, state=JobState.COMPLETED)
        wait_for(lambda: worker.metrics.completed == 1)
    calls.close()
    app.close()


def test_prefetch_beyond_one_claim_still_drains(real_url: str, prefix: str) -> None:
    # One claim leases at most 1,000 jobs: concurrency + prefetch above that must still work.
    app = redisq.App(real_url, prefix=prefix)
    try:

        @app.task(queue="bulk")
        def noop(n: int) -> int:
            return n

        noop.enqueue_many([((n,), {}) for n in range(1_500)])
        with running(make_worker(app, concurrency=10, prefetch=1_000)):
            wait_for(
                lambda: app.store.totals("bulk")["completed"] == 1_500,
                timeout=30,
                message=lambda: f"totals {app.store.totals('bulk')}",
            )
        assert app.store.counts("bulk")[JobState.READY] == 0
    finally:
        app.close()


def test_a_running_worker_keeps_the_start_up_heap_out_of_collections(app: redisq.App) -> None:
    @app.task(queue="q")
    def noop() -> None:
        return None

    assert gc.get_freeze_count() == 0
    worker = make_worker(app)
    with running(worker):
        ref = noop.enqueue()
        wait_job(app, ref, state=JobState.COMPLETED)  # the worker is past its start
        # Frozen at start (gc.freeze): full collections skip what existed then.
        assert gc.get_freeze_count() > 0
    assert worker.wait_stopped(10)
    assert gc.get_freeze_count() == 0  # and given back when it stopped


@pytest.mark.parametrize("pool", POOLS)
def test_an_idle_worker_keeps_claiming_while_the_job_that_woke_it_runs(
    app: redisq.App, pool: str
) -> None:
    # A job that wakes an idle thread-pool worker runs on the thread that received it, and
    # another thread takes over claiming: a long first job must not hold up the next ones.
    started: list[str] = []
    release = threading.Event()

    @app.task(queue="q")
    def block(name: str) -> None:
        started.append(name)
        release.wait(20)

    @app.task(queue="q")
    def warm() -> None:
        return None

    with running(make_worker(app, pool=pool, concurrency=3)):
        # Past its first claim, the worker waits for work (each round below wakes it).
        wait_job(app, warm.enqueue(), state=JobState.COMPLETED)
        for n, name in enumerate(["a", "b", "c"]):
            block.enqueue(name)
            wait_for(lambda n=n: len(started) == n + 1, timeout=10)  # while the others run
        release.set()
        wait_for(lambda: app.store.totals("q")["completed"] == 4, timeout=10)
    assert started == ["a", "b", "c"]
