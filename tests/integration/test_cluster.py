"""Redis Cluster: every queue lives in one slot, so every script runs on one master.

The queues here are chosen so that their hash tags land on three different masters of the local
cluster; a call that touched keys of two slots would fail with CROSSSLOT, and a key built
outside the queue's tag would land on the wrong node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

import redisq
from redisq import JobState
from tests.support.cluster import ClusterProcess
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.cluster


def _spread_queues(cluster: ClusterProcess, prefix: str) -> list[str]:
    """Pick one queue name per master, in node order."""
    chosen: dict[int, str] = {}
    for n in range(1000):
        name = f"q{n}"
        slot = key_slot(f"{{{prefix}:{name}}}:ready".encode())
        node = cluster.node_for_slot(slot)
        chosen.setdefault(node.port, name)
        if len(chosen) == len(cluster.nodes):
            break
    assert len(chosen) == len(cluster.nodes) == 3
    return [chosen[node.port] for node in cluster.nodes]


@pytest.fixture
def queues(redis_cluster: ClusterProcess, cluster_url: str, prefix: str) -> list[str]:
    """Three queue names whose keys live on three different masters."""
    return _spread_queues(redis_cluster, prefix)


@pytest.fixture(params=["scheme", "flag"])
def store(
    request: pytest.FixtureRequest, redis_cluster: ClusterProcess, cluster_url: str, prefix: str
) -> Iterator[redisq.Store]:
    """A cluster store, by ``redis+cluster://`` or by ``redis://`` with ``cluster=True``."""
    if request.param == "scheme":
        assert cluster_url.startswith("redis+cluster://")
        connected = redisq.connect(cluster_url, prefix=prefix)
    else:
        connected = redisq.connect(redis_cluster.url, prefix=prefix, cluster=True)
    yield connected
    connected.close()


def _owner_has(node: ServerProcess, key: str) -> bool:
    """Ask the node itself (no redirection) whether it holds ``key``."""
    with node.client() as client:
        return bool(client.exists(key))


def test_queues_land_on_three_masters(
    redis_cluster: ClusterProcess, queues: list[str], prefix: str
) -> None:
    slots = [redis_cluster.keyslot(f"{{{prefix}:{q}}}:ready") for q in queues]
    owners = [redis_cluster.node_for_slot(slot).port for slot in slots]
    assert len(set(owners)) == 3
    assert slots == [key_slot(f"{{{prefix}:{q}}}:ready".encode()) for q in queues]


def test_every_transition_on_every_master(
    store: redisq.Store, redis_cluster: ClusterProcess, queues: list[str], prefix: str
) -> None:
    for node, queue in zip(redis_cluster.nodes, queues, strict=True):
        # enqueue, enqueue_many (with a unique key and a delayed job)
        first = store.enqueue(queue, {"q": queue}, id="a", unique_key=f"u-{queue}")
        assert store.enqueue(queue, "dup", unique_key=f"u-{queue}").id == first.id
        store.enqueue_many(queue, [redisq.Spec("b", id="b"), redisq.Spec("c", id="c")])
        store.enqueue(queue, "later", id=f"later-{queue}", delay_ms=3_600_000)
        assert _owner_has(node, f"{{{prefix}:{queue}}}:jobs")
        assert _owner_has(node, f"{{{prefix}:{queue}}}:meta")

        # reads
        assert [j.id for j in store.peek(queue, 5)] == ["a", "b", "c"]
        assert [j.id for j in store.list(queue, state=JobState.READY)] == ["a", "b", "c"]
        found = store.find(f"later-{queue}")
        assert found is not None
        assert (found.queue, found.state) == (queue, JobState.SCHEDULED)

        # claim, renew, progress, ack, nack, release
        a, b = store.claim(queue, worker="w1", count=2, lease_ms=60_000)
        assert [a.id, b.id] == ["a", "b"]
        assert store.renew(a, lease_ms=90_000).token == a.token
        store.progress(a, 50)
        assert store.ack(a, result="done").state is JobState.COMPLETED
        assert store.nack(b, error="boom", delay_ms=0).state is JobState.READY
        (c,) = store.claim(queue, worker="w1", lease_ms=60_000)
        assert c.id == "b"
        assert store.release(c).attempts == 1

        # claim_and_ack, update, cancel, delete, dead letters and retry_dead
        done = store.claim_and_ack(queue)
        assert done is not None
        assert done.id == "b"
        assert store.update(queue, "c", priority=7).priority == 7
        (d,) = store.claim(queue, worker="w1")
        assert store.nack(d, error="fatal", dead=True).state is JobState.DEAD
        assert store.retry_dead(queue) == 1
        assert store.cancel(queue, f"later-{queue}") is True
        assert store.delete(queue, "c") is True

        # pause, resume, locks, reap, counts
        store.pause(queue)
        assert store.claim(queue, worker="w1") == []
        store.resume(queue)
        assert store.lock(queue, "a", "w1", 10_000) is True
        assert store.lock(queue, "a", "w2", 10_000) is False
        assert store.unlock(queue, "a", "w1") is True
        assert store.reap(queue) == 0
        assert store.counts(queue) == {
            JobState.READY: 0,
            JobState.SCHEDULED: 0,
            JobState.LEASED: 0,
            JobState.COMPLETED: 2,
            JobState.DEAD: 0,
            JobState.CANCELLED: 1,
            JobState.WAITING: 0,
        }

    # Every queue is known, and the totals add up across the masters
    assert store.queues() == sorted(queues)
    totals = store.counts()
    assert (totals[JobState.COMPLETED], totals[JobState.CANCELLED]) == (6, 3)
    assert len(store.list()) == 9
    assert [j.queue for j in store.list(state=JobState.CANCELLED)] == sorted(queues)

    # purge clears one queue on its own master
    assert store.purge(queues[0]) == 3
    assert store.queues() == sorted(queues[1:])


