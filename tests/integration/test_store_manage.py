"""The behaviour suite, part 2: reads, management, retention, locks.

Each test runs on every backend (valkey, redis7, memory) with both clients (sync, async).
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import InvalidTransition, JobNotFound, JobState
from tests.support.clock import TestClock
from tests.support.polling import wait_for

Q = "reports"
ALL = dict.fromkeys(JobState, 0)


def test_counts_queues_and_find_span_every_queue(client: Any) -> None:
    assert client.counts() == ALL
    assert client.queues() == []
    client.enqueue("b", 1)
    job = client.enqueue("a", 2, delay_ms=1_000)
    client.enqueue("c", 3)
    [leased] = client.claim("c", worker="w")
    client.ack(leased)
    assert client.queues() == ["a", "b", "c"]
    assert client.counts("a") == {**ALL, JobState.SCHEDULED: 1}
    assert client.counts() == {
        **ALL,
        JobState.READY: 1,
        JobState.SCHEDULED: 1,
        JobState.COMPLETED: 1,
    }
    assert client.find(job.id) == job
    client.purge("a")
    assert client.queues() == ["b", "c"]  # only queues that hold a job


def test_list_is_stable_by_queue_then_state_then_set_order(client: Any, clock: TestClock) -> None:
    client.enqueue("q2", "z")
    a = client.enqueue("q1", "a")
    b = client.enqueue("q1", "b", priority=5)
    later = client.enqueue("q1", "later", delay_ms=1_000)
    [leased] = client.claim("q1", worker="w")
    assert leased.id == b.id
    names = [j.payload for j in client.list()]
    assert names == ["a", "later", "b", "z"]
    assert [j.payload for j in client.list("q1")] == ["a", "later", "b"]
    assert [j.id for j in client.list("q1", state=JobState.SCHEDULED)] == [later.id]
    assert [j.payload for j in client.list(limit=2, offset=1)] == ["later", "b"]
    assert [j.payload for j in client.list(offset=3)] == ["z"]
    assert client.list(offset=10) == []
    assert client.list("q1", state=JobState.DEAD) == []
    assert client.list("q1", limit=0) == []
    assert client.get("q1", a.id).state is JobState.READY


def test_list_pages_through_large_queues(client: Any) -> None:
    client.enqueue_many(Q, list(range(1_234)))
    listed = client.list(Q)
    assert [j.payload for j in listed] == list(range(1_234))
    assert [j.payload for j in client.list(Q, limit=3, offset=1_000)] == [1_000, 1_001, 1_002]


def test_peek_shows_claim_order_including_due_scheduled_jobs(client: Any, clock: TestClock) -> None:
    client.enqueue(Q, "ready-low", priority=-5)
    client.enqueue(Q, "due-high", priority=5, delay_ms=100)
    client.enqueue(Q, "ready-mid")
    client.enqueue(Q, "not-due", delay_ms=10_000)
    clock.advance(100)
    peeked = [j.payload for j in client.peek(Q, 10)]
    assert peeked == ["due-high", "ready-mid", "ready-low"]
    assert client.counts(Q)[JobState.LEASED] == 0  # read-only
    claimed = [j.payload for j in client.claim(Q, worker="w", count=10)]
    assert claimed == peeked


def test_update_changes_waiting_jobs_only(client: Any, clock: TestClock) -> None:
    a = client.enqueue(Q, "a")
    b = client.enqueue(Q, "b")
    moved = client.update(Q, b.id, priority=10, payload={"new": True})
    assert (moved.priority, moved.payload, moved.state) == (10, {"new": True}, JobState.READY)
    assert client.peek(Q, 1)[0].id == b.id
    later = client.update(Q, a.id, run_at_ms=clock.now_ms + 5_000)
    assert later.state is JobState.SCHEDULED
    assert [j.id for j in client.claim(Q, worker="w", count=5)] == [b.id]
    back = client.update(Q, a.id, run_at_ms=clock.now_ms)
    assert back.state is JobState.READY
    [leased] = client.claim(Q, worker="w")
    with pytest.raises(InvalidTransition) as info:
        client.update(Q, leased.id, priority=1)
    assert info.value.actual == "leased"
    assert client.get(Q, leased.id) == leased
    with pytest.raises(JobNotFound):
        client.update(Q, "missing", priority=1)


def test_delete_removes_a_job_in_any_state(client: Any, raw: Any, prefix: str) -> None:
    ready = client.enqueue(Q, "a")
    client.enqueue(Q, "b")
    [leased] = client.claim(Q, worker="w")
    assert leased.id == ready.id
    assert client.delete(Q, leased.id) is True
    assert client.delete(Q, leased.id) is False
    assert client.get(Q, leased.id) is None
    with pytest.raises(JobNotFound):
        client.ack(leased)
    assert raw.zcard(f"{{{prefix}:{Q}}}:leased") == 0


def test_retry_dead_replays_with_a_fresh_budget_at_the_back(client: Any, clock: TestClock) -> None:
    ids = [j.id for j in client.enqueue_many(Q, ["x", "y", "z"], max_attempts=1)]
    for job in client.claim(Q, worker="w", count=3):
        client.nack(job, error="bad", delay_ms=0)
        clock.advance(1)  # the dead set is ordered by time of death
    assert client.counts(Q)[JobState.DEAD] == 3
    client.enqueue(Q, "fresh")
    assert client.retry_dead(Q, [ids[2], "missing"]) == 1
    assert client.retry_dead(Q, [ids[2]]) == 0  # no longer dead: a repeat does nothing
    assert client.retry_dead(Q, limit=1) == 1
    assert client.retry_dead(Q) == 1
    order = client.claim(Q, worker="w", count=10)
    assert [j.payload for j in order] == ["fresh", "z", "x", "y"]
    assert all(j.attempts == 1 for j in order)
    assert order[1].last_error == "bad"


def test_purge_deletes_by_state_or_everything(client: Any, raw: Any, prefix: str) -> None:
    client.enqueue_many(Q, list(range(1_500)))
    client.enqueue(Q, "later", delay_ms=1_000, unique_key="u")
    assert client.purge(Q, JobState.SCHEDULED) == 1
    assert client.enqueue(Q, "again", delay_ms=1_000, unique_key="u").payload == "again"
    assert client.purge(Q) == 1_501
    assert client.counts(Q) == ALL
    assert raw.hlen(f"{{{prefix}:{Q}}}:unique") == 0
    assert raw.hlen(f"{{{prefix}:{Q}}}:jobs") == 0


def test_completed_jobs_are_kept_within_the_count_limit(
    client_factory: Any, raw: Any, clock: TestClock, prefix: str
) -> None:
    client = client_factory(retention=redisq.Retention(completed=5))
    client.enqueue_many(Q, list(range(20)))
    for job in client.claim(Q, worker="w", count=20):
        client.ack(job)
        clock.advance(1)  # the done set is ordered by completion time
    kept = client.list(Q, state=JobState.COMPLETED)
    assert [j.payload for j in kept] == list(range(15, 20))
    assert raw.hlen(f"{{{prefix}:{Q}}}:jobs") == 5


def test_finished_jobs_are_trimmed_by_age(client_factory: Any, clock: TestClock) -> None:
    day = 24 * 3600 * 1000
    client = client_factory(
        retention=redisq.Retention(completed_age_ms=day, dead_age_ms=day, cancelled_age_ms=day)
    )
    old = client.enqueue_many(Q, ["done", "dead", "cancelled"], max_attempts=1)
    done, dead = client.claim(Q, worker="w", count=2)
    client.ack(done)
    client.nack(dead)
    client.cancel(Q, old[2].id)
    clock.advance(day + 1)
    client.enqueue_many(Q, ["a", "b", "c"], max_attempts=1)
    a, b = client.claim(Q, worker="w", count=2)
    client.ack(a)  # each finishing call trims its own set
    client.nack(b)
    client.cancel(Q, client.peek(Q)[0].id)
    assert {j.payload for j in client.list(Q)} == {"a", "b", "c"}
    assert all(client.get(Q, j.id) is None for j in old)


def test_trimming_is_bounded_per_call(client_factory: Any) -> None:
    big = client_factory()
    big.enqueue_many(Q, list(range(300)))
    big.ack_many(big.claim(Q, worker="w", count=300))
    small = client_factory(retention=redisq.Retention(completed=0, trim_batch=100))
    small.enqueue(Q, "one")
    small.ack(small.claim(Q, worker="w")[0])
    # 301 completed, limit 0: one call trims at most trim_batch (100) records more than the
    # jobs it completed itself (1).
    assert small.counts(Q)[JobState.COMPLETED] == 200


def test_big_ack_many_calls_keep_the_done_set_within_its_limit(
    client_factory: Any, raw: Any, prefix: str
) -> None:
    # Each call completes more jobs (300) than trim_batch (100): the set must not grow.
    client = client_factory(retention=redisq.Retention(completed=10, trim_batch=100))
    for _ in range(3):
        client.enqueue_many(Q, list(range(300)))
        client.ack_many(client.claim(Q, worker="w", count=300))
        assert client.counts(Q)[JobState.COMPLETED] == 10
    assert raw.hlen(f"{{{prefix}:{Q}}}:jobs") == 10


def test_dead_jobs_are_kept_within_the_count_limit(client_factory: Any, clock: TestClock) -> None:
    client = client_factory(retention=redisq.Retention(dead=3))
    client.enqueue_many(Q, list(range(6)), max_attempts=1)
    for job in client.claim(Q, worker="w", count=6):
        client.nack(job)
        clock.advance(1)
    assert [j.payload for j in client.list(Q, state=JobState.DEAD)] == [3, 4, 5]


def test_ack_many_is_all_or_nothing_per_call(client: Any) -> None:
    client.enqueue_many(Q, list(range(3)))
    jobs = client.claim(Q, worker="w", count=3)
    client.cancel(Q, jobs[1].id)
    with pytest.raises(redisq.LeaseLost) as info:
        client.ack_many(jobs)
    assert info.value.job_id == jobs[1].id
    assert client.counts(Q)[JobState.COMPLETED] == 0
    done = client.ack_many([jobs[0], jobs[2]], results=["r0", "r2"])
    assert [j.result for j in done] == ["r0", "r2"]
    assert client.ack_many([]) == []


def test_ack_many_without_snapshots_completes_the_same_and_returns_nothing(client: Any) -> None:
    client.enqueue_many(Q, ["a", "b", "c"])
    jobs = client.claim(Q, worker="w", count=3)
    client.cancel(Q, jobs[2].id)
    # The same all-or-nothing refusal
    with pytest.raises(redisq.LeaseLost):
        client.ack_many(jobs, snapshots=False)
    assert client.counts(Q)[JobState.COMPLETED] == 0
    # Then the same completion, results included, with no snapshots to build
    assert client.ack_many(jobs[:2], results=["ra", None], snapshots=False) == []
    stored = [client.get(Q, j.id) for j in jobs[:2]]
    assert [(j.state, j.result) for j in stored] == [
        (JobState.COMPLETED, "ra"),
        (JobState.COMPLETED, None),
    ]
    # A re-sent call (a client retry) is accepted without a second completion
    assert client.ack_many(jobs[:2], snapshots=False) == []
    assert client.totals(Q)["completed"] == 2


def test_ack_many_spans_queues(client: Any) -> None:
    client.enqueue_many("a", [1, 2])
    client.enqueue_many("b", [3])
    jobs = client.claim(["a", "b"], worker="w", count=3)
    done = client.ack_many(jobs)
    assert sorted(j.payload for j in done) == [1, 2, 3]
    assert client.counts()[JobState.COMPLETED] == 3


def test_job_lock_is_owner_only_not_reentrant_and_expires(client: Any) -> None:
    assert client.lock(Q, "job-1", "w1", 60_000) is True
    assert client.lock(Q, "job-1", "w1", 60_000) is False  # not re-entrant
    assert client.lock(Q, "job-1", "w2", 60_000) is False
    assert client.unlock(Q, "job-1", "w2") is False
    assert client.unlock(Q, "job-1", "w1") is True
    assert client.unlock(Q, "job-1", "w1") is False
    assert client.lock(Q, "job-2", "w1", 30) is True
    # The lock lives in a key with a Redis TTL: poll until the server expires it.
    wait_for(lambda: client.lock(Q, "job-2", "w2", 60_000), timeout=5.0)


def test_payloads_round_trip_exactly(client: Any) -> None:
    values = [
        None,
        [],
        {},
        b"\x00\xff binary",
        "snow \u2603 and nul \x00",
        12345678901234567,
        -(2**63),
        2**64 - 1,
        1.5,
        {"nested": [1, {"deep": [True, False, None]}]},
    ]
    jobs = client.enqueue_many(Q, values)
    assert [j.payload for j in jobs] == values
    assert [j.payload for j in client.claim(Q, worker="w", count=len(values))] == values


def test_peek_ranks_every_due_job_a_claim_would_promote(client: Any, clock: TestClock) -> None:
    # Given two due scheduled jobs, the later-due one with the higher priority
    client.enqueue(Q, "low", id="low", delay_ms=100)
    client.enqueue(Q, "high", id="high", priority=5, delay_ms=200)
    clock.advance(300)
    # Then peek(limit=1) names the job the next claim takes
    assert [j.id for j in client.peek(Q, 1)] == ["high"]
    assert [j.id for j in client.claim(Q, worker="w")] == ["high"]


def test_retry_dead_revives_one_holder_per_unique_key_and_each_id_once(client: Any) -> None:
    for job_id in ("b", "c"):
        client.enqueue(Q, job_id, id=job_id, max_attempts=1, unique_key="k")
        [job] = client.claim(Q, worker="w")
        client.nack(job, delay_ms=0)
    client.enqueue(Q, "x", id="x", max_attempts=1)
    [job] = client.claim(Q, worker="w")
    client.nack(job, delay_ms=0)
    assert client.retry_dead(Q, ["x", "x"]) == 1
    assert client.retry_dead(Q, ["b", "c"]) == 1
    assert [client.get(Q, i).state for i in ("b", "c")] == [JobState.READY, JobState.DEAD]
