"""Lifecycle misuse is refused with a typed error and changes nothing (reliability plan 4.4).

Stale, wrong, expired and missing leases; acks after the job moved on; operations on jobs
that are in the wrong state or gone. Every refusal is checked against a snapshot of the
test's whole keyspace (and the job hash byte for byte), so "nothing changed" is exact.
Each test runs on every backend with both clients (`client` is the sync Store or the
AsyncStore behind an adapter); time moves only with the test clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import redisq
from redisq import (
    InvalidArgument,
    InvalidTransition,
    Job,
    JobNotFound,
    JobState,
    LeaseLost,
)
from redisq._core.records import unpack_record
from tests.support.clock import TestClock

Q = "misuse"
LEASE = 1_000


def stored_record(raw: Any, prefix: str, job_id: str, queue: str = Q) -> Any:
    """The stored (packed) record of a job, byte for byte."""
    return raw.hget(f"{{{prefix}:{queue}}}:jobs", job_id)


def keyspace(raw: Any, prefix: str) -> dict[bytes, tuple[str, Any, bool]]:
    """Every key of the test's prefix: its type, a type-appropriate read, and whether it
    has a TTL (the remaining time itself moves on its own)."""
    out: dict[bytes, tuple[str, Any, bool]] = {}
    for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
        for key in raw.scan_iter(match=pattern, count=1000):
            kind = raw.type(key).decode()
            value: Any
            if kind == "string":
                value = raw.get(key)
            elif kind == "hash":
                value = raw.hgetall(key)
            elif kind == "zset":
                value = raw.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = raw.smembers(key)
            elif kind == "list":
                value = raw.lrange(key, 0, -1)
            else:
                value = kind
            out[key] = (kind, value, raw.pttl(key) > 0)
    return out


def refused(raw: Any, prefix: str, error: type[Exception], action: Callable[[], Any]) -> Any:
    """Run `action`, expecting `error`, and check that no key of the prefix changed."""
    before = keyspace(raw, prefix)
    with pytest.raises(error) as info:
        action()
    after = keyspace(raw, prefix)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a refused {error.__name__} still changed {changed}"
    return info.value


def claim_one(client: Any, **options: Any) -> Job:
    jobs: list[Job] = client.claim(Q, worker="w1", lease_ms=LEASE, **options)
    assert len(jobs) == 1
    return jobs[0]


def leased(client: Any, payload: Any = "p", **options: Any) -> Job:
    """Enqueue one job and claim it with a LEASE ms lease."""
    job = client.enqueue(Q, payload, **options)
    got = claim_one(client)
    assert got.id == job.id
    assert got.state is JobState.LEASED
    return got


# ------------------------------------------------------------------------------------ ack


def test_ack_of_an_unknown_id_is_job_not_found(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client)
    ghost = replace(job, id="no-such-job")
    exc = refused(raw, prefix, JobNotFound, lambda: client.ack(ghost))
    assert (exc.job_id, exc.queue) == ("no-such-job", Q)
    # A queue nobody ever used: the same answer, and no key of it appears.
    elsewhere = replace(job, queue="never-used")
    exc = refused(raw, prefix, JobNotFound, lambda: client.ack(elsewhere))
    assert (exc.job_id, exc.queue) == (job.id, "never-used")
    assert client.ack(job).state is JobState.COMPLETED


def test_ack_of_a_deleted_job_is_job_not_found(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client)
    assert client.delete(Q, job.id) is True
    exc = refused(raw, prefix, JobNotFound, lambda: client.ack(job))
    assert exc.job_id == job.id
    assert client.get(Q, job.id) is None


def test_ack_with_a_wrong_token_changes_nothing(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client)
    assert job.token is not None
    record = stored_record(raw, prefix, job.id)
    wrong = replace(job, token=job.token + 1_000)
    exc = refused(raw, prefix, LeaseLost, lambda: client.ack(wrong, {"r": 1}))
    assert (exc.job_id, exc.token, exc.reason, exc.state) == (
        job.id,
        job.token + 1_000,
        "stale token",
        "leased",
    )
    assert stored_record(raw, prefix, job.id) == record
    # The holder is unaffected.
    assert client.ack(job).state is JobState.COMPLETED


def test_ack_twice_with_the_same_token_completes_once(
    client: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    job = leased(client)
    first = client.ack(job, {"r": 1})
    record = stored_record(raw, prefix, job.id)
    clock.advance(LEASE * 5)  # a retry long after: the lease deadline has passed by now
    second = client.ack(job, {"r": 2})
    assert second.state is JobState.COMPLETED
    assert (second.token, second.attempts, second.result) == (job.token, 1, {"r": 1})
    assert second.finished_at_ms == first.finished_at_ms
    assert stored_record(raw, prefix, job.id) == record
    done = f"{{{prefix}:{Q}}}:done"
    assert raw.zrange(done, 0, -1) == [job.id.encode()]
    assert client.counts(Q)[JobState.COMPLETED] == 1


def test_ack_after_ack_with_another_token_is_refused(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client)
    client.ack(job)
    assert job.token is not None
    for token in (job.token - 1, job.token + 1):
        exc = refused(raw, prefix, LeaseLost, lambda t=token: client.ack(replace(job, token=t)))
        assert (exc.reason, exc.state) == ("stale token", "completed")


def test_ack_with_an_older_token_after_a_reclaim_is_refused(
    client: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    old = leased(client, max_attempts=5)
    clock.advance(LEASE + 1)
    new = claim_one(client)  # the claim reaps the expired lease and leases the job again
    assert new.id == old.id
    assert new.token is not None
    assert old.token is not None
    assert new.token > old.token
    assert new.attempts == 2
    record = stored_record(raw, prefix, old.id)
    late_calls = {
        "ack": lambda: client.ack(old),
        "nack": lambda: client.nack(old, error="late", delay_ms=0),
        "renew": lambda: client.renew(old),
        "release": lambda: client.release(old),
        "progress": lambda: client.progress(old, 50),
    }
    for name, action in late_calls.items():
        exc = refused(raw, prefix, LeaseLost, action)
        assert (exc.job_id, exc.token, exc.reason, exc.state) == (
            old.id,
            old.token,
            "stale token",
            "leased",
        ), name
    assert stored_record(raw, prefix, old.id) == record
    assert client.ack(new).state is JobState.COMPLETED


def test_ack_after_the_job_went_dead_is_refused(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client, max_attempts=1)
    dead = client.nack(job, error="boom", delay_ms=0)
    assert dead.state is JobState.DEAD
    record = stored_record(raw, prefix, job.id)
    late_calls = {
        "ack": lambda: client.ack(job),
        "renew": lambda: client.renew(job),
        "release": lambda: client.release(job),
        "progress": lambda: client.progress(job, 1),
    }
    seen = {name: refused(raw, prefix, LeaseLost, call) for name, call in late_calls.items()}
    # The same nack again is a client retry: it reports the dead job and changes nothing.
    retried = client.nack(job, error="again", delay_ms=0)
    assert (retried.state, retried.last_error) == (JobState.DEAD, "boom")
    assert stored_record(raw, prefix, job.id) == record
    assert client.counts(Q)[JobState.DEAD] == 1
    assert client.counts(Q)[JobState.COMPLETED] == 0
    assert {n: (e.reason, e.state) for n, e in seen.items()} == dict.fromkeys(
        late_calls, ("stale token", "dead")
    )


def test_ack_after_the_reaper_killed_the_job_is_refused(
    client: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    job = leased(client, max_attempts=1)
    clock.advance(LEASE)
    assert client.reap(Q) == 1
    record = stored_record(raw, prefix, job.id)
    assert unpack_record(record)["state"] == b"dead"
    exc = refused(raw, prefix, LeaseLost, lambda: client.ack(job))
    assert exc.state == "dead"
    assert stored_record(raw, prefix, job.id) == record


def test_ack_many_is_all_or_nothing(client: Any, raw: Any, prefix: str) -> None:
    client.enqueue_many(Q, ["a", "b", "c"])
    a, b, c = client.claim(Q, worker="w1", lease_ms=LEASE, count=3)
    stale = replace(b, token=c.token)
    exc = refused(raw, prefix, LeaseLost, lambda: client.ack_many([a, stale, c]))
    assert exc.job_id == b.id
    assert client.counts(Q)[JobState.LEASED] == 3
    assert [j.state for j in client.ack_many([a, b, c])] == [JobState.COMPLETED] * 3


# ------------------------------------------------------------------------- renew, release


def test_renew_after_expiry_is_refused(
    client: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    job = leased(client)
    clock.advance(LEASE)  # the deadline is now: the lease has ended
    record = stored_record(raw, prefix, job.id)
    exc = refused(raw, prefix, LeaseLost, lambda: client.renew(job))
    assert (exc.job_id, exc.token, exc.reason) == (job.id, job.token, "lease expired")
    for action in (
        lambda: client.ack(job),
        lambda: client.nack(job, error="late", delay_ms=0),
        lambda: client.release(job),
        lambda: client.progress(job, 1),
    ):
        assert refused(raw, prefix, LeaseLost, action).reason == "lease expired"
    [outcome] = client.renew_many([job])
    assert isinstance(outcome, LeaseLost)
    assert outcome.reason == "lease expired"
    assert stored_record(raw, prefix, job.id) == record


def test_renew_just_before_expiry_succeeds(client: Any, clock: TestClock) -> None:
    job = leased(client)
    clock.advance(LEASE - 1)
    renewed = client.renew(job, lease_ms=5_000)
    assert renewed.lease_deadline_ms == clock.now_ms + 5_000
    clock.advance(4_999)
    assert client.ack(renewed).state is JobState.COMPLETED


def test_renew_by_a_non_holder_is_refused(client: Any, raw: Any, prefix: str) -> None:
    client.enqueue_many(Q, ["a", "b"])
    a, b = client.claim(Q, worker="w1", lease_ms=LEASE, count=2)
    record = stored_record(raw, prefix, a.id)
    impostor = replace(a, token=b.token, worker="w2")
    exc = refused(raw, prefix, LeaseLost, lambda: client.renew(impostor, lease_ms=60_000))
    assert (exc.job_id, exc.reason, exc.state) == (a.id, "stale token", "leased")
    outcomes = client.renew_many([impostor, b])
    assert isinstance(outcomes[0], LeaseLost)
    assert isinstance(outcomes[1], Job)
    assert stored_record(raw, prefix, a.id) == record


def test_release_of_a_never_claimed_job_is_invalid(client: Any, raw: Any, prefix: str) -> None:
    job = client.enqueue(Q, "p")
    exc = refused(raw, prefix, InvalidArgument, lambda: client.release(job))
    assert exc.field == "job.token"


def test_release_with_a_stale_token_is_refused(
    client: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    old = leased(client, max_attempts=5)
    clock.advance(LEASE + 1)
    new = claim_one(client)
    exc = refused(raw, prefix, LeaseLost, lambda: client.release(old))
    assert (exc.reason, exc.state) == ("stale token", "leased")
    released = client.release(new)
    assert (released.state, released.attempts) == (JobState.READY, 1)
    # Releasing again with the same token is a retry, not a second release.
    again = client.release(new)
    assert (again.state, again.attempts) == (JobState.READY, 1)
    assert client.counts(Q)[JobState.READY] == 1


# ------------------------------------------------------------------------------------ nack


def test_nack_with_a_stale_token_is_refused(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client)
    assert job.token is not None
    exc = refused(
        raw, prefix, LeaseLost, lambda: client.nack(replace(job, token=job.token + 7), error="x")
    )
    assert exc.reason == "stale token"


def test_nack_twice_with_the_same_token_counts_once(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client, max_attempts=5)
    first = client.nack(job, error="boom", delay_ms=60_000)
    record = stored_record(raw, prefix, job.id)
    second = client.nack(job, error="other", delay_ms=0)
    assert second.state is first.state is JobState.SCHEDULED
    assert (second.attempts, second.last_error, second.run_at_ms) == (
        1,
        "boom",
        first.run_at_ms,
    )
    assert stored_record(raw, prefix, job.id) == record
    counts = client.counts(Q)
    assert (counts[JobState.SCHEDULED], counts[JobState.READY]) == (1, 0)


def test_nack_with_a_1_mb_error_is_cut_to_16_kib(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client, max_attempts=5)
    error = "E" + "x" * (1024 * 1024)
    back = client.nack(job, error=error, delay_ms=0)
    assert back.state is JobState.READY
    assert back.last_error is not None
    assert len(back.last_error) == 16 * 1024
    assert back.last_error.startswith("Exx")
    assert "x\n... [truncated] ...\nx" in back.last_error  # the first and last halves
    stored = unpack_record(stored_record(raw, prefix, job.id))["error"]
    assert len(stored) == 16 * 1024
    assert client.get(Q, job.id).last_error == back.last_error


def test_nack_with_an_empty_error_keeps_the_previous_one(client: Any) -> None:
    job = leased(client, max_attempts=5)
    client.nack(job, error="first failure", delay_ms=0)
    again = claim_one(client)
    back = client.nack(again, error="", delay_ms=0)
    assert back.last_error == "first failure"


# ----------------------------------------------------------------------------------- cancel


def test_cancel_of_a_leased_job_fences_its_holder(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client, unique_key="u1")
    assert client.cancel(Q, job.id) is True
    record = stored_record(raw, prefix, job.id)
    assert unpack_record(record)["state"] == b"cancelled"
    assert int(unpack_record(record)["token"]) != job.token
    holder_calls = {
        "ack": lambda: client.ack(job),
        "nack": lambda: client.nack(job, error="x", delay_ms=0),
        "renew": lambda: client.renew(job),
        "release": lambda: client.release(job),
        "progress": lambda: client.progress(job, 1),
    }
    seen = {name: refused(raw, prefix, LeaseLost, call) for name, call in holder_calls.items()}
    # Each refusal tells the holder what became of its job (so a handler can stop early).
    assert {n: (e.job_id, e.state) for n, e in seen.items()} == dict.fromkeys(
        holder_calls, (job.id, "cancelled")
    )
    assert stored_record(raw, prefix, job.id) == record
    counts = client.counts(Q)
    assert (counts[JobState.LEASED], counts[JobState.CANCELLED]) == (0, 1)
    # The unique key was freed with the cancellation.
    assert client.enqueue(Q, "again", unique_key="u1").id != job.id


def test_cancel_twice_returns_false_the_second_time(client: Any, raw: Any, prefix: str) -> None:
    job = client.enqueue(Q, "p")
    assert client.cancel(Q, job.id) is True
    before = keyspace(raw, prefix)
    assert client.cancel(Q, job.id) is False
    assert keyspace(raw, prefix) == before
    assert client.cancel(Q, "never-existed") is False
    assert keyspace(raw, prefix) == before


def test_cancel_of_a_finished_job_returns_false(client: Any, raw: Any, prefix: str) -> None:
    job = leased(client)
    client.ack(job)
    before = keyspace(raw, prefix)
    assert client.cancel(Q, job.id) is False
    assert keyspace(raw, prefix) == before
    assert client.get(Q, job.id).state is JobState.COMPLETED


# --------------------------------------------------------------------- update and delete


def test_update_of_a_leased_job_is_an_invalid_transition(
    client: Any, raw: Any, prefix: str
) -> None:
    job = leased(client)
    exc = refused(
        raw,
        prefix,
        InvalidTransition,
        lambda: client.update(Q, job.id, priority=9, payload="new", run_at_ms=0),
    )
    assert (exc.job_id, exc.actual) == (job.id, "leased")
    assert "ready" in exc.expected
    stored = client.get(Q, job.id)
    assert (stored.state, stored.priority, stored.payload) == (JobState.LEASED, 0, "p")


def test_update_of_a_finished_job_is_an_invalid_transition(
    client: Any, raw: Any, prefix: str
) -> None:
    job = leased(client)
    client.ack(job)
    exc = refused(raw, prefix, InvalidTransition, lambda: client.update(Q, job.id, priority=1))
    assert exc.actual == "completed"


def test_update_of_a_missing_id_is_job_not_found(client: Any, raw: Any, prefix: str) -> None:
    client.enqueue(Q, "p")
    exc = refused(raw, prefix, JobNotFound, lambda: client.update(Q, "ghost", priority=1))
    assert (exc.job_id, exc.queue) == ("ghost", Q)


def test_delete_of_a_missing_id_is_false(client: Any, raw: Any, prefix: str) -> None:
    client.enqueue(Q, "p", id="real")
    before = keyspace(raw, prefix)
    assert client.delete(Q, "ghost") is False
    assert keyspace(raw, prefix) == before
    assert client.delete(Q, "real") is True
    assert client.delete(Q, "real") is False


def test_delete_of_a_leased_job_leaves_its_holder_with_job_not_found(
    client: Any, raw: Any, prefix: str
) -> None:
    job = leased(client)
    assert client.delete(Q, job.id) is True
    for action in (
        lambda: client.nack(job, error="x", delay_ms=0),
        lambda: client.renew(job),
        lambda: client.release(job),
    ):
        assert refused(raw, prefix, JobNotFound, action).job_id == job.id
    assert sum(client.counts(Q).values()) == 0


# ------------------------------------------------------------------------- native asyncio


def test_async_misuse_is_refused_the_same_way(url: str, prefix: str, raw: Any) -> None:
    clock = TestClock()

    async def main() -> None:
        store = redisq.connect_async(url, prefix=prefix, clock=clock)
        try:
            await store.enqueue(Q, "p", max_attempts=5)
            [job] = await store.claim(Q, worker="w1", lease_ms=LEASE)
            record = stored_record(raw, prefix, job.id)
            with pytest.raises(LeaseLost) as info:
                await store.ack(replace(job, token=job.token + 1))
            assert info.value.reason == "stale token"
            assert stored_record(raw, prefix, job.id) == record
            with pytest.raises(InvalidArgument) as bad:
                await store.release(replace(job, token=None))
            assert bad.value.field == "job.token"
            # Two acks of one lease racing each other: both succeed, one completion.
            first, second = await asyncio.gather(store.ack(job), store.ack(job))
            assert first.state is second.state is JobState.COMPLETED
            assert raw.zcard(f"{{{prefix}:{Q}}}:done") == 1
            # Expiry, then a stale holder.
            await store.enqueue(Q, "q")
            [other] = await store.claim(Q, worker="w1", lease_ms=LEASE)
            clock.advance(LEASE)
            with pytest.raises(LeaseLost) as late:
                await store.renew(other)
            assert late.value.reason == "lease expired"
            assert await store.cancel(Q, other.id) is True
            assert await store.cancel(Q, other.id) is False
            with pytest.raises(LeaseLost) as fenced:
                await store.ack(other)
            assert fenced.value.state == "cancelled"
            with pytest.raises(JobNotFound):
                await store.update(Q, "ghost", priority=1)
        finally:
            await store.close()

    asyncio.run(main())
