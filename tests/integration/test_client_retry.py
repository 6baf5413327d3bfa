"""A client retry runs a script twice on the server: every transition must stay correct.

redis-py re-sends a command whose reply did not arrive within ``socket_timeout`` (redisq's
connect() gives it a retry policy by default). The server may well have run the first one: the
reply was only late. These tests put a loopback proxy between redisq and a real server, hold
back exactly one reply for longer than the socket timeout, and check that the transition
happened once. Each test also proves that the script really ran twice (``cmdstat_evalsha``
calls +2 and one reconnection through the proxy), so none passes vacuously.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

import redisq
from redisq import JobState
from redisq._core.records import unpack_record
from tests.support.clock import TestClock
from tests.support.polling import wait_for
from tests.support.proxy import TcpProxy
from tests.support.resend import LATE_REPLY, SOCKET_TIMEOUT, evalsha_calls

QUEUE = "retried"
#: Per server: 20 retried claims in all across valkey and redis7.
CLAIM_ROUNDS = 10

Twice = Callable[..., Any]


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def store(proxy: TcpProxy, prefix: str) -> Iterator[redisq.Store]:
    """A store that reaches the server through the proxy (with redisq's default retries)."""
    connected = redisq.connect(proxy.url, prefix=prefix, socket_timeout=SOCKET_TIMEOUT)
    connected.counts(QUEUE)  # the server check of the first call is done before any test
    yield connected
    connected.close()


def _key(prefix: str, part: str, queue: str = QUEUE) -> str:
    return f"{{{prefix}:{queue}}}:{part}"


def _job_state(direct: Any, prefix: str, job_id: str, queue: str = QUEUE) -> bytes | None:
    """The state field of a job's stored (packed) record, read directly."""
    data = direct.hget(f"{{{prefix}:{queue}}}:jobs", job_id)
    return None if data is None else unpack_record(data)["state"]


def _members(direct: redis.Redis, prefix: str, part: str, queue: str = QUEUE) -> list[str]:
    members: list[bytes] = direct.zrange(_key(prefix, part, queue), 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


def _meta(direct: redis.Redis, prefix: str, field: str, queue: str = QUEUE) -> int:
    return int(direct.hget(_key(prefix, "meta", queue), field) or 0)


def _claim_one(store: redisq.Store, **options: Any) -> redisq.Job:
    store.enqueue(QUEUE, {"n": 1}, id="j1", **options)
    (job,) = store.claim(QUEUE, worker="w1", lease_ms=60_000)
    return job


# ------------------------------------------------------------------------------------ enqueue


def test_enqueue_with_an_id_is_created_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a queue the store already registered
    store.enqueue(QUEUE, "seed", id="seed")

    # When the enqueue's reply is lost and redis-py re-sends it
    with twice():
        job = store.enqueue(QUEUE, {"a": 1}, id="j1", priority=5)

    # Then one job exists, and the call returned it
    assert _members(direct, prefix, "ready") == ["j1", "seed"]
    assert _meta(direct, prefix, "seq") == 2
    assert job == store.get(QUEUE, "j1")
    assert (job.id, job.state, job.payload, job.priority) == ("j1", JobState.READY, {"a": 1}, 5)


def test_enqueue_without_an_id_is_created_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a queue the store already registered
    store.enqueue(QUEUE, "seed", id="seed")

    # When an enqueue without an id (the client makes one before sending) is re-sent
    with twice():
        job = store.enqueue(QUEUE, {"a": 2})

    # Then one job exists under the generated id
    assert sorted(_members(direct, prefix, "ready")) == sorted(["seed", job.id])
    assert _meta(direct, prefix, "seq") == 2
    assert store.counts(QUEUE)[JobState.READY] == 2
    assert job == store.get(QUEUE, job.id)


def test_delayed_enqueue_is_scheduled_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a queue the store already registered
    store.enqueue(QUEUE, "seed", id="seed")

    # When a delayed enqueue (one job: the script's own path for it) is re-sent
    with twice():
        job = store.enqueue(QUEUE, {"a": 3}, delay_ms=60_000)

    # Then one scheduled job exists, counted once, and the call returned it
    assert _members(direct, prefix, "scheduled") == [job.id]
    assert _members(direct, prefix, "ready") == ["seed"]
    assert _meta(direct, prefix, "enqueued") == 2
    assert job.state is JobState.SCHEDULED
    assert job == store.get(QUEUE, job.id)


def test_enqueue_with_a_unique_key_is_created_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a queue the store already registered
    store.enqueue(QUEUE, "seed", id="seed")

    # When an enqueue with a unique key is re-sent
    with twice():
        job = store.enqueue(QUEUE, "x", unique_key="u1")

    # Then one job holds the key
    assert sorted(_members(direct, prefix, "ready")) == sorted(["seed", job.id])
    assert direct.hgetall(_key(prefix, "unique")) == {b"u1": job.id.encode()}
    assert job == store.get(QUEUE, job.id)


def test_enqueue_many_creates_each_job_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a queue the store already registered
    store.enqueue(QUEUE, "seed", id="seed")
    items = [redisq.Spec(i, id=f"s{i}") for i in range(20)] + list(range(20, 50))

    # When the batch is re-sent
    with twice():
        jobs = store.enqueue_many(QUEUE, items)

    # Then every item is one job, and the counts match
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids)) == 50
    assert ids[:20] == [f"s{i}" for i in range(20)]
    assert [j.payload for j in jobs] == list(range(50))
    assert set(_members(direct, prefix, "ready")) == {"seed", *ids}
    assert _meta(direct, prefix, "seq") == 51
    assert store.counts(QUEUE)[JobState.READY] == 51
    assert jobs == [store.get(QUEUE, i) for i in ids]


