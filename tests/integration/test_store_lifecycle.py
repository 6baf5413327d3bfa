"""The behaviour suite, part 1: enqueue, claim, and the lease transitions.

Each test runs on every backend (valkey, redis7, memory) with both clients (sync, async).
Time moves only with the test clock, so leases expire and delays come due without sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import JobState, LeaseLost
from tests.support.clock import TestClock

Q = "emails"


def stored_record(raw: Any, prefix: str, queue: str, job_id: str) -> Any:
    """The stored (packed) record of a job, byte for byte."""
    return raw.hget(f"{{{prefix}:{queue}}}:jobs", job_id)


def test_enqueue_returns_a_ready_job_that_get_reads_back(client: Any, clock: TestClock) -> None:
    # When
    job = client.enqueue(Q, {"to": "ada"}, name="send", priority=7, max_attempts=5)
    # Then
    assert job.state is JobState.READY
    assert (job.queue, job.name, job.payload, job.priority) == (Q, "send", {"to": "ada"}, 7)
    assert (job.attempts, job.max_attempts, job.token, job.worker) == (0, 5, None, None)
    assert job.created_at_ms == clock.now_ms == job.run_at_ms
    assert len(job.id) == 32
    assert client.get(Q, job.id) == job
    assert client.find(job.id) == job
    assert client.get(Q, "missing") is None
    assert client.find("missing") is None


def test_enqueue_is_idempotent_on_id_and_returns_the_stored_job(client: Any) -> None:
    first = client.enqueue(Q, "first", id="order-1", priority=3)
    again = client.enqueue(Q, "second", id="order-1", priority=9, delay_ms=5_000)
    assert again == first
    assert client.counts(Q)[JobState.READY] == 1


def test_unique_key_dedupes_while_live_and_is_freed_when_the_job_finishes(client: Any) -> None:
    a = client.enqueue(Q, "a", unique_key="user-7")
    assert client.enqueue(Q, "b", unique_key="user-7") == a
    [leased] = client.claim(Q, worker="w")
    assert client.enqueue(Q, "c", unique_key="user-7").id == a.id
    client.ack(leased)
    fresh = client.enqueue(Q, "d", unique_key="user-7")
    assert fresh.id != a.id
    assert fresh.payload == "d"
    # dead, cancelled and deleted jobs free the key too
    [leased] = client.claim(Q, worker="w")
    client.nack(leased, dead=True)
    third = client.enqueue(Q, "e", unique_key="user-7")
    assert client.cancel(Q, third.id) is True
    fourth = client.enqueue(Q, "f", unique_key="user-7")
    assert client.delete(Q, fourth.id) is True
    assert client.enqueue(Q, "g", unique_key="user-7").payload == "g"


def test_enqueue_many_returns_one_job_per_item_with_spec_overrides(client: Any) -> None:
    jobs = client.enqueue_many(
        Q,
        ["a", redisq.Spec("b", id="fixed", priority=4), redisq.Spec("c", delay_ms=1_000)],
        priority=1,
    )
    assert [j.payload for j in jobs] == ["a", "b", "c"]
    assert [j.priority for j in jobs] == [1, 4, 1]
    assert jobs[1].id == "fixed"
    assert [j.state for j in jobs] == [JobState.READY, JobState.READY, JobState.SCHEDULED]
    # the same ids again: the stored jobs come back, nothing new is created
    again = client.enqueue_many(Q, [redisq.Spec("other", id="fixed")])
    assert again == [jobs[1]]
    assert client.enqueue_many(Q, []) == []
    assert sum(client.counts(Q).values()) == 3


def test_enqueue_many_with_the_same_id_twice_creates_one_job(client: Any) -> None:
    jobs = client.enqueue_many(Q, [redisq.Spec(1, id="x"), redisq.Spec(2, id="x")])
    assert jobs[0] == jobs[1]
    assert jobs[0].payload == 1
    assert client.counts(Q)[JobState.READY] == 1


def test_enqueue_many_spans_chunks(client: Any) -> None:
    jobs = client.enqueue_many(Q, list(range(2_500)))
    assert len({j.id for j in jobs}) == 2_500
    assert client.counts(Q)[JobState.READY] == 2_500
    claimed = client.claim(Q, worker="w", count=1_000)
    assert [j.payload for j in claimed] == list(range(1_000))


def test_claim_takes_highest_priority_first_and_fifo_within_a_priority(client: Any) -> None:
    client.enqueue(Q, "a")
    client.enqueue(Q, "b")
    client.enqueue(Q, "c", priority=5)
    client.enqueue(Q, "d", priority=-1)
    client.enqueue(Q, "e", priority=1000)
    client.enqueue(Q, "f", priority=-1000)
    order = [j.payload for j in client.peek(Q, 10)]
    claimed = [j.payload for j in client.claim(Q, worker="w", count=10)]
    assert claimed == order == ["e", "c", "a", "b", "d", "f"]


def test_claim_leases_with_attempt_token_deadline_and_worker(client: Any, clock: TestClock) -> None:
    client.enqueue(Q, "a")
    client.enqueue(Q, "b", lease_ms=90_000)
    a, b = client.claim(Q, worker="w1", lease_ms=10_000, count=5)
    assert (a.state, a.attempts, a.worker) == (JobState.LEASED, 1, "w1")
    assert a.lease_deadline_ms == clock.now_ms + 10_000
    assert b.lease_deadline_ms == clock.now_ms + 90_000  # the job's own lease wins
    assert b.token == a.token + 1
    assert client.get(Q, a.id) == a
    assert client.claim(Q, worker="w1") == []
    assert client.claim("never-used", worker="w1") == []


def test_every_claim_issues_a_new_larger_token(client: Any, clock: TestClock) -> None:
    client.enqueue(Q, "a", max_attempts=5)
    tokens = []
    for _ in range(4):
        [job] = client.claim(Q, worker="w", lease_ms=1_000)
        tokens.append(job.token)
        clock.advance(1_000)  # the lease expires; the next claim reaps it
    assert tokens == sorted(set(tokens))
    assert client.get(Q, job.id).attempts == 4


def test_delayed_job_becomes_claimable_at_its_due_time(client: Any, clock: TestClock) -> None:
    job = client.enqueue(Q, "later", delay_ms=5_000)
    at = client.enqueue(Q, "at", run_at_ms=clock.now_ms + 3_000)
    assert (job.state, job.run_at_ms) == (JobState.SCHEDULED, clock.now_ms + 5_000)
    assert client.claim(Q, worker="w") == []
    clock.advance(3_000)
    assert [j.id for j in client.peek(Q)] == [at.id]
    assert [j.id for j in client.claim(Q, worker="w")] == [at.id]
    clock.advance(1_999)
    assert client.claim(Q, worker="w") == []
    clock.advance(1)
    assert [j.id for j in client.claim(Q, worker="w")] == [job.id]


def test_several_queues_are_claimed_round_robin(client: Any) -> None:
    client.enqueue_many("a", list(range(5)))
    client.enqueue_many("b", list(range(5)))
    seen = [client.claim(["a", "b"], worker="w")[0].queue for _ in range(4)]
    assert seen in (["a", "b", "a", "b"], ["b", "a", "b", "a"])
    both = client.claim(["a", "b"], worker="w", count=10)
    assert len(both) == 6


def test_ack_completes_and_stores_the_result(client: Any, raw: Any, prefix: str) -> None:
    client.enqueue(Q, "a")
    [job] = client.claim(Q, worker="w")
    done = client.ack(job, result={"ok": True})
    assert done.state is JobState.COMPLETED
    assert done.result == {"ok": True}
    stored = client.get(Q, job.id)
    assert stored.state is JobState.COMPLETED
    assert stored.result == {"ok": True}
    assert stored.finished_at_ms == done.finished_at_ms
    assert raw.zcard(f"{{{prefix}:{Q}}}:leased") == 0
    assert raw.zcard(f"{{{prefix}:{Q}}}:done") == 1


def test_ack_again_with_the_same_token_succeeds_without_a_second_completion(
    client: Any, raw: Any, prefix: str
) -> None:
    client.enqueue(Q, "a")
    [job] = client.claim(Q, worker="w")
    first = client.ack(job, result=1)
    before = stored_record(raw, prefix, Q, job.id)
    second = client.ack(job, result=1)
    assert second.state is JobState.COMPLETED
    assert stored_record(raw, prefix, Q, job.id) == before
    assert raw.zcard(f"{{{prefix}:{Q}}}:done") == 1
    assert first.finished_at_ms is not None


def test_a_stale_token_is_refused_and_changes_nothing(
    client: Any, clock: TestClock, raw: Any, prefix: str
) -> None:
    client.enqueue(Q, "a", max_attempts=3)
    [old] = client.claim(Q, worker="A", lease_ms=1_000)
    clock.advance(1_000)  # A's lease expires; B's claim reaps it and gets a new token
    [new] = client.claim(Q, worker="B", lease_ms=10_000)
    assert new.token > old.token
    before = stored_record(raw, prefix, Q, old.id)
    for attempt in (
        lambda: client.ack(old),
        lambda: client.nack(old, error="late"),
        lambda: client.renew(old),
        lambda: client.release(old),
        lambda: client.progress(old, 50),
    ):
        with pytest.raises(LeaseLost) as info:
            attempt()
        assert info.value.job_id == old.id
        assert info.value.token == old.token
        assert stored_record(raw, prefix, Q, old.id) == before
    assert client.ack(new).state is JobState.COMPLETED


def test_an_expired_lease_is_refused_even_before_it_is_reaped(
    client: Any, clock: TestClock, raw: Any, prefix: str
) -> None:
    client.enqueue(Q, "a")
    [job] = client.claim(Q, worker="w", lease_ms=1_000)
    clock.advance(999)
    job = client.renew(job, lease_ms=1_000)
    assert job.lease_deadline_ms == clock.now_ms + 1_000
    clock.advance(1_000)
    before = stored_record(raw, prefix, Q, job.id)
    with pytest.raises(LeaseLost, match="lease expired"):
        client.ack(job)
    with pytest.raises(LeaseLost, match="lease expired"):
        client.renew(job)
    assert stored_record(raw, prefix, Q, job.id) == before


def test_renew_many_judges_each_job_on_its_own(client: Any, clock: TestClock) -> None:
    client.enqueue_many(Q, ["a", "b"])
    a, b = client.claim(Q, worker="w", count=2, lease_ms=1_000)
    client.cancel(Q, b.id)
    outcomes = client.renew_many([a, b], lease_ms=5_000)
    assert outcomes[0].lease_deadline_ms == clock.now_ms + 5_000
    assert isinstance(outcomes[1], LeaseLost)


def test_nack_without_delay_returns_the_job_to_its_place(client: Any) -> None:
    first = client.enqueue(Q, "first")
    client.enqueue(Q, "second")
    [job] = client.claim(Q, worker="w")
    back = client.nack(job, error="boom", delay_ms=0)
    assert back.state is JobState.READY
    assert (back.attempts, back.last_error) == (1, "boom")
    assert client.claim(Q, worker="w")[0].id == first.id


def test_nack_with_delay_schedules_the_retry(client: Any, clock: TestClock) -> None:
    client.enqueue(Q, "a")
    [job] = client.claim(Q, worker="w")
    back = client.nack(job, error="later", delay_ms=2_000)
    assert (back.state, back.run_at_ms) == (JobState.SCHEDULED, clock.now_ms + 2_000)
    assert client.claim(Q, worker="w") == []
    clock.advance(2_000)
    [again] = client.claim(Q, worker="w")
    assert (again.attempts, again.last_error) == (2, "later")


def test_nack_default_delay_is_exponential_backoff(client: Any, clock: TestClock) -> None:
    client.enqueue(Q, "a", max_attempts=5)
    [job] = client.claim(Q, worker="w")
    back = client.nack(job)
    assert back.state is JobState.SCHEDULED
    assert 750 <= back.run_at_ms - clock.now_ms <= 1_250  # 1 s +-25% after the first attempt


def test_nack_dead_letters_when_attempts_are_used_up_or_asked(client: Any) -> None:
    client.enqueue(Q, "a", max_attempts=2)
    for expected in (JobState.READY, JobState.DEAD):
        [job] = client.claim(Q, worker="w")
        assert client.nack(job, error=f"try {job.attempts}", delay_ms=0).state is expected
    dead = client.list(Q, state=JobState.DEAD)
    assert [(j.attempts, j.last_error) for j in dead] == [(2, "try 2")]
    client.enqueue(Q, "b", max_attempts=10)
    [job] = client.claim(Q, worker="w")
    assert client.nack(job, dead=True).state is JobState.DEAD
    # an empty error keeps the previous one
    assert client.get(Q, job.id).last_error is None


def test_nack_again_with_the_same_token_is_a_no_op(client: Any) -> None:
    client.enqueue(Q, "a", max_attempts=3)
    [job] = client.claim(Q, worker="w")
    once = client.nack(job, error="x", delay_ms=0)
    twice = client.nack(job, error="x", delay_ms=0)
    assert once == twice
    assert client.counts(Q)[JobState.READY] == 1


def test_release_gives_the_lease_back_without_counting_the_attempt(client: Any) -> None:
    first = client.enqueue(Q, "first")
    client.enqueue(Q, "second")
    [job] = client.claim(Q, worker="w")
    back = client.release(job)
    assert (back.state, back.attempts) == (JobState.READY, 0)
    assert client.release(job) == back  # a retried release changes nothing
    again = client.claim(Q, worker="w")[0]
    assert (again.id, again.attempts) == (first.id, 1)


def test_progress_is_recorded_for_the_holder(client: Any) -> None:
    client.enqueue(Q, "a")
    [job] = client.claim(Q, worker="w")
    assert client.progress(job, {"done": 3, "of": 10}).progress == {"done": 3, "of": 10}
    assert client.get(Q, job.id).progress == {"done": 3, "of": 10}


def test_reap_returns_expired_leases_and_dead_letters_used_up_jobs(
    client: Any, clock: TestClock
) -> None:
    retry = client.enqueue(Q, "retry", max_attempts=2)
    last = client.enqueue(Q, "last", max_attempts=1)
    client.claim(Q, worker="w", lease_ms=1_000, count=2)
    assert client.reap(Q) == 0
    clock.advance(1_000)
    assert client.reap(Q) == 2
    again = client.get(Q, retry.id)
    assert (again.state, again.attempts) == (JobState.READY, 1)
    dead = client.get(Q, last.id)
    assert dead.state is JobState.DEAD
    assert dead.last_error == "lease expired on attempt 1 of 1"
    assert client.reap(Q) == 0


def test_claim_reaps_and_promotes_in_bounded_batches(client_factory: Any, clock: TestClock) -> None:
    client = client_factory()
    client.enqueue_many(Q, list(range(250)))
    client.claim(Q, worker="w", lease_ms=1_000, count=250)
    clock.advance(1_000)
    # Each claim reaps at most 100 expired leases (the housekeeping batch) before it leases.
    assert len(client.claim(Q, worker="w", count=1_000)) == 100
    assert len(client.claim(Q, worker="w", count=1_000)) == 100
    assert len(client.claim(Q, worker="w", count=1_000)) == 50


def test_claim_and_ack_completes_the_best_job_in_one_step(client: Any) -> None:
    client.enqueue(Q, "low")
    best = client.enqueue(Q, "high", priority=9)
    done = client.claim_and_ack(Q)
    assert (done.id, done.state, done.attempts) == (best.id, JobState.COMPLETED, 1)
    assert client.claim_and_ack(Q).payload == "low"
    assert client.claim_and_ack(Q) is None


def test_pause_stops_claims_for_every_worker_until_resume(client_factory: Any) -> None:
    one, other = client_factory(), client_factory()
    one.enqueue(Q, "a")
    one.pause(Q)
    assert other.claim(Q, worker="w") == []
    assert other.claim_and_ack(Q) is None
    other.resume(Q)
    assert len(one.claim(Q, worker="w")) == 1


def test_cancel_a_leased_job_refuses_its_holder(client: Any) -> None:
    client.enqueue(Q, "a")
    waiting = client.enqueue(Q, "b", delay_ms=10_000)
    [job] = client.claim(Q, worker="w")
    assert client.cancel(Q, job.id) is True
    with pytest.raises(LeaseLost):
        client.ack(job)
    assert client.get(Q, job.id).state is JobState.CANCELLED
    assert client.cancel(Q, waiting.id) is True
    assert client.cancel(Q, waiting.id) is False
    assert client.cancel(Q, "missing") is False
    assert client.counts(Q)[JobState.CANCELLED] == 2


def test_enqueue_many_resolves_ids_before_unique_keys(client: Any) -> None:
    # Given a stored job without a unique key
    client.enqueue_many(Q, [redisq.Spec(1, id="j0")])
    # When one call creates j1 holding "u", then names j0 with "u", then j2 with "u"
    jobs = client.enqueue_many(
        Q,
        [
            redisq.Spec(2, id="j1", unique_key="u"),
            redisq.Spec(3, id="j0", unique_key="u"),
            redisq.Spec(4, id="j2", unique_key="u"),
        ],
    )
    # Then the stored id wins over the key, and the key maps to the job that holds it
    assert [j.id for j in jobs] == ["j1", "j0", "j1"]
    assert client.get(Q, "j0").unique_key is None
    assert client.get(Q, "j2") is None


def test_an_item_answered_by_its_unique_key_does_not_claim_its_id(client: Any) -> None:
    # Given j1 holding the unique key "u"
    client.enqueue_many(Q, [redisq.Spec(1, id="j1", unique_key="u")])
    # When j5 asks for "u" (answered by j1), then j5 comes again without a key
    jobs = client.enqueue_many(
        Q, [redisq.Spec(2, id="j5", unique_key="u"), redisq.Spec(3, id="j5")]
    )
    # Then the second item creates j5: the first did not
    assert [j.id for j in jobs] == ["j1", "j5"]
    assert jobs[1].payload == 3
