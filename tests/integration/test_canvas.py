"""Workflows in the task API (issue 12, points 2, 5 and 6): chain, group and chord, enqueued in
one call, run by a real worker that passes results along.

Runs on valkey, redis7 and memory:// (and the local cluster for a chain across slots).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redisq
from redisq import JobState
from redisq.errors import InvalidArgument, JobFailed
from redisq.keys import QueueKeys
from tests.support.polling import wait_for

from ._worker_support import running

Q = "canvas"


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def _worker(app: redisq.App, **options: Any) -> redisq.Worker:
    options.setdefault("concurrency", 4)
    options.setdefault("idle_wait_ms", 50)
    options.setdefault("grace_ms", 0)
    return redisq.Worker(app, **options)


def _tasks(app: redisq.App, queue: str = Q) -> Any:
    @app.task(queue=queue, name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(queue=queue, name="double")
    async def double(x: int) -> int:
        return 2 * x

    @app.task(queue=queue, name="total")
    def total(xs: list[int], plus: int = 0) -> list[Any]:
        return [xs, sum(xs) + plus]

    @app.task(queue=queue, name="boom", max_attempts=1)
    def boom(x: Any) -> int:
        raise RuntimeError(f"boom on {x!r}")

    @app.task(queue=queue, name="show")
    def show(x: Any) -> Any:
        return ["got", x]

    return add, double, total, boom, show


def _deps_keys_left(app: redisq.App, queue: str = Q) -> list[str]:
    """The dependency keys of `queue` that are not flow edges (u/, d/: kept with a TTL)."""
    keys = QueueKeys.build(app.store.settings.prefix, queue)
    found = [
        k.decode() if isinstance(k, bytes) else k
        for k in app.store.redis.scan_iter(match=keys.deps_prefix + "*", count=1000)
    ]
    left = [k for k in found if not k[len(keys.deps_prefix) :].startswith(("u/", "d/"))]
    for k in found:
        if k not in left:
            assert 0 < app.store.redis.pttl(k) <= 7 * 86_400_000, k
    return sorted(left)


def test_a_chain_passes_results_through_four_steps(app: redisq.App) -> None:
    add, double, _, _, show = _tasks(app)
    flow = redisq.chain(add.s(1, 2), double.s(), add.s(10), show.s())
    ref = flow.enqueue()
    assert [r.job.state for r in ref.refs] == [JobState.READY] + [JobState.WAITING] * 3
    with running(_worker(app)):
        assert ref.result(timeout=20) == ["got", 16]
    # Every step stored its result (its task has store_result=False): the worker kept it.
    assert [r.get().result for r in ref.refs] == [3, 6, 16, ["got", 16]]  # type: ignore[union-attr]
    assert app.store.counts(Q)[JobState.WAITING] == 0
    assert _deps_keys_left(app) == []


def test_aenqueue_and_the_async_handles(app: redisq.App) -> None:
    add, double, total, _, _ = _tasks(app)

    async def main() -> tuple[Any, Any, Any]:
        try:
            chained = await redisq.chain(add.s(2, 3), double.s()).aenqueue()
            grouped = await redisq.group([add.s(i, 1) for i in range(5)]).aenqueue()
            chorded = await redisq.chord([double.s(i) for i in range(3)], total.s(100)).aenqueue()
            return (
                await chained.aresult(timeout=20),
                await grouped.aresults(timeout=20),
                await chorded.aresult(timeout=20),
            )
        finally:
            await app.async_store.close()

    with running(_worker(app, pool="async")):
        assert asyncio.run(main()) == (10, [1, 2, 3, 4, 5], [[0, 2, 4], 106])


def test_a_group_s_results_in_order(app: redisq.App) -> None:
    add, double, _, _, _ = _tasks(app)
    grouped = redisq.group([add.s(i, 10) for i in range(20)] + [double.s(7)])
    with running(_worker(app)):
        ref = grouped.enqueue()
        assert ref.results(timeout=20) == [i + 10 for i in range(20)] + [14]
    assert len(ref.refs) == 21


def test_a_chord_of_100_gets_100_results_in_order(app: redisq.App) -> None:
    add, _, total, _, _ = _tasks(app)
    header = redisq.group([add.s(i, 0) for i in range(100)])
    flow = redisq.chord(header, total.s())
    ref = flow.enqueue()
    assert ref.callback.job.state is JobState.WAITING
    with running(_worker(app, concurrency=8)):
        xs, summed = ref.result(timeout=60)
    assert xs == list(range(100))
    assert summed == 4950
    assert _deps_keys_left(app) == []


def test_a_failed_step_cancels_the_rest_and_the_handle_says_which(app: redisq.App) -> None:
    add, _, _, boom, show = _tasks(app)
    flow = redisq.chain(add.s(1, 1), boom.s(), show.s(), show.s())
    with running(_worker(app)):
        ref = flow.enqueue()
        with pytest.raises(JobFailed) as failed:
            ref.result(timeout=20)
    assert failed.value.state is JobState.CANCELLED
    assert f"parent {ref.refs[2].id} ended cancelled" in (failed.value.last_error or "")
    third = ref.refs[2].get()
    assert third is not None
    assert third.last_error == f"parent {ref.refs[1].id} ended dead"
    assert _deps_keys_left(app) == []


def test_under_continue_a_failed_parent_passes_none(app: redisq.App) -> None:
    _, _, total, boom, show = _tasks(app)
    chained = redisq.chain(boom.s(1), show.s().options(on_parent_failure="continue"))
    chorded = redisq.chord([show.s(1), boom.s(2)], total.s().options(on_parent_failure="ignore"))
    with running(_worker(app)):
        assert chained.enqueue().result(timeout=20) == ["got", None]
        ref = chorded.enqueue()
        job = wait_for(lambda: _final(ref.callback), timeout=20)
    # The callback got [["got", 1], None]: sum() of it fails, so it is dead with that error.
    assert job.state is JobState.DEAD
    assert "TypeError" in (job.last_error or "")


def _final(ref: redisq.JobRef) -> redisq.Job | None:
    job = ref.get()
    return job if job is not None and job.state in (JobState.DEAD, JobState.COMPLETED) else None


def test_a_parent_whose_result_is_gone_fails_the_child_with_result_expired(
    app: redisq.App,
) -> None:
    add, _, _, _, show = _tasks(app)
    ref = redisq.chain(add.s(1, 2), show.s().options(on_parent_failure="continue")).enqueue()
    # The parent is gone before its child runs (as a result past its result_ttl_ms is).
    assert app.store.delete(Q, ref.refs[0].id)
    with running(_worker(app)):
        job = wait_for(lambda: _final(ref.last), timeout=20)
    assert job.state is JobState.DEAD
    assert "ResultExpired" in (job.last_error or "")
    assert ref.refs[0].id in (job.last_error or "")


def test_enqueue_again_creates_nothing_twice(app: redisq.App) -> None:
    add, double, total, _, _ = _tasks(app)
    flow = redisq.chain(add.s(1, 2), double.s(), double.s())
    chorded = redisq.chord([add.s(i, 0) for i in range(10)], total.s())
    first = flow.enqueue()
    again = flow.enqueue()  # a client that retries the whole enqueue after a timeout
    assert [r.id for r in first.refs] == [r.id for r in again.refs]
    chorded.enqueue()
    chorded.enqueue()
    counts = app.store.counts(Q)
    assert counts[JobState.READY] == 1 + 10
    assert counts[JobState.WAITING] == 2 + 1
    assert app.store.redis.hget(QueueKeys.build(app.store.settings.prefix, Q).meta, "enqueued") in (
        b"14",
        "14",
    )
    with running(_worker(app)):
        assert again.result(timeout=20) == 12


def test_bad_input_is_refused_before_anything_is_written(app: redisq.App) -> None:
    add, double, total, _, _ = _tasks(app)
    with pytest.raises(InvalidArgument) as empty:
        redisq.chain()  # type: ignore[call-overload]
    assert empty.value.field == "steps"
    with pytest.raises(InvalidArgument) as not_sig:
        redisq.chain(add.s(1, 2), double)  # type: ignore[call-overload]
    assert not_sig.value.field == "steps[1]"
    with pytest.raises(InvalidArgument) as too_many:
        redisq.chain(add.s(1, 2), add.s(1, 2))  # add(result, 1, 2): one argument too many
    assert too_many.value.field == "steps[1]"
    with pytest.raises(InvalidArgument) as bad_group:
        redisq.group([])
    assert bad_group.value.field == "sigs"
    with pytest.raises(InvalidArgument) as bad_item:
        redisq.group([add.s(1, 2), "nope"])  # type: ignore[list-item]
    assert bad_item.value.field == "sigs[1]"
    with pytest.raises(InvalidArgument) as bad_callback:
        redisq.chord([add.s(1, 2)], "total")  # type: ignore[arg-type]
    assert bad_callback.value.field == "callback"
    with pytest.raises(InvalidArgument) as too_long:
        redisq.group([add.s(i, 0) for i in range(1001)])
    assert too_long.value.field == "sigs"
    # A payload that cannot be encoded, in the last job: nothing of the workflow is written.
    with pytest.raises(redisq.SerializationError):
        redisq.chain(add.s(1, 2), double.s(), total.s(object())).enqueue()
    assert sum(app.store.counts(Q).values()) == 0


def test_cancelling_a_workflow_cancels_every_job_not_finished(app: redisq.App) -> None:
    # Issue 12 point 3: cancelling a workflow cancels its jobs that have not started.
    add, double, total, _, _ = _tasks(app)
    flow = redisq.chain(add.s(1, 2), double.s(), double.s()).enqueue()
    chorded = redisq.chord([add.s(i, 0) for i in range(3)], total.s()).enqueue()
    grouped = redisq.group([add.s(i, 1) for i in range(2)]).enqueue()
    assert flow.cancel() == 3

    async def acancel() -> int:
        try:
            return await chorded.acancel()
        finally:
            await app.async_store.close()

    assert asyncio.run(acancel()) == 4
    assert grouped.cancel() == 2
    assert flow.cancel() == 0  # a second cancel finds nothing left
    refs = [*flow.refs, *chorded.refs, *grouped.refs]
    assert {app.store.get(r.queue, r.id).state for r in refs} == {JobState.CANCELLED}
    # Nothing of theirs is left to run.
    counts = app.store.counts(Q)
    assert counts[JobState.READY] + counts[JobState.WAITING] == 0


def test_a_workflow_s_jobs_each_write_their_enqueued_event_once(app: redisq.App) -> None:
    add, double, _, _, _ = _tasks(app)
    app.store.set_events(Q)
    flow = redisq.chain(add.s(1, 2), double.s(), double.s())
    flow.enqueue()
    flow.enqueue()  # a re-sent enqueue creates nothing, and so tells nothing
    got = [(e.event, e.job_id) for e in app.store.events(Q)]
    assert got == [("enqueued", r.id) for r in flow.enqueue().refs]


def test_a_chain_of_one_queue_is_one_script_call(app: redisq.App, backend: str) -> None:
    if backend == "memory":
        pytest.skip("commandstats is a real server's")
    add, double, _, _, _ = _tasks(app)
    app.store.counts(Q)

    def evalsha() -> int:
        stats = app.store.redis.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0))

    flow = redisq.chain(add.s(1, 2), *[double.s() for _ in range(5)])
    before = evalsha()
    flow.enqueue()
    assert evalsha() - before == 1
    assert app.store.counts(Q)[JobState.WAITING] == 5


@pytest.mark.cluster
def test_a_chain_across_two_queues_in_different_slots(cluster_url: str, prefix: str) -> None:
    up = redis.crc.key_slot(QueueKeys.build(prefix, "up").meta.encode())
    down = redis.crc.key_slot(QueueKeys.build(prefix, "down").meta.encode())
    assert up != down
    app = redisq.App(cluster_url, prefix=prefix)
    try:
        add, double, _, _, _ = _tasks(app, "up")
        flow = redisq.chain(
            add.s(1, 2),
            double.s().options(queue="down"),
            add.s(1).options(queue="down"),
            double.s(),
        )
        ref = flow.enqueue()
        assert [r.queue for r in ref.refs] == ["up", "down", "down", "up"]
        again = flow.enqueue()  # a retry of the whole enqueue
        assert [r.id for r in again.refs] == [r.id for r in ref.refs]
        assert app.store.counts("down")[JobState.WAITING] == 2
        with running(_worker(app, queues=["up", "down"], reaper_interval_ms=100)):
            assert ref.result(timeout=30) == ((1 + 2) * 2 + 1) * 2
        for queue in ("up", "down"):  # an outbox entry delivered as the worker stopped
            app.store.reap(queue)
            assert _deps_keys_left(app, queue) == []
    finally:
        app.close()


def test_no_dependency_keys_remain_after_a_workflow_and_its_retention(
    url: str, prefix: str
) -> None:
    # Retention keeps 12 completed records (results only as long as their record: the chord's
    # callback reads its 10 parents' while they are kept).
    app = redisq.App(url, prefix=prefix, retention=redisq.Retention(completed=12, result_ttl_ms=0))
    try:
        add, double, total, _, _ = _tasks(app)
        chained = redisq.chain(add.s(1, 1), *[add.s(1) for _ in range(19)])
        chorded = redisq.chord([double.s(i) for i in range(10)], total.s())
        with running(_worker(app)):
            assert chained.enqueue().result(timeout=30) == 21
            ref = chorded.enqueue()
            assert ref.result(timeout=30) == [[2 * i for i in range(10)], 90]
        keys = QueueKeys.build(prefix, Q)
        # Waiting jobs, pending lists, children sets, watch entries: all gone.
        assert app.store.counts(Q)[JobState.WAITING] == 0
        assert _deps_keys_left(app) == []
        # The flow edges of the jobs retention trimmed went with their records: what is left
        # belongs to the 12 records kept (u/<id>: its parents; d/<id>: its children).
        kept = set(app.store.redis.zrange(keys.done, 0, -1))
        assert len(kept) == 12
        edges = [
            k.decode() if isinstance(k, bytes) else k
            for k in app.store.redis.scan_iter(match=keys.deps_prefix + "*", count=1000)
        ]
        owners = {k.rsplit("/", 1)[1] for k in edges}
        assert owners <= {m.decode() if isinstance(m, bytes) else m for m in kept}, edges
        assert app.store.redis.hlen(keys.jobs) == 12
    finally:
        app.close()


def test_a_chord_whose_callback_is_in_another_queue(app: redisq.App) -> None:
    add, _, total, _, _ = _tasks(app)
    app.task(queue="sums", name="unused")(lambda: None)  # the worker serves "sums" too
    flow = redisq.chord([add.s(i, 1) for i in range(30)], total.s(5).options(queue="sums"))
    ref = flow.enqueue()
    assert ref.callback.queue == "sums"
    assert ref.callback.job.state is JobState.WAITING
    with running(_worker(app, reaper_interval_ms=100, pool="async")):
        assert ref.result(timeout=30) == [list(range(1, 31)), sum(range(1, 31)) + 5]
    for queue in (Q, "sums"):  # an outbox entry delivered as the worker stopped
        app.store.reap(queue)
        assert _deps_keys_left(app, queue) == []


def test_an_interrupted_cross_queue_enqueue_is_completed_by_enqueueing_again(
    app: redisq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redisq._core import deps

    add, double, _, _, _ = _tasks(app)
    flow = redisq.chain(add.s(1, 2), double.s().options(queue="other"), double.s())

    def die(point: str) -> None:
        if point == "linked":
            raise ConnectionError("the client died after the link")

    monkeypatch.setattr(deps, "crash_point", die)
    with pytest.raises(ConnectionError):
        flow.enqueue()
    assert app.store.counts(Q)[JobState.READY] == 1  # the first step only
    assert sum(app.store.counts("other").values()) == 0
    monkeypatch.setattr(deps, "crash_point", None)
    ref = flow.enqueue()  # the retry: the first step exists, the rest is created once
    assert app.store.counts(Q)[JobState.READY] == 1
    assert app.store.counts(Q)[JobState.WAITING] == 1
    assert app.store.counts("other")[JobState.WAITING] == 1
    with running(_worker(app, queues=[Q, "other"], reaper_interval_ms=100)):
        assert ref.result(timeout=30) == 12


@pytest.mark.cluster
def test_chain_group_and_chord_of_100_on_the_cluster(cluster_url: str, prefix: str) -> None:
    app = redisq.App(cluster_url, prefix=prefix)
    try:
        add, double, total, _, show = _tasks(app)
        with running(_worker(app, concurrency=8)):
            chained = redisq.chain(add.s(1, 2), double.s(), add.s(10), show.s()).enqueue()
            grouped = redisq.group([add.s(i, i) for i in range(10)]).enqueue()
            chorded = redisq.chord([add.s(i, 0) for i in range(100)], total.s()).enqueue()
            assert chained.result(timeout=30) == ["got", 16]
            assert grouped.results(timeout=30) == [2 * i for i in range(10)]
            assert chorded.result(timeout=60) == [list(range(100)), 4950]
        assert _deps_keys_left(app) == []
    finally:
        app.close()