# ---------------------------------------------------------------------- lease transitions


def test_ack_completes_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a leased job
    job = _claim_one(store)

    # When its ack is re-sent
    with twice():
        done = store.ack(job, result={"ok": True})

    # Then the re-run was accepted as the same ack: completed once, in the done set once
    stored = store.get(QUEUE, job.id)
    assert stored is not None
    assert stored.state is JobState.COMPLETED
    assert stored.result == {"ok": True}
    assert (stored.attempts, stored.token) == (1, job.token)
    assert _members(direct, prefix, "done") == [job.id]
    assert _members(direct, prefix, "leased") == []
    assert store.counts(QUEUE)[JobState.COMPLETED] == 1

    # And a further re-send with the same token still succeeds without a second completion
    assert store.ack(job, result={"ok": True}).state is JobState.COMPLETED
    assert _members(direct, prefix, "done") == [job.id]
    assert store.get(QUEUE, job.id) == stored
    assert done.result == {"ok": True}


def test_ack_returns_the_stored_snapshot(store: redisq.Store, twice: Twice) -> None:
    # Given a leased job
    job = _claim_one(store)

    # When its ack is re-sent
    with twice():
        done = store.ack(job)

    # Then the snapshot returned is the job as stored: finished when the first run finished it
    assert done == store.get(QUEUE, job.id)


@pytest.mark.parametrize("dead", [False, True], ids=["retry", "dead"])
def test_nack_fails_the_attempt_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice, dead: bool
) -> None:
    # Given a leased job on its first attempt of three
    job = _claim_one(store, max_attempts=3)

    # When its nack is re-sent
    with twice():
        failed = store.nack(job, error="boom", delay_ms=60_000, dead=dead)

    # Then one retry is scheduled (or one death recorded); the attempt was counted once
    stored = store.get(QUEUE, job.id)
    assert stored is not None
    assert failed == stored
    assert (stored.attempts, stored.token, stored.last_error) == (1, job.token, "boom")
    assert _members(direct, prefix, "leased") == []
    assert _members(direct, prefix, "ready") == []
    if dead:
        assert stored.state is JobState.DEAD
        assert _members(direct, prefix, "dead") == [job.id]
        assert _members(direct, prefix, "scheduled") == []
    else:
        assert stored.state is JobState.SCHEDULED
        assert direct.zrange(_key(prefix, "scheduled"), 0, -1, withscores=True) == [
            (job.id.encode(), float(stored.run_at_ms))
        ]
        assert _members(direct, prefix, "dead") == []
    counts = store.counts(QUEUE)
    assert sum(counts.values()) == 1