def test_claim_across_masters(store: redisq.Store, queues: list[str]) -> None:
    # Given one job on each master
    for queue in queues:
        store.enqueue(queue, queue, id=f"job-{queue}")

    # When one claim asks all three queues for three jobs
    jobs = store.claim(queues, worker="w1", count=3, lease_ms=60_000)

    # Then it leased each job once, and the batch calls split by queue
    assert sorted(j.queue for j in jobs) == sorted(queues)
    assert all(j.id == f"job-{j.queue}" for j in jobs)
    renewed = store.renew_many(jobs, lease_ms=90_000)
    assert all(isinstance(r, redisq.Job) for r in renewed)
    done = store.ack_many(jobs, ["r0", "r1", "r2"])
    assert [j.state for j in done] == [JobState.COMPLETED] * 3
    assert [j.result for j in done] == ["r0", "r1", "r2"]
    assert store.counts()[JobState.COMPLETED] == 3
    assert store.claim(queues, worker="w1", count=3) == []


def test_lost_script_caches_are_reloaded(
    store: redisq.Store, redis_cluster: ClusterProcess, queues: list[str]
) -> None:
    for queue in queues:
        store.enqueue(queue, 1, id="j1")
    for node in redis_cluster.nodes:
        with node.client() as client:
            client.script_flush()
    assert store.counts()[JobState.READY] == 3
    jobs = store.claim(queues, worker="w1", count=3)
    assert len(jobs) == 3
    assert [j.state for j in store.ack_many(jobs)] == [JobState.COMPLETED] * 3


@pytest.mark.parametrize("how", ["scheme", "flag"])
def test_async_cluster(
    redis_cluster: ClusterProcess, cluster_url: str, queues: list[str], prefix: str, how: str
) -> None:
    if how == "scheme":
        store = redisq.connect_async(cluster_url, prefix=prefix)
    else:
        store = redisq.connect_async(redis_cluster.url, prefix=prefix, cluster=True)

    async def main() -> None:
        async with store:
            # One job on each master, claimed and acked across the three
            for queue in queues:
                await store.enqueue(queue, queue, id=f"{queue}-0")
            jobs = await store.claim(queues, worker="w1", count=3, lease_ms=60_000)
            assert sorted(j.queue for j in jobs) == sorted(queues)
            assert [j.state for j in await store.ack_many(jobs)] == [JobState.COMPLETED] * 3

            # Per-queue transitions and reads across the masters
            for queue in queues:
                await store.enqueue_many(queue, [redisq.Spec(queue, id=f"{queue}-1")])
            (left,) = await store.claim(queues[0], worker="w1")
            assert left.id == f"{queues[0]}-1"
            assert (await store.nack(left, error="x", dead=True)).state is JobState.DEAD
            assert await store.queues() == sorted(queues)
            found = await store.find(f"{queues[1]}-1")
            assert found is not None
            assert found.state is JobState.READY
            counts = await store.counts()
            assert (counts[JobState.COMPLETED], counts[JobState.DEAD]) == (3, 1)
            assert counts[JobState.READY] == 2
            assert len(await store.list()) == 6

    asyncio.run(main())


def test_wait_on_queues_of_several_slots_wakes_for_each(
    store: redisq.Store, queues: list[str]
) -> None:
    # One BZPOPMIN cannot span slots: the store waits on one queue at a time, in turn.
    for queue in queues:
        assert store.wait(queues, timeout_ms=30) is False
        store.enqueue(queue, queue)
        assert store.wait(queues, timeout_ms=10_000) is True
        assert [j.payload for j in store.claim(queue, worker="w")] == [queue]


def test_a_waiting_claim_on_queues_of_several_slots_gets_each_job(
    store: redisq.Store, queues: list[str]
) -> None:
    # The wait before the pipelined claim covers one slot; the claims go on to every queue,
    # so a job in any of them is found within the wait.
    assert store.claim(queues, worker="w") == []
    for queue in queues:
        store.enqueue(queue, queue)
        jobs = store.claim(queues, worker="w", wait_ms=10_000)
        assert [j.payload for j in jobs] == [queue]
        assert store.ack(jobs[0]).state is JobState.COMPLETED
