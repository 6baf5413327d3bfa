"""JobRef.result() and aresult() block on a completion signal, not polling (issue 13 point 2).

The waiter registers with the wait_result script (a counter under the queue's hash tag and the
queue's meta field `wait`), then blocks on the job's wait list with BLPOP; ack, nack to dead,
cancel and reap to dead push it in the same script. The tests wait until the waiter has
registered (its counter key exists; the old polling JobRef never wrote one), then finish the
job, and count the commands the waiting store sent: bounded, whatever the time it waited.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq.errors import JobFailed
from redisq.keys import QueueKeys
from tests.support.polling import wait_for


class Counter:
    """Count the round trips a store's transport makes (a pipeline counts its calls)."""

    def __init__(self, store: Any) -> None:
        self.calls: list[str] = []
        transport = store._transport
        run, pipeline = transport.run, transport.pipeline

        def counted_run(call: Any) -> Any:
            self.calls.append(call.spec.name if call.spec else str(call.args[0]))
            return run(call)

        def counted_pipeline(calls: list[Any]) -> Any:
            self.calls.extend(c.spec.name if c.spec else str(c.args[0]) for c in calls)
            return pipeline(calls)

        async def acounted_run(call: Any) -> Any:
            self.calls.append(call.spec.name if call.spec else str(call.args[0]))
            return await run(call)

        async def acounted_pipeline(calls: list[Any]) -> Any:
            self.calls.extend(c.spec.name if c.spec else str(c.args[0]) for c in calls)
            return await pipeline(calls)

        is_async = asyncio.iscoroutinefunction(run)
        transport.run = acounted_run if is_async else counted_run
        transport.pipeline = acounted_pipeline if is_async else counted_pipeline


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)

    @made.task(queue="q", store_result=True, max_attempts=1)
    def work(n: int) -> int:
        return n * n

    yield made
    made.close()


def _task(app: redisq.App) -> Any:
    (task,) = app.tasks.values()
    return task


def _registered(raw: Any, prefix: str, job_id: str) -> bool:
    return bool(raw.exists(QueueKeys.build(prefix, "q").wait_prefix + "n" + job_id))


def _finish(app: redisq.App, how: str, ref: redisq.JobRef) -> None:
    store = app.store
    if how == "cancel":
        assert store.cancel("q", ref.id)
        return
    (job,) = store.claim("q", worker="w")
    if how == "ack":
        store.ack(job, 49)
    else:
        store.nack(job, error="fatal", dead=True)


def _wait_in_thread(ref: redisq.JobRef) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def wait() -> None:
        try:
            out["value"] = ref.result(timeout=30)
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, out


@pytest.mark.parametrize("how", ["ack", "dead", "cancel"])
def test_result_returns_on_the_signal_with_a_bounded_number_of_commands(
    app: redisq.App, raw: Any, prefix: str, how: str
) -> None:
    ref = _task(app).enqueue(7)
    counter = Counter(app.store)
    # The waiter's store is used by this thread only: finish the job from another store.
    finisher = redisq.App(app.url, prefix=prefix)
    try:
        thread, out = _wait_in_thread(ref)
        wait_for(lambda: _registered(raw, prefix, ref.id), timeout=30, message="the waiter")
        _finish(finisher, how, ref)
        thread.join(30)
    finally:
        finisher.close()
    assert not thread.is_alive()
    if how == "ack":
        assert out == {"value": 49}
    else:
        assert isinstance(out["error"], JobFailed)
    # wait_result, BLPOP, then the read of the final job: however long it waited.
    assert counter.calls[:2] == ["wait_result", "BLPOP"]
    assert len(counter.calls) <= 4, counter.calls
    # The signal was consumed and the counter removed: nothing is left behind but the
    # meta field, whose deadline passes.
    keys = QueueKeys.build(prefix, "q")
    assert raw.exists(keys.wait_prefix + "n" + ref.id) == 0
    assert raw.llen(keys.wait_prefix + "q" + ref.id) == 0


def test_aresult_returns_on_the_signal(app: redisq.App, raw: Any, prefix: str) -> None:
    ref = _task(app).enqueue(3)
    counters: list[Counter] = []

    async def wait() -> Any:
        counters.append(Counter(app.async_store))  # the store of this event loop
        try:
            return await ref.aresult(timeout=30)
        finally:
            await app.aclose()

    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(value=asyncio.run(wait())))
    thread.start()
    wait_for(lambda: _registered(raw, prefix, ref.id), timeout=30, message="the waiter")
    with redisq.connect(app.url, prefix=prefix) as other:
        (job,) = other.claim("q", worker="w")
        other.ack(job, 9)
    thread.join(30)
    assert out == {"value": 9}
    (counter,) = counters
    assert counter.calls[:2] == ["wait_result", "BLPOP"]
    assert len(counter.calls) <= 4, counter.calls


def test_a_final_job_answers_at_once_and_registers_nothing(
    app: redisq.App, raw: Any, prefix: str
) -> None:
    ref = _task(app).enqueue(2)
    (job,) = app.store.claim("q", worker="w")
    app.store.ack(job, 4)
    counter = Counter(app.store)
    assert ref.result(timeout=5) == 4
    assert counter.calls == ["wait_result", "get"]
    assert not _registered(raw, prefix, ref.id)


def test_a_timeout_leaves_only_keys_that_expire(app: redisq.App, raw: Any, prefix: str) -> None:
    ref = _task(app).enqueue(2)
    with pytest.raises(TimeoutError):
        ref.result(timeout=0.05)
    n_key = QueueKeys.build(prefix, "q").wait_prefix + "n" + ref.id
    assert 0 < raw.pttl(n_key) <= 1_100


def test_two_waiters_both_return(app: redisq.App, raw: Any, prefix: str) -> None:
    ref = _task(app).enqueue(5)
    other = redisq.App(app.url, prefix=prefix)
    try:
        first, out1 = _wait_in_thread(ref)
        second_ref = redisq.JobRef(ref.job, other)
        second, out2 = _wait_in_thread(second_ref)
        n_key = QueueKeys.build(prefix, "q").wait_prefix + "n" + ref.id
        wait_for(lambda: raw.get(n_key) == b"2", timeout=30, message="two waiters")
        _finish(other, "ack", ref)
        first.join(30)
        second.join(30)
    finally:
        other.close()
    assert out1 == out2 == {"value": 49}


def test_a_re_sent_ack_signals_nothing_twice(app: redisq.App, raw: Any, prefix: str) -> None:
    ref = _task(app).enqueue(1)
    store = app.store
    (job,) = store.claim("q", worker="w")
    # A waiter registered (as result() does), then the ack and its client retry.
    assert store.wait_final("q", ref.id, timeout_ms=1) is False
    store.ack(job, 1)
    store.ack(job, 1)
    assert raw.llen(QueueKeys.build(prefix, "q").wait_prefix + "q" + ref.id) == 1


def test_result_waits_on_a_cluster(cluster_url: str, prefix: str) -> None:
    with redisq.connect(cluster_url, prefix=prefix) as store:
        job = store.enqueue("q", 1)
        done: list[bool] = []
        waiter = redisq.connect(cluster_url, prefix=prefix)
        thread = threading.Thread(
            target=lambda: done.append(waiter.wait_final("q", job.id, timeout_ms=3_000))
        )
        thread.start()
        keys = QueueKeys.build(prefix, "q")
        wait_for(lambda: store.redis.exists(keys.wait_prefix + "n" + job.id), timeout=30)
        (c,) = store.claim("q", worker="w")
        store.ack(c, "r")
        thread.join(30)
        waiter.close()
        assert done == [True]