def test_nack_of_the_last_attempt_dead_letters_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a leased job on its only attempt
    job = _claim_one(store, max_attempts=1)

    # When its nack is re-sent
    with twice():
        failed = store.nack(job, error="last", delay_ms=0)

    # Then it died once
    assert failed.state is JobState.DEAD
    assert failed == store.get(QUEUE, job.id)
    assert _members(direct, prefix, "dead") == [job.id]
    assert _members(direct, prefix, "ready") == []
    assert store.counts(QUEUE)[JobState.DEAD] == 1


def test_release_uncounts_the_attempt_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a job leased for its second attempt
    first = _claim_one(store)
    store.nack(first, delay_ms=0)
    (job,) = store.claim(QUEUE, worker="w1", lease_ms=60_000)
    assert job.attempts == 2

    # When its release is re-sent
    with twice():
        released = store.release(job)

    # Then the attempt was taken back once (2 -> 1, not 0)
    stored = store.get(QUEUE, job.id)
    assert stored is not None
    assert released == stored
    assert (stored.state, stored.attempts, stored.token) == (JobState.READY, 1, job.token)
    assert _members(direct, prefix, "ready") == [job.id]
    assert _members(direct, prefix, "leased") == []

    # And the next claim counts the attempt again from there
    (again,) = store.claim(QUEUE, worker="w2")
    assert (again.id, again.attempts) == (job.id, 2)


@pytest.mark.parametrize("verb", ["release", "nack"])
def test_retry_after_another_worker_took_the_job_still_succeeds(
    store: redisq.Store,
    direct: redis.Redis,
    proxy: TcpProxy,
    real_url: str,
    prefix: str,
    verb: str,
) -> None:
    """release / nack(delay_ms=0) put the job back at once: another worker may claim it
    before the retry of the call arrives. The call did succeed; it must not say LeaseLost."""
    # Given a job leased through the proxy, and a second worker connected directly
    job = _claim_one(store)
    with redisq.connect(real_url, prefix=prefix) as other, ThreadPoolExecutor(1) as pool:
        other.counts(QUEUE)
        calls = evalsha_calls(direct)

        # When the release (or nack) runs, its reply is late, and the second worker claims
        # the job before the client's retry reaches the server (the proxy is frozen meanwhile)
        proxy.delay_next_reply(LATE_REPLY)
        if verb == "release":
            future = pool.submit(store.release, job)
        else:
            future = pool.submit(store.nack, job, error="boom", delay_ms=0)
        wait_for(lambda: _job_state(direct, prefix, job.id) == b"ready")
        proxy.freeze()
        try:
            assert evalsha_calls(direct) == calls + 1, "the retry ran too early"
            (taken,) = other.claim(QUEUE, worker="w2", lease_ms=60_000)
        finally:
            proxy.unfreeze()

        # Then the retried call still reports success
        outcome: Any
        try:
            outcome = future.result(timeout=10)
        except redisq.LeaseLost as exc:
            outcome = exc
    assert evalsha_calls(direct) == calls + 3, "the call was not retried"
    assert taken.id == job.id
    assert taken.attempts == (1 if verb == "release" else 2)
    stored = store.get(QUEUE, job.id)
    assert stored is not None
    assert (stored.state, stored.token, stored.worker) == (JobState.LEASED, taken.token, "w2")
    assert isinstance(outcome, redisq.Job), f"the retried {verb} raised {outcome!r}"


def test_renew_extends_the_lease_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a leased job
    job = _claim_one(store)

    # When its renew is re-sent
    with twice():
        renewed = store.renew(job, lease_ms=120_000)

    # Then the lease stands with the same token, and every record of the deadline agrees
    stored = store.get(QUEUE, job.id)
    assert stored is not None
    assert (stored.state, stored.token, stored.attempts) == (JobState.LEASED, job.token, 1)
    assert renewed.lease_deadline_ms == stored.lease_deadline_ms
    assert job.lease_deadline_ms is not None
    assert stored.lease_deadline_ms is not None
    assert stored.lease_deadline_ms > job.lease_deadline_ms
    assert direct.zscore(_key(prefix, "leased"), job.id) == float(stored.lease_deadline_ms)

    # And the holder can still finish the job
    assert store.ack(renewed).state is JobState.COMPLETED


