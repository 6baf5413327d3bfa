"""Cancel reaches the handler at once (issue 12 point 3), on every backend and the cluster.

`Store.cancel` of a leased job appends (id, token) to the queue's cancel stream; the worker's
cancel watch blocks on it and stops the holder's handler. Every lease here is 30 s long, so
its renewal (every 10 s) cannot be what tells a handler within the deadlines below.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq.keys import QueueKeys
from tests.support.cluster import ClusterProcess
from tests.support.polling import wait_for

from ._worker_support import running, wait_job

POOLS = ["thread", "async"]
#: How soon a handler must hear of a cancel here: far below a renewal's 10 s, with room for a
#: machine loaded by parallel test runs (the bench measures the real figure: about 1 ms).
NOTICE_S = 2.0
LEASE_MS = 30_000


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    app = redisq.App(url, prefix=prefix)
    yield app
    app.close()


def make_worker(app: redisq.App, **options: Any) -> redisq.Worker:
    options.setdefault("handle_signals", False)
    return redisq.Worker(app, **options)


def _stream(app: redisq.App, queue: str) -> list[Any]:
    keys = QueueKeys.build(app.prefix, queue)
    entries: list[Any] = app.store.redis.xrange(keys.cancels)
    return entries


@pytest.mark.parametrize("pool", POOLS)
def test_an_async_handler_is_cancelled_at_once_and_its_slot_runs_the_next_job(
    app: redisq.App, pool: str
) -> None:
    # Given a worker with one slot running an async handler that would sleep for a minute
    started = threading.Event()
    seen: list[str] = []

    @app.task(queue="q", lease_ms=LEASE_MS)
    async def sleepy() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "slept"

    @app.task(queue="q")
    def quick() -> str:
        return "quick"

    with running(make_worker(app, pool=pool, concurrency=1)) as worker:
        ref = sleepy.enqueue()
        assert started.wait(10)
        follow = quick.enqueue()

        # When it is cancelled
        assert ref.cancel() is True

        # Then its task is cancelled within the deadline, the slot runs the next job
        wait_for(lambda: seen == ["cancelled"], timeout=NOTICE_S)
        wait_job(app, follow, timeout=NOTICE_S, state=JobState.COMPLETED)
        wait_for(lambda: worker.metrics.cancelled == 1)
        # and nothing was sent for the cancelled run
        assert worker.metrics.refused == 0
        assert worker.metrics.lease_lost == 0
        # (the store completes the job before its reply reaches the worker's counter)
        wait_for(lambda: worker.metrics.completed == 1)
    # And its outcome stays the cancel
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.state is JobState.CANCELLED


@pytest.mark.parametrize("pool", POOLS)
def test_a_sync_handler_sees_ctx_cancelled_and_its_late_return_changes_nothing(
    app: redisq.App, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a sync handler that works in steps and checks for a cancel between them
    started = threading.Event()
    seen: list[Any] = []
    finish = threading.Event()

    @app.task(queue="q", lease_ms=LEASE_MS)
    def steps(ctx: redisq.Context) -> str:
        started.set()
        seen.append(ctx.cancelled)
        seen.append(ctx.cancelled_event.wait(30))
        seen.append(ctx.cancelled)
        try:
            ctx.raise_if_cancelled()
        except redisq.LeaseLost as exc:
            seen.append(type(exc).__name__)
        finish.wait(30)
        return "done anyway"  # dropped: the job's outcome is the cancel

    @app.task(queue="q")
    def quick() -> str:
        return "quick"

    caplog.set_level(logging.INFO, logger="redisq")
    with running(make_worker(app, pool=pool, concurrency=1)) as worker:
        ref = steps.enqueue()
        assert started.wait(10)
        follow = quick.enqueue()

        # When it is cancelled
        assert ref.cancel() is True

        # Then the handler sees the flag within the deadline
        wait_for(lambda: len(seen) == 4, timeout=NOTICE_S)
        assert seen == [False, True, True, "LeaseLost"]
        # and its slot is busy until it returns: then the next job runs
        assert app.store.get("q", follow.id).state is JobState.READY  # type: ignore[union-attr]
        finish.set()
        wait_job(app, follow, timeout=NOTICE_S, state=JobState.COMPLETED)
        wait_for(lambda: worker.metrics.cancelled == 1)
        assert worker.metrics.refused == 0
        # (the store completes the job before its reply reaches the worker's counter)
        wait_for(lambda: worker.metrics.completed == 1)
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.state is JobState.CANCELLED
    assert job.result is None
    # Quietly: the dropped return is no warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_job_waiting_in_the_buffer_is_never_started(app: redisq.App) -> None:
    # Given one slot busy and a claimed job waiting in the buffer for it
    started: list[str] = []
    hold = threading.Event()

    @app.task(queue="q", lease_ms=LEASE_MS)
    def job(name: str) -> None:
        started.append(name)
        if name == "first":
            hold.wait(30)

    with running(make_worker(app, concurrency=1, prefetch=1)) as worker:
        first = job.enqueue("first")
        wait_for(lambda: started == ["first"])
        second = job.enqueue("second")
        wait_job(app, second, state=JobState.LEASED)

        # When the waiting job is cancelled
        assert second.cancel() is True
        wait_for(lambda: worker.metrics.cancelled == 1, timeout=NOTICE_S)

        # Then it never starts, and the slot goes on with the rest
        hold.set()
        wait_job(app, first, state=JobState.COMPLETED)
        third = job.enqueue("third")
        wait_job(app, third, state=JobState.COMPLETED)
        assert started == ["first", "third"]
        assert worker.metrics.refused == 0
    assert app.store.get("q", second.id).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_a_cancel_of_another_workers_job_or_a_finished_one_changes_nothing(
    app: redisq.App,
) -> None:
    # Given two workers, each running one job
    started: dict[str, str] = {}
    release = threading.Event()

    @app.task(queue="q", lease_ms=LEASE_MS)
    def job(ctx: redisq.Context, name: str) -> str | None:
        started[name] = ctx.worker
        release.wait(30)
        return None if ctx.cancelled else f"{name} done"

    with (
        running(make_worker(app, concurrency=1, prefetch=0, name="w-a")) as a,
        running(make_worker(app, concurrency=1, prefetch=0, name="w-b")) as b,
    ):
        one = job.enqueue("one")
        two = job.enqueue("two")
        wait_for(lambda: len(started) == 2)

        # When one job is cancelled, and a finished job's cancel is tried
        assert one.cancel() is True
        wait_for(lambda: a.metrics.cancelled + b.metrics.cancelled == 1, timeout=NOTICE_S)
        release.set()
        wait_job(app, two, state=JobState.COMPLETED)
        assert two.cancel() is False

        # Then only the holder of the cancelled lease stopped; the other job completed
        assert a.metrics.cancelled + b.metrics.cancelled == 1
        assert a.metrics.refused + b.metrics.refused == 0
        wait_for(lambda: a.metrics.completed + b.metrics.completed == 1)
    assert app.store.get("q", one.id).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_a_cancel_of_a_job_held_by_a_dead_worker_is_the_lease_s_business(
    app: redisq.App,
) -> None:
    # Given a job leased by a worker that died (it claimed, then nothing) and a live worker
    @app.task(queue="q")
    def noop() -> None:
        return None

    ref = noop.enqueue()
    held = app.store.claim("q", worker="dead", lease_ms=LEASE_MS)
    assert [j.id for j in held] == [ref.id]
    with running(make_worker(app)) as worker:
        # When the job is cancelled
        assert ref.cancel() is True
        # Then the signal is there, the live worker holds nothing of it: nothing happens
        entries = _stream(app, "q")
        assert len(entries) == 1
        after = noop.enqueue()
        wait_job(app, after, state=JobState.COMPLETED)
        assert worker.metrics.cancelled == 0
    # And the dead holder's late ack is refused by its token, as always
    with pytest.raises(redisq.LeaseLost):
        app.store.ack(held[0])
    assert app.store.get("q", ref.id).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_a_worker_of_many_queues_hears_a_cancel_on_any_of_them(app: redisq.App) -> None:
    # Given a worker of 12 queues, running an async job on the last one
    queues = [f"q{i}" for i in range(12)]
    started = threading.Event()
    seen: list[str] = []

    @app.task(queue=queues[-1], lease_ms=LEASE_MS)
    async def sleepy() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with running(make_worker(app, queues=queues, pool="async")) as worker:
        ref = sleepy.enqueue()
        assert started.wait(10)
        # When it is cancelled
        assert ref.cancel() is True
        # Then its handler stops within the deadline
        wait_for(lambda: seen == ["cancelled"], timeout=NOTICE_S)
        wait_for(lambda: worker.metrics.cancelled == 1)


def test_the_cancel_stream_is_written_only_by_cancels_of_leased_jobs(app: redisq.App) -> None:
    # Given jobs enqueued, claimed, acked, and a ready one cancelled
    store = app.store
    keys = QueueKeys.build(app.prefix, "q")
    for i in range(3):
        store.enqueue("q", i, id=f"j{i}")
    store.cancel("q", "j2")
    jobs = store.claim("q", worker="w", count=2, lease_ms=LEASE_MS)
    store.ack(jobs[0])
    # Then no cancel stream exists: a queue where no running job is cancelled pays nothing
    assert not store.redis.exists(keys.cancels)

    # When a leased job is cancelled
    assert store.cancel("q", jobs[1].id) is True

    # Then the stream holds one entry: its id and the token of the lease it ended
    entries = _stream(app, "q")
    assert len(entries) == 1
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields == {"id": jobs[1].id, "token": str(jobs[1].token)}
    # And a store waiting for cancels sees it only when it comes after its first look
    assert store.wait_cancels("q", timeout_ms=0) == []
    assert store.wait_cancels("q", timeout_ms=1) == []
    store.enqueue("q", "again", id="j9")
    held = store.claim("q", worker="w", lease_ms=LEASE_MS)
    assert store.cancel("q", "j9") is True
    assert store.wait_cancels("q", timeout_ms=1000) == [
        redisq.models.CancelNotice("q", "j9", held[0].token or 0)
    ]


def test_the_cancel_stream_is_capped(app: redisq.App, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cap of 3 entries
    monkeypatch.setattr("redisq._core.manage.CANCEL_SIGNAL_CAP", 3)
    store = app.store
    store.enqueue_many("q", [redisq.Spec(i, id=f"j{i}") for i in range(5)])
    jobs = store.claim("q", worker="w", count=5, lease_ms=LEASE_MS)
    # When five leased jobs are cancelled
    for job in jobs:
        assert store.cancel("q", job.id) is True
    # Then the stream keeps the newest three
    ids = [entry[1][b"id"].decode() for entry in _stream(app, "q")]
    assert ids == [j.id for j in jobs[2:]]


def test_a_cancel_stream_key_of_another_type_is_refused_before_any_write(
    app: redisq.App,
) -> None:
    store = app.store
    keys = QueueKeys.build(app.prefix, "q")
    store.enqueue("q", 1, id="j1")
    job = store.claim("q", worker="w", lease_ms=LEASE_MS)[0]
    store.redis.set(keys.cancels, "not a stream")
    with pytest.raises(redisq.errors.WrongKeyType):
        store.cancel("q", "j1")
    assert store.get("q", "j1") == job


@pytest.mark.cluster
@pytest.mark.parametrize("pool", POOLS)
def test_on_a_cluster_a_cancel_reaches_the_handler_on_any_queue(
    redis_cluster: ClusterProcess, cluster_url: str, prefix: str, pool: str
) -> None:
    # Given a worker of three queues in different slots, running a job on each
    app = redisq.App(cluster_url, prefix=prefix)
    queues = ["ca", "cb", "cc"]
    running_now: dict[str, str] = {}
    seen: list[str] = []

    @app.task(name="step", lease_ms=LEASE_MS)
    def step(ctx: redisq.Context) -> None:
        running_now[ctx.queue] = ctx.id
        if ctx.cancelled_event.wait(30):
            seen.append(ctx.queue)

    try:
        worker = make_worker(app, queues=queues, pool=pool, concurrency=3)
        with running(worker):
            refs = {
                q: redisq.JobRef(app.store.enqueue(q, {"args": [], "kwargs": {}}, name="step"), app)
                for q in queues
            }
            wait_for(lambda: len(running_now) == 3, timeout=10)
            # When each is cancelled
            started = time.monotonic()
            for queue in queues:
                assert refs[queue].cancel() is True
            # Then each handler hears of it within the deadline
            wait_for(lambda: sorted(seen) == queues, timeout=NOTICE_S)
            assert time.monotonic() - started < NOTICE_S
            wait_for(lambda: worker.metrics.cancelled == 3)
            assert worker.metrics.refused == 0
        # And the watch's threads end with the worker (a read under way on a cluster cannot
        # be unblocked: closing the watch's store ends it, and it is not retried)
        watching = [
            t for t in threading.enumerate() if worker.name in t.name and "cancels" in t.name
        ]
        wait_for(lambda: not any(t.is_alive() for t in watching), timeout=5)
        for queue in queues:
            job = app.store.get(queue, refs[queue].id)
            assert job is not None
            assert job.state is JobState.CANCELLED
    finally:
        app.close()
