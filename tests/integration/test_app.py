"""The task API against the store: enqueue formats and options, JobRef results and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import redisq
from redisq import JobState
from tests.support.clock import TestClock

from ._worker_support import running, wait_job


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def app(url: str, prefix: str, clock: TestClock) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix, clock=clock)
    yield made
    made.close()


def test_enqueue_stores_args_and_kwargs_under_the_task_name(
    app: redisq.App, prefix: str, clock: TestClock
) -> None:
    @app.task(name="mail.send", queue="mail", priority=4, max_attempts=7, lease_ms=5_000)
    def send(to: str, *, cc: list[str], urgent: bool = False) -> None: ...

    ref = send.enqueue("ada@example.com", cc=["bob"], urgent=True)
    job = app.store.get("mail", ref.id)
    assert job is not None
    assert ref.job == job
    assert (ref.id, ref.queue) == (job.id, "mail")
    assert job.name == "mail.send"
    assert job.payload == {"args": ["ada@example.com"], "kwargs": {"cc": ["bob"], "urgent": True}}
    assert (job.priority, job.max_attempts, job.lease_ms) == (4, 7, 5_000)
    assert job.state is JobState.READY
    assert job.run_at_ms == clock.now_ms
    # the bytes in Redis are the msgpack of exactly that map
    record = app.store.redis.hget(f"{{{prefix}:mail}}:jobs", ref.id)
    packed = msgpack.packb(
        {"args": ["ada@example.com"], "kwargs": {"cc": ["bob"], "urgent": True}},
        use_bin_type=True,
    )
    assert packed in record


def test_per_call_options_override_the_task_defaults(app: redisq.App, clock: TestClock) -> None:
    @app.task(name="report", queue="reports", priority=1)
    def report(n: int) -> None: ...

    delayed = report.options(delay_ms=60_000, priority=9, max_attempts=1).enqueue(1)
    assert (delayed.job.state, delayed.job.run_at_ms) == (
        JobState.SCHEDULED,
        clock.now_ms + 60_000,
    )
    assert (delayed.job.priority, delayed.job.max_attempts) == (9, 1)
    at = report.options(run_at_ms=clock.now_ms + 5, id="r-2").enqueue(2)
    assert (at.id, at.job.run_at_ms) == ("r-2", clock.now_ms + 5)
    # idempotent on id: the stored job comes back unchanged
    again = report.options(id="r-2", priority=-5).enqueue(99)
    assert again.job == at.job
    unique = report.options(unique_key="u-1").enqueue(3)
    assert report.options(unique_key="u-1").enqueue(4).id == unique.id
    elsewhere = report.options(queue="urgent").enqueue(5)
    assert elsewhere.queue == "urgent"
    assert app.store.get("urgent", elsewhere.id) is not None
    counts = app.store.counts("reports")
    assert (counts[JobState.READY], counts[JobState.SCHEDULED]) == (1, 2)


def test_enqueue_many_takes_calls_and_tuples_with_per_call_options(app: redisq.App) -> None:
    @app.task(name="resize", queue="images")
    def resize(path: str, width: int = 100) -> None: ...

    refs = resize.options(priority=3).enqueue_many(
        [
            resize.call("a.png"),
            (["b.png"], {"width": 50}),
            resize.options(id="img-c", priority=-2).call("c.png", width=10),
        ]
    )
    jobs = [app.store.get("images", r.id) for r in refs]
    assert [j.payload for j in jobs if j] == [
        {"args": ["a.png"], "kwargs": {}},
        {"args": ["b.png"], "kwargs": {"width": 50}},
        {"args": ["c.png"], "kwargs": {"width": 10}},
    ]
    assert [j.priority for j in jobs if j] == [3, 3, -2]
    assert refs[2].id == "img-c"
    assert {j.name for j in jobs if j} == {"resize"}
    assert resize.enqueue_many([]) == []


def test_enqueue_many_validates_every_item_before_writing(app: redisq.App) -> None:
    @app.task(name="a", queue="qa")
    def a(x: int) -> None: ...

    @app.task(name="b", queue="qa")
    def b(x: int) -> None: ...

    with pytest.raises(redisq.InvalidArgument, match=r"calls\[1\]"):
        a.enqueue_many([a.call(1), b.call(2)])
    with pytest.raises(redisq.InvalidArgument, match=r"calls\[1\].queue"):
        a.enqueue_many([a.call(1), a.options(queue="other").call(2)])
    with pytest.raises(redisq.InvalidArgument, match=r"calls\[0\]"):
        a.enqueue_many([[1]])  # type: ignore[list-item]
    with pytest.raises(redisq.SerializationError):
        a.enqueue_many([a.call(1), a.call({1, 2})])
    assert app.store.queues() == []


def test_unserializable_arguments_are_refused_and_nothing_is_written(app: redisq.App) -> None:
    @app.task(name="t", queue="q")
    def t(x: Any) -> None: ...

    with pytest.raises(redisq.SerializationError, match="msgpack"):
        t.enqueue(object())
    with pytest.raises(redisq.PayloadTooLarge):
        t.enqueue("x" * (600 * 1024))
    assert app.store.queues() == []


def test_async_enqueue_twins(app: redisq.App) -> None:
    @app.task(name="t", queue="q")
    def t(x: int, y: int = 0) -> None: ...

    async def main() -> list[redisq.JobRef]:
        one = await t.aenqueue(1, y=2)
        more = await t.options(priority=5).aenqueue_many([t.call(3), ((4,), {})])
        assert await one.aget() == one.job
        await app.aclose()
        return [one, *more]

    refs = asyncio.run(main())
    jobs = [app.store.get("q", r.id) for r in refs]
    assert [(j.payload, j.priority) for j in jobs if j] == [
        ({"args": [1], "kwargs": {"y": 2}}, 0),
        ({"args": [3], "kwargs": {}}, 5),
        ({"args": [4], "kwargs": {}}, 5),
    ]


def test_result_times_out_then_fails_for_a_cancelled_job(app: redisq.App) -> None:
    @app.task(name="t", queue="q")
    def t() -> None: ...

    ref = t.enqueue()
    with pytest.raises(TimeoutError, match="still ready"):
        ref.result(timeout=0.05)

    async def wait() -> None:
        try:
            with pytest.raises(TimeoutError, match="still ready"):
                await ref.aresult(timeout=0.05)
        finally:
            await app.aclose()

    asyncio.run(wait())
    assert ref.cancel() is True
    with pytest.raises(redisq.JobFailed, match="ended cancelled") as info:
        ref.result(timeout=1)
    assert info.value.state is JobState.CANCELLED
    assert info.value.job.id == ref.id
    app.store.delete("q", ref.id)
    with pytest.raises(redisq.JobNotFound):
        ref.result(timeout=1)


def test_results_are_stored_only_with_store_result(real_url: str, prefix: str) -> None:
    app = redisq.App(real_url, prefix=prefix)

    @app.task(name="kept", queue="q", store_result=True)
    def kept(x: int) -> dict[str, int]:
        return {"double": x * 2}

    @app.task(name="dropped", queue="q")
    def dropped(x: int) -> int:
        return x * 2

    @app.task(name="poison", queue="q", max_attempts=1)
    def poison() -> None:
        raise RuntimeError("no luck")

    with running(redisq.Worker(app, concurrency=2, idle_wait_ms=50)):
        assert kept.enqueue(21).result(timeout=10) == {"double": 42}
        ref = dropped.enqueue(21)
        assert ref.result(timeout=10) is None
        assert wait_job(app, ref, state=JobState.COMPLETED).result is None
        with pytest.raises(redisq.JobFailed, match="RuntimeError: no luck") as info:
            poison.enqueue().result(timeout=10)
        assert info.value.state is JobState.DEAD
        assert info.value.last_error is not None
        assert "Traceback" in info.value.last_error

        async def main() -> Any:
            try:
                return await kept.enqueue(5).aresult(timeout=10)
            finally:
                await app.aclose()

        assert asyncio.run(main()) == {"double": 10}
    app.close()