def test_cancel_of_a_leased_job_happens_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a leased job
    job = _claim_one(store)
    token_counter = _meta(direct, prefix, "token")

    # When the cancel is re-sent
    with twice():
        cancelled = store.cancel(QUEUE, job.id)

    # Then it was cancelled once, with one new token
    stored = store.get(QUEUE, job.id)
    assert stored is not None
    assert stored.state is JobState.CANCELLED
    assert _meta(direct, prefix, "token") == token_counter + 1
    assert _members(direct, prefix, "cancelled") == [job.id]
    assert _members(direct, prefix, "leased") == []
    with pytest.raises(redisq.LeaseLost):
        store.ack(job)
    # And the holder was signalled once, with the token of the lease the cancel ended
    entries = direct.xrange(_key(prefix, "cancels"))
    assert [(e[1][b"id"].decode(), int(e[1][b"token"])) for e in entries] == [(job.id, job.token)]
    # And the call reports that it cancelled the job (its first run did)
    assert cancelled is True


def test_cancel_of_a_ready_job_happens_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a ready job
    store.enqueue(QUEUE, "x", id="j1")

    # When the cancel is re-sent
    with twice():
        cancelled = store.cancel(QUEUE, "j1")

    # Then it was cancelled once, and the call reports that it cancelled the job
    assert _members(direct, prefix, "cancelled") == ["j1"]
    assert _members(direct, prefix, "ready") == []
    # And no worker held it: nothing is signalled
    assert not direct.exists(_key(prefix, "cancels"))
    assert cancelled is True


# -------------------------------------------------------------------------------------- claim


def _check_claim_retry(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice, queue: str
) -> None:
    ids = [j.id for j in store.enqueue_many(queue, [redisq.Spec(i, id=f"j{i}") for i in range(8)])]

    # When a claim of three is re-sent
    with twice():
        jobs = store.claim(queue, worker="w1", count=3, lease_ms=60_000)

    # Then the retry returned what the first run leased: the three oldest, with their tokens
    assert [j.id for j in jobs] == ids[:3]
    assert [j.token for j in jobs] == [1, 2, 3]
    assert all(j.state is JobState.LEASED and j.attempts == 1 for j in jobs)
    # No other job was leased or lost: the ready set lost exactly three
    assert set(_members(direct, prefix, "leased", queue)) == set(ids[:3])
    assert _members(direct, prefix, "ready", queue) == ids[3:]
    assert _meta(direct, prefix, "token", queue) == 3
    for job in jobs:
        assert store.get(queue, job.id) == job
    counts = store.counts(queue)
    assert (counts[JobState.LEASED], counts[JobState.READY]) == (3, 5)

    # And the holder's tokens work
    assert [j.state for j in store.ack_many(jobs)] == [JobState.COMPLETED] * 3


