"""Hooks and middleware (issue 13 point 1): order, errors, and no job lost or settled twice.

Each test runs a real Worker in a thread on every backend (valkey, redis7, memory) and, where
the pool matters, with both pools. Hooks record what they see in a list; tests poll the
store with deadlines.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq.worker._handlers import Runner
from tests.support.polling import wait_for

from ._worker_support import running, wait_job

POOLS = ["thread", "async"]


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def make_worker(app: redisq.App, **options: Any) -> redisq.Worker:
    options.setdefault("concurrency", 2)
    options.setdefault("idle_wait_ms", 50)
    options.setdefault("grace_ms", 0)
    options.setdefault("handle_signals", False)
    return redisq.Worker(app, **options)


class Recorder(redisq.Middleware):
    """Records every hook call as (hook, name, detail)."""

    def __init__(self, name: str, events: list[tuple[Any, ...]]) -> None:
        self.name = name
        self.events = events

    def on_worker_start(self, worker: redisq.Worker) -> None:
        self.events.append(("start", self.name))

    def on_worker_stop(self, worker: redisq.Worker) -> None:
        self.events.append(("stop", self.name))

    def before_job(self, ctx: redisq.Context) -> None:
        self.events.append(("before", self.name, ctx.job.attempts))

    async def after_job(self, ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        self.events.append(("after", self.name, outcome.status))

    def on_retry(self, ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        self.events.append(("retry", self.name, repr(outcome.error)))

    def on_dead(self, ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        self.events.append(("dead", self.name, outcome.message.splitlines()[-1]))


# ------------------------------------------------------------------------------ the order


@pytest.mark.parametrize("pool", POOLS)
def test_hooks_run_in_onion_order_around_each_attempt(app: redisq.App, pool: str) -> None:
    # Given two middlewares and a single hook added after them (the innermost layer)
    events: list[tuple[Any, ...]] = []
    app.add_middleware(Recorder("outer", events))
    app.add_middleware(Recorder("inner", events))

    @app.before_job
    def innermost(ctx: redisq.Context) -> None:
        events.append(("before", "single", ctx.job.attempts))

    @app.task(queue="q", max_attempts=2, backoff=lambda attempt: 0)
    def fails(x: int) -> None:
        events.append(("handler", x))
        raise ValueError("boom")

    # When a job fails twice (a retry, then dead) and the worker stops
    with running(make_worker(app, pool=pool)) as worker:
        ref = fails.enqueue(7)
        wait_job(app, ref, state=JobState.DEAD)
        wait_for(lambda: worker.metrics.dead == 1)
    # Then: start in order; per attempt before outer->inner, after inner->outer, then
    # on_retry / on_dead inner->outer; stop inner->outer
    attempt = [
        ("before", "outer", 1),
        ("before", "inner", 1),
        ("before", "single", 1),
        ("handler", 7),
        ("after", "inner", "retry"),
        ("after", "outer", "retry"),
        ("retry", "inner", "ValueError('boom')"),
        ("retry", "outer", "ValueError('boom')"),
    ]
    last = [
        ("before", "outer", 2),
        ("before", "inner", 2),
        ("before", "single", 2),
        ("handler", 7),
        ("after", "inner", "dead"),
        ("after", "outer", "dead"),
        ("dead", "inner", "ValueError: boom"),
        ("dead", "outer", "ValueError: boom"),
    ]
    assert events == [
        ("start", "outer"),
        ("start", "inner"),
        *attempt,
        *last,
        ("stop", "inner"),
        ("stop", "outer"),
    ]


def test_a_job_no_task_can_run_goes_to_on_dead_without_before_and_after(
    app: redisq.App,
) -> None:
    events: list[tuple[Any, ...]] = []
    app.add_middleware(Recorder("m", events))

    @app.task(queue="q")
    def known() -> None: ...

    job = app.store.enqueue("q", {"args": [], "kwargs": {}}, name="nobody.knows")
    with running(make_worker(app)):
        wait_for(lambda: app.store.get("q", job.id).state is JobState.DEAD)  # type: ignore[union-attr]
        wait_for(lambda: any(e[0] == "dead" for e in events))
    assert [e[0] for e in events if e[0] not in ("start", "stop")] == ["dead"]
    assert "no task named 'nobody.knows'" in next(e for e in events if e[0] == "dead")[2]


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("pool", POOLS)
def test_a_before_job_error_fails_the_attempt_not_the_worker(
    app: redisq.App, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an outer layer that records, and an inner before_job that fails the first time
    events: list[tuple[Any, ...]] = []
    app.add_middleware(Recorder("outer", events))
    failures = [RuntimeError("pool exhausted")]

    @app.before_job
    def flaky(ctx: redisq.Context) -> None:
        if failures:
            raise failures.pop()

    runs: list[int] = []

    @app.task(queue="q", max_attempts=3, backoff=lambda attempt: 0)
    def work(x: int) -> None:
        runs.append(x)

    # When a job runs
    with (
        caplog.at_level(logging.ERROR, logger="redisq.worker"),
        running(make_worker(app, pool=pool)) as worker,
    ):
        ref = work.enqueue(1)
        job = wait_job(app, ref, state=JobState.COMPLETED)
        wait_for(lambda: worker.metrics.completed == 1)
        # and the worker goes on with other jobs
        second = work.enqueue(2)
        wait_job(app, second, state=JobState.COMPLETED)
    # Then the first attempt failed with the hook's error (the handler did not run), the
    # second completed; the outer layer's after_job saw both; the error names the job
    assert runs == [1, 2]
    assert job.attempts == 2
    assert "RuntimeError: pool exhausted" in (job.last_error or "")
    afters = [e for e in events if e[0] == "after"]
    assert afters[:2] == [("after", "outer", "retry"), ("after", "outer", "completed")]
    assert any(
        ref.id in r.getMessage() and "before_job hook" in r.getMessage() for r in caplog.records
    )
    assert worker.metrics.errors == 0
    assert worker.metrics.refused == 0


@pytest.mark.parametrize("pool", POOLS)
def test_an_after_job_error_turns_the_ack_into_one_failed_attempt(
    app: redisq.App, pool: str
) -> None:
    # Given an after_job hook that raises once, on a completed attempt
    seen: list[str] = []
    failures = [OSError("metrics backend down")]

    class Outer(redisq.Middleware):
        def after_job(self, ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
            seen.append(outcome.status)

    class Inner(redisq.Middleware):
        def after_job(self, ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
            if failures:
                raise failures.pop()

    app.add_middleware(Outer())
    app.add_middleware(Inner())

    @app.task(queue="q", max_attempts=3, backoff=lambda attempt: 0, store_result=True)
    def work() -> str:
        return "done"

    with running(make_worker(app, pool=pool)) as worker:
        ref = work.enqueue()
        assert ref.result(timeout=10) == "done"
        wait_for(lambda: worker.metrics.completed == 1)
    # Then the first attempt was nacked with the hook's error (the outer layer saw the
    # retry), the second acked: one completion, nothing refused, nothing settled twice
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert job.attempts == 2
    assert seen == ["retry", "completed"]
    assert worker.metrics.retried == 1
    assert worker.metrics.completed == 1
    assert worker.metrics.refused == 0
    totals = app.store.totals("q")
    assert totals["completed"] == 1
    assert totals["retried"] == 1


def test_an_after_job_error_after_a_failure_leaves_the_failure(app: redisq.App) -> None:
    @app.after_job
    def broken(ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        raise KeyError("oops")

    @app.task(queue="q", max_attempts=1)
    def work() -> None:
        raise ValueError("the handler's")

    with running(make_worker(app)) as worker:
        ref = work.enqueue()
        job = wait_job(app, ref, state=JobState.DEAD)
        wait_for(lambda: worker.metrics.dead == 1)
    assert "ValueError: the handler's" in (job.last_error or "")
    assert "KeyError" not in (job.last_error or "")


@pytest.mark.parametrize("pool", POOLS)
def test_errors_in_on_retry_and_on_dead_are_logged_and_the_job_moves_on(
    app: redisq.App, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    @app.on_retry
    def retry_hook(ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        raise RuntimeError("retry hook")

    @app.on_dead
    async def dead_hook(ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        raise RuntimeError("dead hook")

    @app.task(queue="q", max_attempts=2, backoff=lambda attempt: 0)
    def work() -> None:
        raise ValueError("no")

    with (
        caplog.at_level(logging.ERROR, logger="redisq.worker"),
        running(make_worker(app, pool=pool)) as worker,
    ):
        ref = work.enqueue()
        job = wait_job(app, ref, state=JobState.DEAD)
        wait_for(lambda: worker.metrics.dead == 1)
    assert job.attempts == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("on_retry hook" in m and ref.id in m for m in messages)
    assert any("on_dead hook" in m and ref.id in m for m in messages)
    assert worker.metrics.retried == 1


@pytest.mark.parametrize("pool", POOLS)
def test_a_hanging_before_job_is_cut_by_the_task_timeout(app: redisq.App, pool: str) -> None:
    # Given a before_job that hangs on the first attempt (async: cancellable in both pools)
    # (inside an outer layer that records the outcome)
    hang = [True]
    outcomes: list[tuple[str, str]] = []

    @app.after_job
    def record(ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        outcomes.append((outcome.status, type(outcome.error).__name__))

    @app.before_job
    async def slow(ctx: redisq.Context) -> None:
        if hang:
            hang.clear()
            await asyncio.sleep(60)

    @app.task(queue="q", timeout_ms=300, max_attempts=3, backoff=lambda attempt: 0)
    async def work() -> None: ...

    with running(make_worker(app, pool=pool)) as worker:
        ref = work.enqueue()
        job = wait_job(app, ref, state=JobState.COMPLETED)
        wait_for(lambda: len(outcomes) == 2, message=lambda: repr(outcomes))
    # Then the timeout failed the first attempt (the hook was cancelled), the second ran
    assert job.attempts == 2
    assert worker.metrics.timed_out == 1
    # (the cancelled first attempt's after_job may unwind after the second attempt ran)
    assert sorted(outcomes) == [("completed", "NoneType"), ("retry", "TimeoutError")]


# ---------------------------------------------------------------------------- worker hooks


def test_a_failing_on_worker_start_stops_the_start_with_a_clear_error(app: redisq.App) -> None:
    events: list[tuple[Any, ...]] = []
    app.add_middleware(Recorder("outer", events))

    @app.on_worker_start
    def connect_db(worker: redisq.Worker) -> None:
        raise ConnectionRefusedError("db down")

    app.add_middleware(Recorder("inner", events))

    @app.task(queue="q")
    def work() -> None: ...

    ref = work.enqueue()
    worker = make_worker(app)
    with pytest.raises(redisq.WorkerStartError, match="connect_db failed") as info:
        worker.run()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert "the worker did not start" in str(info.value)
    # The layer outside the failed one started and stopped; the inner one never started
    assert events == [("start", "outer"), ("stop", "outer")]
    assert app.store.get("q", ref.id).state is JobState.READY  # type: ignore[union-attr]
    assert worker.wait_stopped(0)


def test_async_worker_hooks_run_on_the_handlers_event_loop(app: redisq.App) -> None:
    loops: dict[str, asyncio.AbstractEventLoop] = {}

    @app.on_worker_start
    async def open_pool(worker: redisq.Worker) -> None:
        loops["start"] = asyncio.get_running_loop()

    @app.on_worker_stop
    async def close_pool(worker: redisq.Worker) -> None:
        loops["stop"] = asyncio.get_running_loop()

    @app.task(queue="q", store_result=True)
    async def work() -> bool:
        return asyncio.get_running_loop() is loops["start"]

    with running(make_worker(app, pool="async")):
        assert work.enqueue().result(timeout=10) is True
    assert loops["stop"] is loops["start"]


@pytest.mark.parametrize("pool", POOLS)
def test_a_context_variable_set_in_before_job_is_seen_by_the_handler(
    app: redisq.App, pool: str
) -> None:
    job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")
    tokens: dict[str, contextvars.Token[str]] = {}

    @app.before_job
    def bind(ctx: redisq.Context) -> None:
        tokens[ctx.job.id] = job_id.set(ctx.job.id)

    @app.after_job
    def unbind(ctx: redisq.Context, outcome: redisq.JobOutcome) -> None:
        job_id.reset(tokens.pop(ctx.job.id))

    @app.task(queue="q", store_result=True)
    def work() -> str:
        return job_id.get()

    with running(make_worker(app, pool=pool)):
        refs = [work.enqueue() for _ in range(5)]
        assert [r.result(timeout=10) for r in refs] == [r.id for r in refs]
    assert not tokens


# ------------------------------------------------------------------------- around_enqueue


def test_around_enqueue_wraps_every_enqueue_of_the_task_api(app: redisq.App) -> None:
    events: list[Any] = []

    class Tag(redisq.Middleware):
        def around_enqueue(self, request: redisq.EnqueueRequest) -> Any:
            events.append(("enter", "outer", request.queue, request.many))
            jobs = yield
            events.append(("exit", "outer", [j.id for j in jobs]))

    @app.around_enqueue
    def priority(request: redisq.EnqueueRequest) -> Any:
        request.options["priority"] = 5  # changes what is sent
        jobs = yield
        events.append(("exit", "inner", len(jobs)))

    app.add_middleware(Tag())  # added last: the innermost layer

    @app.task(queue="q")
    def work(x: int) -> None: ...

    one = work.enqueue(1)
    many = work.enqueue_many([work.call(2), work.call(3)])
    assert app.store.get("q", one.id).priority == 5  # type: ignore[union-attr]
    assert all(app.store.get("q", r.id).priority == 5 for r in many)  # type: ignore[union-attr]
    assert events == [
        ("enter", "outer", "q", False),
        ("exit", "outer", [one.id]),
        ("exit", "inner", 1),
        ("enter", "outer", "q", True),
        ("exit", "outer", [r.id for r in many]),
        ("exit", "inner", 2),
    ]

    async def from_asyncio() -> list[str]:
        ref = await work.aenqueue(4)
        refs = await work.aenqueue_many([work.call(5)])
        await app.aclose()
        return [ref.id, refs[0].id]

    ids = asyncio.run(from_asyncio())
    assert events[6:] == [
        ("enter", "outer", "q", False),
        ("exit", "outer", ids[:1]),
        ("exit", "inner", 1),
        ("enter", "outer", "q", True),
        ("exit", "outer", ids[1:]),
        ("exit", "inner", 1),
    ]


def test_an_around_enqueue_error_before_the_yield_enqueues_nothing(app: redisq.App) -> None:
    unwound: list[BaseException] = []

    @app.around_enqueue
    def outer(request: redisq.EnqueueRequest) -> Any:
        try:
            yield
        except BaseException as exc:
            unwound.append(exc)
            raise

    @app.around_enqueue
    def refuse(request: redisq.EnqueueRequest) -> Any:
        raise PermissionError("tenant over quota")
        yield  # pragma: no cover

    @app.task(queue="q")
    def work() -> None: ...

    with pytest.raises(PermissionError, match="over quota"):
        work.enqueue()
    assert app.store.counts("q")[JobState.READY] == 0
    assert [type(e) for e in unwound] == [PermissionError]


def test_an_enqueue_error_is_raised_at_the_yield(app: redisq.App) -> None:
    seen: list[BaseException] = []

    @app.around_enqueue
    def watch(request: redisq.EnqueueRequest) -> Any:
        try:
            yield
        except redisq.SerializationError as exc:
            seen.append(exc)
            raise

    @app.task(queue="q")
    def work(x: Any) -> None: ...

    with pytest.raises(redisq.SerializationError):
        work.enqueue(object())
    assert len(seen) == 1


def test_an_around_enqueue_error_after_the_yield_is_logged_and_the_job_kept(
    app: redisq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.around_enqueue
    def broken(request: redisq.EnqueueRequest) -> Any:
        yield
        raise RuntimeError("span exporter down")

    @app.task(queue="q")
    def work() -> None: ...

    with caplog.at_level(logging.ERROR):
        ref = work.enqueue()  # no error: the job is enqueued; raising would enqueue it twice
    assert app.store.get("q", ref.id) is not None
    assert any(ref.id in r.getMessage() for r in caplog.records)


def test_bad_hooks_are_refused_when_added(app: redisq.App) -> None:
    with pytest.raises(redisq.InvalidArgument, match="generator function"):

        @app.around_enqueue
        def not_a_generator(request: redisq.EnqueueRequest) -> None: ...

    with pytest.raises(redisq.InvalidArgument, match="before_job"):
        app.before_job(42)  # type: ignore[arg-type]

    class Broken:
        after_job = "not callable"

    with pytest.raises(redisq.InvalidArgument, match=r"middleware\.after_job"):
        app.add_middleware(Broken())
    assert app.middleware == ()


def test_middleware_given_to_the_app_and_duck_typed_objects_work(url: str, prefix: str) -> None:
    events: list[str] = []

    class Plain:  # not a Middleware subclass: its methods are found by name
        def before_job(self, ctx: redisq.Context) -> None:
            events.append("before")

    app = redisq.App(url, prefix=prefix, middleware=[Plain()])
    try:

        @app.task(queue="q", store_result=True)
        def work() -> int:
            return 1

        with running(make_worker(app)):
            assert work.enqueue().result(timeout=10) == 1
        assert events == ["before"]
    finally:
        app.close()


# ------------------------------------------------------------------------------- no cost


def test_without_job_hooks_the_runner_takes_its_plain_path(app: redisq.App) -> None:
    @app.on_worker_start
    def only_start(worker: redisq.Worker) -> None: ...

    store = app.store
    assert Runner(store, "w", lambda entry: None, app.hooks).hooks is None

    @app.after_job
    def after(ctx: redisq.Context, outcome: redisq.JobOutcome) -> None: ...

    assert Runner(store, "w", lambda entry: None, app.hooks).hooks is app.hooks


def test_a_stop_while_a_hook_runs_releases_the_job(app: redisq.App) -> None:
    # A hook that blocks past the stop's grace: the job is released (attempt not counted)
    started = threading.Event()
    go_on = threading.Event()

    @app.before_job
    def blocking(ctx: redisq.Context) -> None:
        started.set()
        go_on.wait(10)

    @app.task(queue="q")
    def work() -> None: ...

    worker = make_worker(app)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    ref = work.enqueue()
    assert started.wait(10)
    worker.stop()
    thread.join(20)
    go_on.set()
    # grace_ms=0: the running attempt is released at once, not counted, and not lost
    job = wait_job(app, ref, state=JobState.READY)
    assert job.attempts == 0
    assert not thread.is_alive()


@pytest.mark.cluster
def test_hooks_run_on_a_cluster(cluster_url: str, prefix: str) -> None:
    events: list[tuple[Any, ...]] = []
    app = redisq.App(cluster_url, prefix=prefix, middleware=[Recorder("m", events)])

    @app.task(queue="q", store_result=True)
    def work() -> int:
        return 3

    try:
        # (schedules=False: see test_registry's cluster test)
        with running(make_worker(app, schedules=False)):
            assert work.enqueue().result(timeout=10) == 3
            wait_for(lambda: ("after", "m", "completed") in events)
    finally:
        app.close()
    assert events == [
        ("start", "m"),
        ("before", "m", 1),
        ("after", "m", "completed"),
        ("stop", "m"),
    ]
