"""Concurrency groups and a queue's concurrency cap (lua/lib/groups.lua), through the store.

Each test runs on every backend (valkey, redis7, memory) with both clients (sync, async), on
the test clock. Every case checks the lease counts the groups keep (`Store.concurrency`)
after the transition it exercises, so that a script that forgot a group's slot fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import InvalidArgument, JobState, Spec
from tests.support.clock import TestClock

Q = "tenants"
W = "w"
LONG = 600_000


def _claim(client: Any, count: int = 1, lease_ms: int = LONG) -> list[redisq.Job]:
    return list(client.claim(Q, worker=W, count=count, lease_ms=lease_ms))


def _groups(client: Any, jobs: list[redisq.Job]) -> list[str | None]:
    return [client.concurrency(Q, j.id).group for j in jobs]


def _fill(client: Any, group: str, n: int, **options: Any) -> list[str]:
    jobs = client.enqueue_many(Q, [f"{group}-{i}" for i in range(n)], group=group, **options)
    return [j.id for j in jobs]


def _drain(client: Any) -> list[Any]:
    """Claim and ack one job at a time until none is left; the payloads in claim order."""
    seen = []
    while jobs := _claim(client):
        seen.append(jobs[0].payload)
        client.ack(jobs[0])
    return seen


# --------------------------------------------------------------------------- round-robin


def test_groups_are_served_round_robin_so_a_big_one_cannot_starve_a_small_one(
    client: Any,
) -> None:
    # Given a tenant with 2,000 jobs enqueued before another tenant's 10
    _fill(client, "big", 2_000)
    small = _fill(client, "small", 10)
    # When jobs are claimed one at a time
    taken = [_claim(client)[0] for _ in range(20)]
    # Then the two tenants alternate: the small one's ten are all served in 20 claims
    assert sorted(j.id for j in taken if j.id in small) == sorted(small)
    assert [p.split("-")[0] for p in (j.payload for j in taken)] == ["big", "small"] * 10
    assert client.counts(Q)[JobState.READY] == 1_990


def test_ungrouped_jobs_take_turns_like_one_more_group(client: Any) -> None:
    client.enqueue_many(Q, [f"plain-{i}" for i in range(5)])
    _fill(client, "a", 5)
    _fill(client, "b", 5)
    payloads = [j.payload for j in _claim(client, count=6)]
    assert sorted(p.split("-")[0] for p in payloads) == ["a", "a", "b", "b", "plain", "plain"]


def test_within_a_group_jobs_keep_priority_then_fifo(client: Any) -> None:
    client.enqueue_many(
        Q,
        [Spec("low", priority=-5), Spec("first"), Spec("second"), Spec("urgent", priority=9)],
        group="g",
    )
    assert _drain(client) == ["urgent", "first", "second", "low"]


# ------------------------------------------------------------------------------- limits


def test_a_group_limit_of_one_gives_strict_fifo_per_group(client: Any) -> None:
    client.set_group_concurrency(Q, 1)
    _fill(client, "a", 3)
    _fill(client, "b", 2)
    first = _claim(client, count=10)
    assert [j.payload for j in first] == ["a-0", "b-0"]  # one per group, however many asked
    assert _claim(client, count=10) == []
    state = client.concurrency(Q, first[0].id)
    assert (state.group, state.group_leased, state.group_turn) == ("a", 1, False)
    assert (state.grouped_ready, state.grouped_leased, state.groups_ready) == (3, 2, 0)
    client.ack(first[0])  # a's slot is free: a's next job, and only that one
    assert [j.payload for j in _claim(client, count=10)] == ["a-1"]
    assert client.concurrency(Q).group_concurrency == 1


def test_a_group_limit_of_n_leases_at_most_n_of_a_group(client: Any) -> None:
    client.set_group_concurrency(Q, 3)
    _fill(client, "a", 10)
    _fill(client, "b", 1)
    jobs = _claim(client, count=10)
    assert sorted(_groups(client, jobs)) == ["a", "a", "a", "b"]


def test_the_queue_cap_holds_leases_across_all_workers(client: Any) -> None:
    client.set_concurrency(Q, 2)
    client.enqueue_many(Q, list(range(5)))
    first = list(client.claim(Q, worker="w1", count=10, lease_ms=LONG))
    assert [j.payload for j in first] == [0, 1]
    assert list(client.claim(Q, worker="w2", count=10, lease_ms=LONG)) == []
    state = client.concurrency(Q)
    assert (state.concurrency, state.leased, state.held_by_cap) == (2, 2, 3)
    client.ack(first[0])
    assert [j.payload for j in client.claim(Q, worker="w2", count=10, lease_ms=LONG)] == [2]
    client.set_concurrency(Q, None)
    assert [j.payload for j in _claim(client, count=10)] == [3, 4]


def test_the_cap_and_the_group_limit_hold_together(client: Any) -> None:
    client.set_concurrency(Q, 3)
    client.set_group_concurrency(Q, 2)
    _fill(client, "a", 5)
    _fill(client, "b", 5)
    jobs = _claim(client, count=10)
    assert len(jobs) == 3
    assert sorted(_groups(client, jobs)) in (["a", "a", "b"], ["a", "b", "b"])


# ------------------------------------------------- every transition keeps the counts true


def _one_held(client: Any) -> tuple[redisq.Job, str]:
    """Group 'g' at its limit of one: its leased job, and the id of the job waiting behind."""
    client.set_group_concurrency(Q, 1)
    first, second = _fill(client, "g", 2)
    (job,) = _claim(client, count=5)
    assert job.id == first
    assert _claim(client, count=5) == []
    return job, second


def _next_is(client: Any, job_id: str) -> None:
    assert [j.id for j in _claim(client, count=5)] == [job_id]
    assert client.concurrency(Q, job_id).group_leased == 1


def test_a_reaped_lease_frees_its_groups_slot(client: Any, clock: TestClock) -> None:
    client.set_group_concurrency(Q, 1)
    first, second = _fill(client, "g", 2)
    (job,) = _claim(client, lease_ms=1_000)
    assert job.id == first
    clock.advance(1_001)  # the holder crashed: its lease runs out, the next claim reaps it
    taken = _claim(client, count=5)
    assert [j.id for j in taken] == [first]  # the reaped job comes back first, in its group
    assert client.concurrency(Q, first).group_leased == 1
    client.ack(taken[0])
    _next_is(client, second)


def test_nack_frees_the_slot_and_the_job_waits_in_its_group(client: Any) -> None:
    job, _ = _one_held(client)
    client.nack(
        job, error="boom", delay_ms=0
    )  # ready again at once, at its place: first in its group
    assert client.get(Q, job.id).state == JobState.READY
    _next_is(client, job.id)


def test_a_delayed_nack_comes_back_to_its_group(client: Any, clock: TestClock) -> None:
    job, second = _one_held(client)
    client.nack(job, error="later", delay_ms=5_000)
    _next_is(client, second)
    clock.advance(5_000)
    assert _claim(client, count=5) == []  # due, but its group is at its limit
    state = client.concurrency(Q, job.id)
    assert (state.group, state.group_turn, state.grouped_ready) == ("g", False, 1)


def test_nack_to_dead_frees_the_slot_and_retry_dead_puts_it_back(client: Any) -> None:
    job, second = _one_held(client)
    client.nack(job, error="fatal", dead=True)
    _next_is(client, second)
    assert client.retry_dead(Q) == 1
    assert client.concurrency(Q, job.id).grouped_ready == 1
    assert _claim(client, count=5) == []  # back in its group, behind the lease of `second`


def test_a_trimmed_dead_job_leaves_no_group_entry(client_factory: Any) -> None:
    client = client_factory(retention=redisq.Retention(dead=1))
    first, second = _fill(client, "g", 2)
    for _ in range(2):
        (job,) = _claim(client)
        client.nack(job, error="fatal", dead=True)
    # The dead set keeps one job (both died at the same instant: either): the other one's
    # record and its group entry are gone.
    gone = [i for i in (first, second) if client.get(Q, i) is None]
    (kept,) = {first, second} - set(gone)
    assert len(gone) == 1
    assert client.concurrency(Q, gone[0]).group is None
    assert client.concurrency(Q, kept).group == "g"


def test_release_frees_the_slot(client: Any) -> None:
    job, _ = _one_held(client)
    client.release(job)
    _next_is(client, job.id)


def test_cancel_of_a_leased_job_frees_the_slot(client: Any) -> None:
    job, second = _one_held(client)
    assert client.cancel(Q, job.id)
    _next_is(client, second)


def test_cancel_and_delete_of_ready_grouped_jobs_remove_them(client: Any) -> None:
    ids = _fill(client, "g", 3)
    assert client.cancel(Q, ids[0])
    assert client.delete(Q, ids[1])
    assert client.counts(Q)[JobState.READY] == 1
    assert [j.id for j in _claim(client, count=5)] == [ids[2]]


def test_delete_of_a_leased_job_frees_the_slot(client: Any) -> None:
    job, second = _one_held(client)
    assert client.delete(Q, job.id)
    _next_is(client, second)


def test_purge_clears_groups(client: Any) -> None:
    client.set_group_concurrency(Q, 1)
    _fill(client, "g", 3)
    _claim(client)
    assert client.purge(Q) == 3
    state = client.concurrency(Q)
    assert (state.ready, state.grouped_ready, state.grouped_leased, state.groups_ready) == (
        0,
        0,
        0,
        0,
    )
    (new,) = _fill(client, "g", 1)
    assert [j.id for j in _claim(client)] == [new]


def test_purge_of_ready_takes_grouped_jobs_too(client: Any) -> None:
    _fill(client, "g", 3)
    client.enqueue(Q, "plain")
    assert client.purge(Q, JobState.READY) == 4
    assert client.counts(Q)[JobState.READY] == 0


def test_update_moves_a_grouped_job_within_its_group(client: Any) -> None:
    a, b = _fill(client, "g", 2)
    client.update(Q, b, priority=5)
    assert [j.id for j in _claim(client, count=2)] == [b, a]


def test_a_scheduled_grouped_job_joins_its_group_when_due(client: Any, clock: TestClock) -> None:
    client.set_group_concurrency(Q, 1)
    (later,) = _fill(client, "g", 1, delay_ms=1_000)
    (now,) = _fill(client, "g", 1)
    (job,) = _claim(client, count=5)
    assert job.id == now
    clock.advance(1_000)
    assert _claim(client, count=5) == []  # promoted into its group, which is at its limit
    client.ack(job)
    assert [j.id for j in _claim(client, count=5)] == [later]


def test_a_raised_group_limit_reaches_a_group_when_a_lease_ends(client: Any) -> None:
    client.set_group_concurrency(Q, 1)
    _fill(client, "g", 4)
    (job,) = _claim(client, count=5)
    client.set_group_concurrency(Q, 3)
    client.ack(job)
    assert len(_claim(client, count=5)) == 3


def test_a_lowered_group_limit_holds_from_the_next_claim(client: Any) -> None:
    client.set_group_concurrency(Q, 3)
    _fill(client, "g", 5)
    assert len(_claim(client)) == 1
    client.set_group_concurrency(Q, 1)
    assert _claim(client, count=5) == []


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("group", "why"),
    [
        ("", "non-blank"),
        ("a{b", "'{'"),
        ("tab\there", "control characters"),
        ("x" * 129, "at most 128"),
        (42, "a str"),
    ],
)
def test_a_bad_group_is_refused_naming_the_field_and_nothing_is_written(
    client: Any, group: Any, why: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.enqueue(Q, 1, group=group)
    assert info.value.field == "group"
    assert why in str(info.value)
    with pytest.raises(InvalidArgument) as many:
        client.enqueue_many(Q, [1, Spec(2, group=group)])
    assert many.value.field == "payloads[1].group"
    assert client.counts(Q)[JobState.READY] == 0
    assert client.queues() == []


@pytest.mark.parametrize("value", [0, -1, 1_000_001, "3", 2.0, True])
@pytest.mark.parametrize("setter", ["set_concurrency", "set_group_concurrency"])
def test_a_limit_out_of_range_is_refused_and_nothing_is_written(
    client: Any, setter: str, value: Any
) -> None:
    with pytest.raises(InvalidArgument) as info:
        getattr(client, setter)(Q, value)
    field = setter.removeprefix("set_")
    assert info.value.field == field
    assert "[1, 1,000,000]" in str(info.value)
    state = client.concurrency(Q)
    assert (state.concurrency, state.group_concurrency) == (None, None)


def test_a_queue_without_groups_or_cap_reads_as_such(client: Any) -> None:
    client.enqueue(Q, 1)
    assert client.concurrency(Q) == redisq.FlowState(None, None, 1, 0, 0, 0, 0, 0)


# ------------------------------------------------------------------------------ cluster


@pytest.mark.cluster
def test_groups_and_the_cap_on_the_local_cluster(cluster_url: str, prefix: str) -> None:
    # Every group structure is a key of the queue, under its hash tag: on a 3-master cluster
    # each queue's scripts run on its own master (CROSSSLOT would refuse anything else).
    store = redisq.connect(cluster_url, prefix=prefix)
    queues = [f"q{n}" for n in range(6)]
    for q in queues:
        store.set_group_concurrency(q, 1)
        store.set_concurrency(q, 3)
        store.enqueue_many(q, [f"big-{i}" for i in range(20)], group="big")
        store.enqueue_many(q, ["small-0", "small-1"], group="small")
        store.enqueue(q, "plain")
    for q in queues:
        jobs = list(store.claim(q, worker=W, count=10, lease_ms=LONG))
        assert sorted(j.payload for j in jobs) == ["big-0", "plain", "small-0"]
        assert list(store.claim(q, worker=W, count=10, lease_ms=LONG)) == []
        for job in jobs:
            store.ack(job)
        again = list(store.claim(q, worker=W, count=10, lease_ms=LONG))
        assert sorted(j.payload for j in again) == ["big-1", "small-1"]
        state = store.concurrency(q, again[0].id)
        assert (state.grouped_leased, state.group_leased, state.ready) == (2, 1, 18)
        assert store.purge(q) == 23  # 18 ready, 2 leased, 3 completed
    store.close()


# ------------------------------------------------------------------------------- tasks


def test_tasks_give_their_queue_limits_and_a_group_per_call(url: str, prefix: str) -> None:
    app = redisq.App(url, prefix=prefix)

    @app.task(name="a", queue="tq", group_concurrency=1, queue_concurrency=4)
    def a(n: int) -> int:
        return n

    @app.task(name="b", queue="tq")
    def b() -> None: ...

    with pytest.raises(InvalidArgument) as bad:
        app.task(name="c", queue="tq", group_concurrency=2)(lambda: None)
    assert bad.value.field == "group_concurrency"
    with pytest.raises(InvalidArgument) as out_of_range:
        app.task(name="d", queue="other", queue_concurrency=0)(lambda: None)
    assert out_of_range.value.field == "queue_concurrency"
    with pytest.raises(InvalidArgument) as bad_group:
        a.options(group="x}")
    assert bad_group.value.field == "group"

    assert app.flow_limits() == {"tq": {"queue_concurrency": 4, "group_concurrency": 1}}
    refs = [a.options(group="acme").enqueue(i) for i in range(2)]
    app.declare_flow_limits()  # what a worker of the queue does when it starts
    state = app.store.concurrency("tq", refs[0].id)
    assert (state.concurrency, state.group_concurrency, state.group) == (4, 1, "acme")
    jobs = list(app.store.claim("tq", worker=W, count=5, lease_ms=LONG))
    assert [j.id for j in jobs] == [refs[0].id]  # one at a time in the group
    app.close()


def test_list_shows_the_ready_jobs_of_groups(client: Any) -> None:
    plain = client.enqueue(Q, "plain").id
    grouped = _fill(client, "g", 2)
    listed = [j.id for j in client.list(Q, state=JobState.READY)]
    assert listed == [plain, *grouped]
    assert [j.id for j in client.list(Q)] == [plain, *grouped]
    assert [j.id for j in client.list(Q, state=JobState.READY, offset=1, limit=1)] == grouped[:1]


# ---------------------------------------------------- rate limits per key (per group)


def test_a_groups_own_rate_limit_holds_it_alone_and_says_when(
    client: Any, clock: TestClock
) -> None:
    client.set_rate_limit(Q, "2/s", key="slow")  # one per 500 ms (a tolerance of 250 ms)
    slow = _fill(client, "slow", 4)
    fast = _fill(client, "fast", 4)
    first = client.claim(Q, worker=W, count=10, lease_ms=LONG)
    # The slow group gives one job; the others are not held back by it.
    assert sorted(j.id for j in first) == sorted([slow[0], *fast])
    assert client.rate_limit(Q, key="slow").limit == "2/s"
    assert client.rate_limit(Q, key="fast") == redisq.RateState(None, None)
    held = client.claim(Q, worker=W, count=10, lease_ms=LONG)
    assert list(held) == []
    assert held.held_ms == 250  # the worker waits for the slow group's next token
    clock.advance(249)
    assert list(client.claim(Q, worker=W, count=10, lease_ms=LONG)) == []
    clock.advance(1)
    assert [j.id for j in client.claim(Q, worker=W, count=10, lease_ms=LONG)] == slow[1:2]
    state = client.concurrency(Q, slow[2])
    assert (state.group, state.group_turn) == ("slow", False)
    # Cleared: the group's waiting jobs go at the next claim.
    client.set_rate_limit(Q, None, key="slow")
    assert client.rate_limit(Q, key="slow") == redisq.RateState(None, None)  # bucket gone too
    assert [j.id for j in client.claim(Q, worker=W, count=10, lease_ms=LONG)] == slow[2:]


def test_a_group_rate_limit_and_its_group_limit_hold_together(
    client: Any, clock: TestClock
) -> None:
    client.set_group_concurrency(Q, 1)
    client.set_rate_limit(Q, "1/s", key="g")
    ids = _fill(client, "g", 3)
    (job,) = _claim(client, count=5)
    client.ack(job)  # the slot is free, but the group's next token is 1 s away (500 ms early)
    assert _claim(client, count=5) == []
    clock.advance(500)
    assert [j.id for j in _claim(client, count=5)] == ids[1:2]
    clock.advance(1_000)
    assert _claim(client, count=5) == []  # its token is due, but its one slot is taken


@pytest.mark.parametrize("key", ["", "a{b", "x" * 129, 3])
def test_a_bad_rate_key_is_refused_naming_the_field_and_nothing_is_written(
    client: Any, key: Any
) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.set_rate_limit(Q, "1/s", key=key)
    assert info.value.field == "key"
    assert client.queues() == []
    with pytest.raises(InvalidArgument):
        client.rate_limit(Q, key=key)


def test_a_group_key_of_another_type_is_named_and_nothing_is_written(
    client: Any, raw: Any, prefix: str
) -> None:
    ids = _fill(client, "g", 2)
    raw.delete(f"{{{prefix}:{Q}}}:gwait")
    raw.set(f"{{{prefix}:{Q}}}:gwait", "not a zset")
    with pytest.raises(redisq.WrongKeyType) as info:
        client.claim(Q, worker=W, count=5)
    assert info.value.key == f"{{{prefix}:{Q}}}:gwait"
    assert client.get(Q, ids[0]).state == JobState.READY
    assert client.counts(Q)[JobState.LEASED] == 0


def test_an_expired_grouped_job_leaves_its_group(client: Any, clock: TestClock) -> None:
    job = client.enqueue(Q, "late", group="g", expires_ms=1_000)
    (other,) = _fill(client, "g", 1)
    clock.advance(1_000)
    assert [j.id for j in _claim(client, count=5)] == [other]  # the expired one is not leased
    assert client.get(Q, job.id).state == JobState.CANCELLED
    state = client.concurrency(Q, job.id)
    assert (state.group, state.grouped_ready) == (None, 0)