def test_claim_returns_the_same_jobs(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    _check_claim_retry(store, direct, prefix, twice, QUEUE)


@pytest.mark.slow
def test_claim_returns_the_same_jobs_every_time(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    for round_ in range(CLAIM_ROUNDS):
        _check_claim_retry(store, direct, prefix, twice, f"round{round_}")


def test_a_claim_pipelined_behind_a_wait_returns_the_same_jobs(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a short claim (so the next waiting claim starts by waiting), and a first wait
    # (the connection's client id, which stop_waiting needs, is asked for once), then eight jobs
    assert store.claim(QUEUE, worker="w1") == []
    assert store.claim(QUEUE, worker="w1", wait_ms=1) == []
    ids = [j.id for j in store.enqueue_many(QUEUE, [redisq.Spec(i, id=f"j{i}") for i in range(8)])]

    # When the wait and the claim behind it are re-sent together (the wait's reply is late)
    with twice():
        jobs = store.claim(QUEUE, worker="w1", count=3, lease_ms=60_000, wait_ms=100)

    # Then the retry returned what the first run leased, and nothing else was leased or lost
    assert [j.id for j in jobs] == ids[:3]
    assert [j.token for j in jobs] == [1, 2, 3]
    assert set(_members(direct, prefix, "leased")) == set(ids[:3])
    assert _members(direct, prefix, "ready") == ids[3:]
    assert [j.state for j in store.ack_many(jobs)] == [JobState.COMPLETED] * 3


def test_claim_from_several_queues_strands_nothing(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given two queues with one job each
    store.enqueue("qa", "a", id="a1")
    store.enqueue("qb", "b", id="b1")

    # When a claim of both is re-sent (the first script call's reply is the late one)
    with twice(scripts=2):
        jobs = store.claim(["qa", "qb"], worker="w1", count=2, lease_ms=60_000)

    # Then both jobs came back leased, and nothing is left behind
    assert sorted(j.id for j in jobs) == ["a1", "b1"]
    for queue in ("qa", "qb"):
        assert _members(direct, prefix, "ready", queue) == []
        assert len(_members(direct, prefix, "leased", queue)) == 1
    assert [j.state for j in store.ack_many(jobs)] == [JobState.COMPLETED] * 2


def test_claim_and_ack_completes_one_job(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given three ready jobs
    store.enqueue_many(QUEUE, [redisq.Spec(i, id=f"j{i}") for i in range(3)])

    # When a claim_and_ack is re-sent
    with twice():
        job = store.claim_and_ack(QUEUE)

    # Then one job was completed, and the call returned it
    assert job is not None
    assert (job.id, job.state, job.attempts) == ("j0", JobState.COMPLETED, 1)
    assert job == store.get(QUEUE, "j0")
    assert _members(direct, prefix, "done") == ["j0"]
    assert _members(direct, prefix, "ready") == ["j1", "j2"]
    assert _meta(direct, prefix, "token") == 1


# -------------------------------------------------------------------------------------- async


def test_async_claim_returns_the_same_jobs(
    proxy: TcpProxy, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    async def main() -> None:
        store = redisq.connect_async(proxy.url, prefix=prefix, socket_timeout=SOCKET_TIMEOUT)
        try:
            await store.enqueue_many(QUEUE, [redisq.Spec(i, id=f"j{i}") for i in range(5)])

            # When an enqueue and a claim are each re-sent
            with twice():
                extra = await store.enqueue(QUEUE, "extra", id="extra")
            with twice():
                jobs = await store.claim(QUEUE, worker="w1", count=2, lease_ms=60_000)

            # Then one job was added, and the claim returned what its first run leased
            assert extra.id == "extra"
            assert [j.id for j in jobs] == ["j0", "j1"]
            assert [j.token for j in jobs] == [1, 2]
            assert sorted(_members(direct, prefix, "leased")) == ["j0", "j1"]
            assert _members(direct, prefix, "ready") == ["j2", "j3", "j4", "extra"]
            assert _meta(direct, prefix, "seq") == 6

            # And an ack re-sent after that completes each job once
            with twice():
                done = await store.ack_many(jobs)
            assert [j.state for j in done] == [JobState.COMPLETED] * 2
            assert sorted(_members(direct, prefix, "done")) == ["j0", "j1"]
        finally:
            await store.close()

    asyncio.run(main())


# -------------------------------------------------------------------------------- rate limits


def test_claim_under_a_rate_limit_takes_its_token_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a queue that lets one job start per hour
    ids = [j.id for j in store.enqueue_many(QUEUE, [redisq.Spec(i, id=f"j{i}") for i in range(3)])]
    store.set_rate_limit(QUEUE, "1/h")

    # When a claim is re-sent
    before_ms = int(direct.time()[0]) * 1000
    with twice():
        jobs = store.claim(QUEUE, worker="w1", count=3, lease_ms=60_000)

    # Then it leased the first job once, and the bucket moved by one job (an hour), not two
    assert [j.id for j in jobs] == ids[:1]
    assert _members(direct, prefix, "ready") == ids[1:]
    assert _meta(direct, prefix, "token") == 1
    next_at = store.rate_limit(QUEUE).next_at_ms
    assert next_at is not None
    hour = 3_600_000
    assert before_ms + hour - hour // 2 - 1_000 <= next_at <= before_ms + hour, next_at
    assert store.claim(QUEUE, worker="w2", count=3) == []


def test_set_rate_limit_is_the_same_when_re_sent(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    with twice():
        store.set_rate_limit(QUEUE, "20/m")
    assert direct.hget(_key(prefix, "meta"), "rate") == b"3000000 1500000 20/m"
    with twice():
        store.set_rate_limit(QUEUE, None)
    assert direct.hget(_key(prefix, "meta"), "rate") is None


def test_a_re_sent_hold_holds_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue(QUEUE, 1)
    before_ms = int(direct.time()[0]) * 1000
    with twice():
        until = store.hold(QUEUE, 10_000)
    # Ten seconds from the run that counted (the re-send's, at most the late reply later),
    # never twenty.
    assert before_ms + 10_000 <= until <= before_ms + 10_000 + int(LATE_REPLY * 1000) + 1_500
    assert store.rate_limit(QUEUE).next_at_ms == until
    assert store.claim(QUEUE, worker="w") == []


# ------------------------------------------------------------ concurrency groups (lib/groups)


def _group_keys(direct: redis.Redis, prefix: str) -> dict[str, Any]:
    """What the groups of the queue hold: waiting members, turns, leases, job -> group."""
    return {
        "gready": len(_members(direct, prefix, "gready")),
        "gturn": _members(direct, prefix, "gturn"),
        "gleased": _members(direct, prefix, "gleased"),
        "gjob": direct.hlen(_key(prefix, "gjob")),
    }


def _grouped(store: redisq.Store, n: int = 2) -> list[str]:
    store.set_group_concurrency(QUEUE, 1)
    jobs = store.enqueue_many(QUEUE, [redisq.Spec(i, id=f"g{i}") for i in range(n)], group="acme")
    return [j.id for j in jobs]


def test_a_grouped_enqueue_joins_its_group_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue(QUEUE, "seed", id="seed")  # a queue the store already registered
    with twice():
        store.enqueue(QUEUE, 1, id="j1", group="acme")
    assert _group_keys(direct, prefix) == {"gready": 1, "gturn": ["acme"], "gleased": [], "gjob": 1}
    assert _meta(direct, prefix, "seq") == 2
    assert store.counts(QUEUE)[JobState.READY] == 2


def test_a_grouped_claim_takes_the_groups_slot_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    ids = _grouped(store)
    with twice():
        jobs = store.claim(QUEUE, worker="w1", count=5, lease_ms=60_000)
    # The re-sent claim returned the first run's job from its memo: one lease, one slot.
    assert [j.id for j in jobs] == ids[:1]
    assert _group_keys(direct, prefix) == {
        "gready": 1,
        "gturn": [],
        "gleased": ["acme\x00g0"],
        "gjob": 2,
    }
    assert store.claim(QUEUE, worker="w2", count=5) == []


@pytest.mark.parametrize("how", ["ack", "nack", "release", "cancel", "delete"])
def test_a_re_sent_end_of_a_grouped_lease_frees_the_slot_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice, how: str
) -> None:
    ids = _grouped(store)
    (job,) = store.claim(QUEUE, worker="w1", count=5, lease_ms=60_000)
    with twice():
        if how == "ack":
            store.ack(job)
        elif how == "nack":
            store.nack(job, error="x", delay_ms=0)
        elif how == "release":
            store.release(job)
        elif how == "cancel":
            store.cancel(QUEUE, job.id)
        else:
            store.delete(QUEUE, job.id)
    keys = _group_keys(direct, prefix)
    assert keys["gleased"] == []
    assert keys["gturn"] == ["acme"]
    back = how in ("nack", "release")  # the job waits in its group again, first
    assert keys["gready"] == (2 if back else 1)
    assert keys["gjob"] == (2 if back else 1)
    again = store.claim(QUEUE, worker="w2", count=5, lease_ms=60_000)
    assert [j.id for j in again] == [job.id if back else ids[1]]


def test_set_concurrency_is_the_same_when_re_sent(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    with twice():
        store.set_concurrency(QUEUE, 7)
    with twice():
        store.set_group_concurrency(QUEUE, 2)
    assert direct.hmget(_key(prefix, "meta"), "conc", "gconc") == [b"7", b"2"]
    with twice():
        store.set_concurrency(QUEUE, None)
    assert direct.hget(_key(prefix, "meta"), "conc") is None


def test_a_claim_under_a_groups_own_rate_limit_takes_its_token_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.set_rate_limit(QUEUE, "1/h", key="acme")
    ids = [
        j.id
        for j in store.enqueue_many(
            QUEUE, [redisq.Spec(i, id=f"g{i}") for i in range(3)], group="acme"
        )
    ]
    before_ms = int(direct.time()[0]) * 1000
    with twice():
        jobs = store.claim(QUEUE, worker="w1", count=3, lease_ms=60_000)
    assert [j.id for j in jobs] == ids[:1]
    # The group's bucket moved by one job (an hour, less the tolerance), not two.
    next_at = store.rate_limit(QUEUE, key="acme").next_at_ms
    assert next_at is not None
    hour = 3_600_000
    assert before_ms + hour - hour // 2 - 1_000 <= next_at <= before_ms + hour, next_at
    assert store.claim(QUEUE, worker="w2", count=3) == []
    assert _group_keys(direct, prefix)["gleased"] == ["acme\x00g0"]


def test_set_rate_limit_with_a_key_is_the_same_when_re_sent(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    with twice():
        store.set_rate_limit(QUEUE, "20/m", key="acme")
    assert direct.hget(_key(prefix, "grate"), "acme") == b"3000000 1500000 20/m"
    with twice():
        store.set_rate_limit(QUEUE, None, key="acme")
    assert direct.hlen(_key(prefix, "grate")) == 0


# ------------------------------------------------------------------- expiry and dedupe windows


@pytest.fixture
def clocked(proxy: TcpProxy, prefix: str) -> Iterator[tuple[redisq.Store, TestClock]]:
    """Like `store`, on the test clock (expiry and windows then pass when the test says)."""
    clock = TestClock()
    connected = redisq.connect(proxy.url, prefix=prefix, socket_timeout=SOCKET_TIMEOUT, clock=clock)
    connected.enqueue(QUEUE, "seed", id="seed")  # registered: one script call per enqueue
    yield connected, clock
    connected.close()


def test_an_expiring_enqueue_is_created_once(
    clocked: tuple[redisq.Store, TestClock], direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store, clock = clocked
    with twice():
        job = store.enqueue(QUEUE, "x", expires_ms=1_000)
    assert _meta(direct, prefix, "enqueued") == 2
    assert _members(direct, prefix, "expiring") == [f"2/{job.id}"]
    assert store.expires_at(QUEUE, job.id) == clock.now_ms + 1_000


def test_a_throttled_enqueue_is_created_once(
    clocked: tuple[redisq.Store, TestClock], direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store, clock = clocked
    with twice():
        job = store.enqueue(QUEUE, "x", unique_key="t", throttle_ms=60_000)
    assert _meta(direct, prefix, "enqueued") == 2
    window = direct.get(_key(prefix, "window:t"))
    assert window == f"{clock.now_ms + 60_000}/{job.id}".encode()


def test_a_debounced_repeat_is_applied_once(
    clocked: tuple[redisq.Store, TestClock], direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store, clock = clocked
    first = store.enqueue(QUEUE, 1, unique_key="d", debounce_ms=1_000)
    clock.advance(500)
    with twice():
        again = store.enqueue(QUEUE, 2, unique_key="d", debounce_ms=1_000)
    assert again.id == first.id
    assert _members(direct, prefix, "scheduled") == [first.id]
    assert _meta(direct, prefix, "enqueued") == 2
    stored = store.get(QUEUE, first.id)
    assert stored is not None
    assert (stored.payload, stored.run_at_ms) == (2, clock.now_ms + 1_000)


def test_a_re_sent_reap_expires_each_job_once(
    clocked: tuple[redisq.Store, TestClock], direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store, clock = clocked
    ids = [j.id for j in store.enqueue_many(QUEUE, [1, 2, 3], expires_ms=100)]
    clock.advance(100)
    with twice():
        store.reap(QUEUE)
    assert _meta(direct, prefix, "expired") == 3
    assert sorted(_members(direct, prefix, "cancelled")) == sorted(ids)
    assert _members(direct, prefix, "expiring") == []
    assert _members(direct, prefix, "ready") == ["seed"]


def test_a_re_sent_claim_hands_out_no_expired_job(
    clocked: tuple[redisq.Store, TestClock], direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store, clock = clocked
    store.enqueue_many(QUEUE, [1, 2], expires_ms=100, priority=5)
    clock.advance(100)
    with twice():
        leased = store.claim(QUEUE, worker="w", count=5)
    assert [j.id for j in leased] == ["seed"]
    assert _meta(direct, prefix, "expired") == 2
    assert _members(direct, prefix, "leased") == ["seed"]
