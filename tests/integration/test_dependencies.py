"""Dependencies (issue 12, points 1 and 4): enqueue(depends_on=...), the waiting state, the
release by the transition that completes the last parent, the failure policies, and flow.

Every test runs on valkey, redis7 and memory://, with the sync and the async store.
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq.errors import DependencyCycle, DependencyNotFound, InvalidArgument
from redisq.keys import QueueKeys
from tests.support.clock import TestClock

Q = "flows"


def _run_one(client: Any, result: Any = None) -> redisq.Job:
    jobs = client.claim(Q, worker="w")
    assert len(jobs) == 1, jobs
    client.ack(jobs[0], result)
    return jobs[0]


def _state(client: Any, jid: str) -> JobState:
    job = client.get(Q, jid)
    assert job is not None
    return job.state


def test_a_diamond_runs_in_order(client: Any) -> None:
    # Given a -> (b, c) -> d
    a = client.enqueue(Q, "a", id="a")
    b = client.enqueue(Q, "b", id="b", depends_on=[a])
    c = client.enqueue(Q, "c", id="c", depends_on=["a"])
    d = client.enqueue(Q, "d", id="d", depends_on=[b, c])
    assert (a.state, b.state, c.state, d.state) == (
        JobState.READY,
        JobState.WAITING,
        JobState.WAITING,
        JobState.WAITING,
    )
    assert client.counts(Q)[JobState.WAITING] == 3
    assert {j.id for j in client.list(Q, state=JobState.WAITING)} == {"b", "c", "d"}
    # When a completes, b and c are released by that very ack; d still waits.
    assert _run_one(client, 1).id == "a"
    assert _state(client, "b") is JobState.READY
    assert _state(client, "c") is JobState.READY
    assert _state(client, "d") is JobState.WAITING
    first = _run_one(client, 2)
    assert _state(client, "d") is JobState.WAITING
    second = _run_one(client, 3)
    assert {first.id, second.id} == {"b", "c"}
    # Then the ack of the last parent released d.
    assert _state(client, "d") is JobState.READY
    assert _run_one(client).id == "d"
    counts = client.counts(Q)
    assert counts[JobState.COMPLETED] == 4
    assert counts[JobState.WAITING] == 0
    # And the flow shows the DAG with states and results.
    flow = client.flow(Q, "d")
    assert set(flow.nodes) == {"a", "b", "c", "d"}
    assert flow.roots == ["a"]
    assert set(flow.nodes["d"].parents) == {"b", "c"}
    assert set(flow.nodes["a"].children) == {"b", "c"}
    assert flow.nodes["a"].result == 1
    assert all(n.state is JobState.COMPLETED for n in flow.nodes.values())
    drawn = flow.render()
    assert drawn.splitlines()[0] == "a [completed] -> 1"
    assert "d [completed] *" in drawn


def test_a_chain_of_50_runs_one_at_a_time(client: Any) -> None:
    prev = client.enqueue(Q, 0, id="n0")
    for i in range(1, 50):
        prev = client.enqueue(Q, i, id=f"n{i}", depends_on=[prev])
    order = []
    for _ in range(50):
        assert client.counts(Q)[JobState.READY] == 1
        order.append(_run_one(client).id)
    assert order == [f"n{i}" for i in range(50)]
    assert client.counts(Q)[JobState.COMPLETED] == 50
    assert len(client.flow(Q, "n25").nodes) == 50


def test_a_fan_in_of_100_parents_waits_for_the_last(client: Any) -> None:
    parents = [client.enqueue(Q, i, id=f"p{i}") for i in range(100)]
    child = client.enqueue(Q, "c", id="child", depends_on=parents)
    assert child.state is JobState.WAITING
    leased = client.claim(Q, worker="w", count=100)
    assert len(leased) == 100
    client.ack_many(leased[:99])
    assert _state(client, "child") is JobState.WAITING
    client.ack_many(leased[99:])
    assert _state(client, "child") is JobState.READY


def test_a_large_fan_out_is_released_in_bounded_batches(client: Any) -> None:
    # One parent, 250 children: its ack releases 100 (the batch of lib/deps_finish); the rest
    # are released by housekeeping (reap), 100 per call at most here.
    parent = client.enqueue(Q, "p", id="p")
    for i in range(250):
        client.enqueue(Q, i, id=f"k{i}", depends_on=[parent])
    _run_one(client)
    assert client.counts(Q)[JobState.READY] == 100
    assert client.counts(Q)[JobState.WAITING] == 150
    client.reap(Q, limit=100)
    assert client.counts(Q)[JobState.READY] == 200
    client.reap(Q, limit=100)
    assert client.counts(Q)[JobState.READY] == 250
    assert client.counts(Q)[JobState.WAITING] == 0


@pytest.mark.parametrize("how", ["dead", "cancel", "delete"])
def test_policy_fail_cancels_the_child_naming_the_parent(client: Any, how: str) -> None:
    parent = client.enqueue(Q, "p", id="p", max_attempts=1)
    other = client.enqueue(Q, "o", id="o")
    child = client.enqueue(Q, "c", id="c", depends_on=[parent, other])
    if how == "dead":
        job = next(j for j in client.claim(Q, worker="w", count=2) if j.id == "p")
        client.nack(job, error="boom")
    elif how == "cancel":
        assert client.cancel(Q, "p")
    else:
        assert client.delete(Q, "p")
    got = client.get(Q, child.id)
    assert got.state is JobState.CANCELLED
    ended = {"dead": "dead", "cancel": "cancelled", "delete": "deleted"}[how]
    assert got.last_error == f"parent p ended {ended}"
    assert client.counts(Q)[JobState.WAITING] == 0


@pytest.mark.parametrize("policy", ["continue", "ignore"])
def test_policies_continue_and_ignore_let_the_child_run(client: Any, policy: str) -> None:
    parent = client.enqueue(Q, "p", id="p", max_attempts=1)
    other = client.enqueue(Q, "o", id="o")
    client.enqueue(Q, "c", id="c", depends_on=[parent, other], on_parent_failure=policy)
    job = client.claim(Q, worker="w")[0]
    assert job.id == "p"
    client.nack(job, error="boom")
    # The dead parent is struck off; the child still waits for the other one.
    assert _state(client, "c") is JobState.WAITING
    assert _run_one(client).id == "o"
    assert _state(client, "c") is JobState.READY


def test_a_parent_that_ended_before_the_child_was_enqueued(client: Any) -> None:
    done = client.enqueue(Q, "d", id="done")
    _run_one(client)
    dead = client.enqueue(Q, "x", id="dead", max_attempts=1)
    client.nack(client.claim(Q, worker="w")[0], dead=True)
    assert client.enqueue(Q, 1, id="c1", depends_on=[done]).state is JobState.READY
    failed = client.enqueue(Q, 2, id="c2", depends_on=[done, dead])
    assert failed.state is JobState.CANCELLED
    assert failed.last_error == "parent dead ended dead"
    go = client.enqueue(Q, 3, id="c3", depends_on=[dead], on_parent_failure="continue")
    assert go.state is JobState.READY


def test_the_fail_policy_cascades_in_bounded_steps(client: Any) -> None:
    a = client.enqueue(Q, "a", id="a")
    b = client.enqueue(Q, "b", id="b", depends_on=[a])
    client.enqueue(Q, "c", id="c", depends_on=[b])
    assert client.cancel(Q, "a")
    assert _state(client, "b") is JobState.CANCELLED
    # c is cancelled by the next housekeeping (the cascade goes through the todo list).
    client.reap(Q)
    assert _state(client, "c") is JobState.CANCELLED
    assert client.get(Q, "c").last_error == "parent b ended cancelled"


def test_a_parent_reaped_to_dead_by_a_claim_is_settled_by_housekeeping(
    client: Any, clock: TestClock
) -> None:
    client.enqueue(Q, "p", id="p", max_attempts=1)
    client.enqueue(Q, "c", id="c", depends_on=["p"])
    client.claim(Q, worker="w", lease_ms=1000)
    clock.advance(5000)
    assert client.claim(Q, worker="w") == []  # its housekeeping reaped p to dead
    assert _state(client, "p") is JobState.DEAD
    client.reap(Q)
    assert _state(client, "c") is JobState.CANCELLED


def test_missing_parents_and_cycles_are_refused_before_anything_is_written(client: Any) -> None:
    with pytest.raises(DependencyNotFound) as missing:
        client.enqueue(Q, 1, id="c", depends_on=["nope"])
    assert missing.value.job_id == "nope"
    assert missing.value.child_id == "c"
    assert client.get(Q, "c") is None
    client.enqueue(Q, 0, id="a")
    with pytest.raises(DependencyCycle):
        client.enqueue(Q, 1, id="a2", depends_on=["a", "a2"])
    with pytest.raises(InvalidArgument, match="on_parent_failure"):
        client.enqueue(Q, 1, id="c", depends_on=["a"], on_parent_failure="maybe")
    with pytest.raises(InvalidArgument, match="depends_on"):
        client.enqueue(Q, 1, id="c", depends_on=[])
    with pytest.raises(InvalidArgument, match="depends_on"):
        client.enqueue(Q, 1, id="c", depends_on=[3])
    with pytest.raises(InvalidArgument, match="unique_key"):
        client.enqueue(Q, 1, id="c", depends_on=["a"], unique_key="u")
    assert client.get(Q, "c") is None
    assert client.get(Q, "a2") is None
    assert client.counts(Q)[JobState.WAITING] == 0


def test_a_resent_enqueue_creates_nothing_twice(client: Any, url: str, prefix: str) -> None:
    a = client.enqueue(Q, "a", id="a")
    first = client.enqueue(Q, "c", id="c", depends_on=[a])
    again = client.enqueue(Q, "c", id="c", depends_on=[a])
    assert again == first
    keys = QueueKeys.build(prefix, Q)
    with redisq.connect(url, prefix=prefix) as raw:
        assert raw.redis.scard(keys.deps_prefix + "c/a") == 1
        assert raw.redis.zcard(keys.waiting) == 1
    assert client.totals(Q)["enqueued"] == 2
    _run_one(client)
    assert _state(client, "c") is JobState.READY


def test_resent_finishing_calls_release_nothing_twice(client: Any) -> None:
    # A re-sent ack (same token) succeeds without a second completion, and a parent's
    # completion is told to its children once: the child of two parents still waits.
    client.enqueue(Q, "p1", id="p1")
    client.enqueue(Q, "p2", id="p2")
    client.enqueue(Q, "c", id="c", depends_on=["p1", "p2"])
    job = client.claim(Q, worker="w")[0]
    client.ack(job)
    client.ack(job)
    assert _state(client, "c") is JobState.WAITING
    assert client.cancel(Q, "c")
    assert client.cancel(Q, "c") is False
    _run_one(client)
    assert _state(client, "c") is JobState.CANCELLED
    assert client.counts(Q)[JobState.READY] == 0


def test_a_cancelled_waiting_job_is_not_released(client: Any) -> None:
    client.enqueue(Q, "p", id="p")
    client.enqueue(Q, "c", id="c", depends_on=["p"])
    assert client.cancel(Q, "c")
    assert client.counts(Q)[JobState.WAITING] == 0
    _run_one(client)
    assert _state(client, "c") is JobState.CANCELLED
    assert client.counts(Q)[JobState.READY] == 0


def test_claim_and_ack_releases_children(client: Any) -> None:
    client.enqueue(Q, "p", id="p")
    client.enqueue(Q, "c", id="c", depends_on=["p"])
    assert client.claim_and_ack(Q).id == "p"
    assert _state(client, "c") is JobState.READY


def test_a_queue_without_dependencies_writes_no_dependency_keys(
    client: Any, url: str, prefix: str
) -> None:
    client.enqueue(Q, "x", id="x", max_attempts=1)
    client.enqueue(Q, "y", id="y")
    jobs = client.claim(Q, worker="w", count=2)
    client.ack(jobs[0])
    client.nack(jobs[1], dead=True)
    client.reap(Q)
    keys = QueueKeys.build(prefix, Q)
    with redisq.connect(url, prefix=prefix) as raw:
        assert raw.redis.hget(keys.meta, "deps") is None
        assert raw.redis.exists(keys.waiting, keys.deps, keys.deps_parents, keys.deps_todo) == 0


@pytest.mark.cluster
def test_dependencies_on_the_local_cluster(cluster_url: str, prefix: str) -> None:
    # Every dependency key is under the queue's hash tag: each script runs in its slot.
    with redisq.connect(cluster_url, prefix=prefix) as store:
        for queue in ("c1", "c2", "c3"):
            a = store.enqueue(queue, "a", id="a")
            b = store.enqueue(queue, "b", id="b", depends_on=[a])
            c = store.enqueue(queue, "c", id="c", depends_on=[a])
            store.enqueue(queue, "d", id="d", depends_on=[b, c], on_parent_failure="continue")
            store.enqueue(queue, "e", id="e", depends_on=["d"])
        for queue in ("c1", "c2", "c3"):
            order = []
            while len(order) < 5:
                (job,) = store.claim(queue, worker="w")
                if job.id == "c" and queue == "c2":
                    store.nack(job, dead=True)  # policy continue: d runs anyway
                else:
                    store.ack(job, job.id)
                order.append(job.id)
            assert order[0] == "a"
            assert order[3:] == ["d", "e"]
            assert store.counts(queue)[JobState.WAITING] == 0
            assert set(store.flow(queue, "e").nodes) == {"a", "b", "c", "d", "e"}


def test_the_task_api_takes_depends_on(url: str, prefix: str) -> None:
    import asyncio

    app = redisq.App(url, prefix=prefix)

    @app.task(queue=Q, name="step")
    def step(n: int) -> int:
        return n

    try:
        first = step.enqueue(1)
        second = step.options(depends_on=[first]).enqueue(2)
        third = step.options(depends_on=first, on_parent_failure="ignore").enqueue(3)

        async def later() -> redisq.JobRef:
            try:
                return await step.options(depends_on=[second, third]).aenqueue(4)
            finally:
                await app.async_store.close()

        fourth = asyncio.run(later())
        assert [r.job.state for r in (first, second, third, fourth)] == [
            JobState.READY,
            JobState.WAITING,
            JobState.WAITING,
            JobState.WAITING,
        ]
        assert set(app.store.flow(Q, fourth.id).nodes[fourth.id].parents) == {
            second.id,
            third.id,
        }
        with pytest.raises(InvalidArgument, match="depends_on"):
            step.options(depends_on=[first]).enqueue_many([((5,), {})])
        with pytest.raises(InvalidArgument, match="on_parent_failure"):
            step.options(on_parent_failure="never")
    finally:
        app.close()


def test_purge_takes_waiting_jobs_and_their_children_are_settled(
    client: Any, url: str, prefix: str
) -> None:
    client.enqueue(Q, "p", id="p")
    client.enqueue(Q, "c", id="c", depends_on=["p"])
    client.enqueue(Q, "d", id="d", depends_on=["c"])
    assert client.purge(Q, JobState.WAITING) == 2
    assert client.counts(Q)[JobState.WAITING] == 0
    keys = QueueKeys.build(prefix, Q)
    with redisq.connect(url, prefix=prefix) as raw:
        assert raw.redis.hlen(keys.deps) == 0
    # A purged parent counts as deleted for its children, at the next reap.
    client.enqueue(Q, "e", id="e", depends_on=["p"])
    client.enqueue(Q, "f", id="f", depends_on=["p"], on_parent_failure="continue")
    assert client.purge(Q, JobState.READY) == 1
    client.reap(Q)
    assert _state(client, "e") is JobState.CANCELLED
    assert client.get(Q, "e").last_error == "parent p ended deleted"
    assert _state(client, "f") is JobState.READY


def test_a_waiting_job_cannot_be_updated(client: Any) -> None:
    client.enqueue(Q, "p", id="p")
    client.enqueue(Q, "c", id="c", depends_on=["p"])
    with pytest.raises(redisq.InvalidTransition):
        client.update(Q, "c", priority=5)
