"""Stored results outlive the count-trimmed completed record, for their own TTL (issue 9).

`JobRef.result()` raised JobNotFound once completed-record retention trimmed the job: the
README's own flow (enqueue_many of 1,000, then the first result) hit it. An ack with a result
now also writes the completed record to ``{prefix:Q}:result:<id>`` with a TTL
(``result_ttl_ms``: the ack's, the task's, else ``Retention.result_ttl_ms``, one day); `get`
reads it once the record is gone, and an ack without a result writes nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState, Retention
from redisq.keys import QueueKeys
from tests.support.polling import wait_for

DAY_MS = 86_400_000


def _result_key(prefix: str, queue: str, job_id: str) -> str:
    return QueueKeys.build(prefix, queue).result_prefix + job_id


def _complete(client: Any, queue: str, payload: Any, result: Any, **ack: Any) -> redisq.Job:
    """Enqueue, claim and ack one job; then move the test clock (if the store has one) on,
    so that the next completion is later and retention trims this one first."""
    job = client.enqueue(queue, payload)
    (claimed,) = client.claim(queue, worker="w")
    assert claimed.id == job.id
    done = client.ack(claimed, result, **ack)
    clock = client.settings.clock
    if clock is not None:
        clock.advance(1)
    return done


def test_an_ack_with_a_result_stores_it_under_its_own_key_with_a_ttl(
    client: Any, raw: Any, prefix: str
) -> None:
    done = _complete(client, "q", {"n": 1}, {"sum": 3})
    key = _result_key(prefix, "q", done.id)
    assert 0 < raw.pttl(key) <= DAY_MS
    assert raw.pttl(key) > DAY_MS - 60_000
    # It holds the completed record, byte for byte what the jobs hash holds.
    assert raw.get(key) == raw.hget(QueueKeys.build(prefix, "q").jobs, done.id)


def test_an_ack_without_a_result_writes_no_result_key(client: Any, raw: Any, prefix: str) -> None:
    done = _complete(client, "q", {"n": 1}, None)
    assert raw.exists(_result_key(prefix, "q", done.id)) == 0
    jobs = [client.enqueue("q", n) for n in range(3)]
    claimed = client.claim("q", worker="w", count=3)
    client.ack_many(claimed)
    for job in jobs:
        assert raw.exists(_result_key(prefix, "q", job.id)) == 0


def test_get_reads_a_trimmed_job_from_its_stored_result(
    client_factory: Callable[..., Any], raw: Any, prefix: str
) -> None:
    # Given a queue that keeps one completed record
    client = client_factory(retention=Retention(completed=1))
    first = _complete(client, "q", {"n": 1}, "one")
    second = _complete(client, "q", {"n": 2}, None)
    # Then the first record was trimmed, yet get returns it whole from its stored result
    assert raw.hexists(QueueKeys.build(prefix, "q").jobs, first.id) == 0
    assert client.counts("q")[JobState.COMPLETED] == 1
    again = client.get("q", first.id)
    assert again == first
    assert (again.state, again.result, again.payload) == (JobState.COMPLETED, "one", {"n": 1})
    assert client.find(first.id) == first
    assert client.get("q", second.id) == second


def test_a_stored_result_expires_after_its_ttl(
    client_factory: Callable[..., Any], raw: Any, prefix: str
) -> None:
    client = client_factory(retention=Retention(completed=1, result_ttl_ms=DAY_MS))
    first = _complete(client, "q", 1, "short", result_ttl_ms=2_000)
    assert 0 < raw.pttl(_result_key(prefix, "q", first.id)) <= 2_000
    _complete(client, "q", 2, None)  # trims the first record
    wait_for(lambda: client.get("q", first.id) is None, timeout=10, message="the result expired")


def test_result_ttl_0_keeps_results_only_with_their_record(
    client_factory: Callable[..., Any], raw: Any, prefix: str
) -> None:
    client = client_factory(retention=Retention(completed=1, result_ttl_ms=0))
    first = _complete(client, "q", 1, "kept only in the record")
    assert raw.exists(_result_key(prefix, "q", first.id)) == 0
    assert client.get("q", first.id) == first
    _complete(client, "q", 2, None)
    assert client.get("q", first.id) is None


def test_ack_many_keeps_each_result_for_its_own_ttl(client: Any, raw: Any, prefix: str) -> None:
    jobs = [client.enqueue("q", n) for n in range(4)]
    claimed = client.claim("q", worker="w", count=4)
    assert [j.id for j in claimed] == [j.id for j in jobs]
    done = client.ack_many(
        claimed, ["a", None, "c", "d"], result_ttl_ms=[10_000, 20_000, None, 30_000]
    )
    assert [j.result for j in done] == ["a", None, "c", "d"]
    ttls = [raw.pttl(_result_key(prefix, "q", j.id)) for j in jobs]
    assert 0 < ttls[0] <= 10_000
    assert ttls[1] == -2  # no result: no key
    assert DAY_MS - 60_000 < ttls[2] <= DAY_MS  # None: the store's retention
    assert 20_000 < ttls[3] <= 30_000
    assert client.counts("q")[JobState.COMPLETED] == 4


def test_a_re_sent_ack_stores_nothing_twice(client: Any, raw: Any, prefix: str) -> None:
    # redis-py re-sends a script whose reply was late: the second run finds the job acked.
    client.enqueue("q", 1, id="j")
    (job,) = client.claim("q", worker="w")
    first = client.ack(job, "r", result_ttl_ms=50_000)
    key = _result_key(prefix, "q", "j")
    stored = raw.get(key)
    again = client.ack(job, "r", result_ttl_ms=DAY_MS)  # same token: succeeds, writes nothing
    assert (again.state, again.result, again.token) == (JobState.COMPLETED, "r", first.token)
    assert raw.get(key) == stored
    assert raw.pttl(key) <= 50_000
    assert client.totals("q")["completed"] == 1


def test_delete_and_purge_remove_stored_results(
    client_factory: Callable[..., Any], raw: Any, prefix: str
) -> None:
    client = client_factory(retention=Retention(completed=1))
    trimmed = _complete(client, "q", 1, "r1")
    kept = _complete(client, "q", 2, "r2")
    # delete of a job whose record retention trimmed: its stored result goes, and it counts
    assert client.delete("q", trimmed.id) is True
    assert raw.exists(_result_key(prefix, "q", trimmed.id)) == 0
    assert client.get("q", trimmed.id) is None
    assert client.delete("q", trimmed.id) is False
    # purge removes the stored results of the jobs it deletes
    assert raw.exists(_result_key(prefix, "q", kept.id)) == 1
    assert client.purge("q", JobState.COMPLETED) == 1
    assert raw.exists(_result_key(prefix, "q", kept.id)) == 0
    assert client.get("q", kept.id) is None


@pytest.mark.parametrize("bad", [-1, 366 * DAY_MS + 1, 1.5, "10", True])
def test_a_bad_result_ttl_is_refused_before_anything_is_written(client: Any, bad: Any) -> None:
    client.enqueue("q", 1, id="j")
    (job,) = client.claim("q", worker="w")
    with pytest.raises(redisq.InvalidArgument) as info:
        client.ack(job, "r", result_ttl_ms=bad)
    assert info.value.field == "result_ttl_ms"
    with pytest.raises(redisq.InvalidArgument) as many:
        client.ack_many([job], ["r"], result_ttl_ms=[bad])
    assert many.value.field == "result_ttl_ms[0]"
    with pytest.raises(redisq.InvalidArgument, match="a list of 1"):
        client.ack_many([job], ["r"], result_ttl_ms=[1, 2])
    assert client.get("q", "j").state is JobState.LEASED


def test_retention_and_tasks_check_result_ttl() -> None:
    with pytest.raises(redisq.InvalidArgument) as info:
        redisq.connect("memory://results-check", retention=Retention(result_ttl_ms=-1))
    assert info.value.field == "retention.result_ttl_ms"
    app = redisq.App("memory://results-check")
    with pytest.raises(redisq.InvalidArgument, match="store_result=True"):
        app.task(result_ttl_ms=1_000)(lambda: None)
    with pytest.raises(redisq.InvalidArgument):
        app.task(store_result=True, result_ttl_ms=-5)(lambda: None)
    task = app.task(store_result=True, result_ttl_ms=1_000)(lambda: None)
    assert task.result_ttl_ms == 1_000


# ---------------------------------------------------------------------- JobRef.result


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    """An App on the backend under test that keeps 10 completed records per queue."""
    made = redisq.App(url, prefix=prefix, retention=Retention(completed=10))
    yield made
    made.close()


def _run_worker(app: redisq.App, until: Callable[[], bool]) -> None:
    worker = redisq.Worker(app, concurrency=4, handle_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(until, timeout=30, message="the worker finished every job")
    finally:
        worker.stop()
        thread.join(30)


def _trimmed(raw: Any, prefix: str, queue: str, refs: list[redisq.JobRef]) -> redisq.JobRef:
    """The first ref whose completed record retention trimmed (acks of one batch share a time,
    so which of them goes first is not their order)."""
    jobs = QueueKeys.build(prefix, queue).jobs
    return next(r for r in refs if not raw.hexists(jobs, r.id))


def test_the_first_result_of_a_big_batch_stays_readable(app: redisq.App) -> None:
    # The README's flow: enqueue_many, then the result of the first, after retention trimmed it.
    @app.task(queue="squares", store_result=True)
    def square(n: int) -> int:
        return n * n

    refs = square.enqueue_many([square.call(n) for n in range(60)])
    completed = JobState.COMPLETED
    _run_worker(app, lambda: app.store.totals("squares")["completed"] == 60)
    assert app.store.counts("squares")[completed] == 10  # the rest were trimmed
    assert [ref.result(timeout=5) for ref in refs] == [n * n for n in range(60)]


def test_a_task_keeps_results_for_its_own_ttl_then_says_they_expired(
    app: redisq.App, raw: Any, prefix: str
) -> None:
    @app.task(queue="brief", store_result=True, result_ttl_ms=1_500)
    def brief(n: int) -> str:
        return f"r{n}"

    @app.task(queue="brief", store_result=True)
    def lasting(n: int) -> str:
        return f"l{n}"

    refs = brief.enqueue_many([brief.call(n) for n in range(12)])
    kept = lasting.enqueue(99)
    _run_worker(app, lambda: app.store.totals("brief")["completed"] == 13)
    assert raw.pttl(_result_key(prefix, "brief", kept.id)) > DAY_MS - 60_000
    trimmed = _trimmed(raw, prefix, "brief", refs)
    # The task's TTL, not the store's (-2 once it has already passed on a slow machine)
    assert raw.pttl(_result_key(prefix, "brief", trimmed.id)) <= 1_500

    def expired() -> bool:
        return app.store.get("brief", trimmed.id) is None

    wait_for(expired, timeout=10, message="the stored result expired")
    with pytest.raises(redisq.ResultExpired) as info:
        trimmed.result(timeout=5)
    assert isinstance(info.value, redisq.JobNotFound)
    assert "its result expired" in str(info.value)
    assert "1500 ms" in str(info.value)
    assert kept.result(timeout=5) == "l99"


def test_a_trimmed_job_without_a_stored_result_names_its_task(
    app: redisq.App, raw: Any, prefix: str
) -> None:
    @app.task(queue="plain", name="plain_task")
    def plain(n: int) -> None:
        return None

    refs = plain.enqueue_many([plain.call(n) for n in range(12)])
    _run_worker(app, lambda: app.store.totals("plain")["completed"] == 12)
    jobs = QueueKeys.build(prefix, "plain").jobs
    kept = next(r for r in refs if raw.hexists(jobs, r.id))
    assert kept.result(timeout=5) is None
    with pytest.raises(redisq.JobNotFound) as info:
        _trimmed(raw, prefix, "plain", refs).result(timeout=5)
    assert not isinstance(info.value, redisq.ResultExpired)
    assert "its task 'plain_task' stores no result" in str(info.value)


def test_a_ref_never_reads_a_later_job_under_the_same_id(app: redisq.App) -> None:
    @app.task(queue="reuse", store_result=True)
    def echo(value: str) -> str:
        return value

    old = echo.options(id="same").enqueue("old")
    _run_worker(app, lambda: app.store.totals("reuse")["completed"] == 1)
    app.store.delete("reuse", "same")
    new = echo.options(id="same").enqueue("new")
    _run_worker(app, lambda: app.store.totals("reuse")["completed"] == 2)
    assert new.result(timeout=5) == "new"
    with pytest.raises(redisq.ResultExpired):
        old.result(timeout=5)


def test_aresult_falls_back_too(app: redisq.App) -> None:
    import asyncio

    @app.task(queue="asq", store_result=True)
    def double(n: int) -> int:
        return 2 * n

    refs = double.enqueue_many([double.call(n) for n in range(15)])
    _run_worker(app, lambda: app.store.totals("asq")["completed"] == 15)

    async def read() -> list[Any]:
        try:
            return [await ref.aresult(timeout=5) for ref in refs[:3]]
        finally:
            await app.aclose()

    assert asyncio.run(read()) == [0, 2, 4]


# ---------------------------------------------------------------------------- cluster


@pytest.mark.cluster
def test_stored_results_on_a_cluster(cluster_url: str, prefix: str) -> None:
    with redisq.connect(cluster_url, prefix=prefix, retention=Retention(completed=1)) as store:
        for queue in ("c1", "c2", "c3"):
            first = _complete(store, queue, 1, f"{queue}-one")
            _complete(store, queue, 2, None)
            assert store.get(queue, first.id) == first
            assert store.delete(queue, first.id) is True
            assert store.get(queue, first.id) is None


def test_a_result_key_of_another_type_is_reported_not_misread(
    client: Any, raw: Any, prefix: str
) -> None:
    # Something else wrote a list where the stored result of a (gone) job would be.
    key = _result_key(prefix, "q", "gone")
    raw.rpush(key, "not a record")
    client.enqueue("q", 1, id="other")  # the queue exists
    with pytest.raises(redisq.WrongKeyType) as info:
        client.get("q", "gone")
    assert info.value.key == key
    # An ack with a result replaces it (the key is redisq's own name).
    client.enqueue("q", 2, id="gone")
    (a, b) = client.claim("q", worker="w", count=2)
    client.ack_many([a, b], ["r-other", "r-gone"])
    assert raw.type(key) == b"string"
    assert client.get("q", "gone").result == "r-gone"
