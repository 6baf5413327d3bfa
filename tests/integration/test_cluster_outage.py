"""Redis Cluster with one master down: the queues of the other masters keep working
(issue 9, point 1).

The cluster here runs with ``cluster-require-full-coverage no``, as a cluster that should
keep serving the slots it still has must. A claim over queues of the three masters returns
what the two live ones leased and reports the third as refused (its connection error); a
worker goes on with the live masters' queues during the outage and takes the third one back
when its master returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

import redisq
from redisq import JobState
from tests.integration._worker_support import running
from tests.support.cluster import ClusterProcess
from tests.support.polling import wait_for
from tests.support.servers import redis_binary, valkey_binary

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def partial_cluster() -> Iterator[ClusterProcess]:
    """A 3-master cluster that keeps serving the slots of its live masters."""
    binary = valkey_binary() or redis_binary()
    if binary is None:
        pytest.skip("no server binary for the cluster")
    options = ["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000"]
    options += ["--appendonly", "yes", "--appendfsync", "always"]  # a killed master keeps its data
    with ClusterProcess(binary, extra_args=options) as cluster:
        yield cluster


@pytest.fixture
def cluster(partial_cluster: ClusterProcess) -> ClusterProcess:
    """The module's cluster with every node up (an earlier test may have killed one)."""
    for node in partial_cluster.nodes:
        if not node.running:
            node.start()
    partial_cluster.wait_ok()
    return partial_cluster


def _queues(cluster: ClusterProcess, prefix: str) -> list[str]:
    """One queue name per master, in node order."""
    chosen: dict[int, str] = {}
    for n in range(1000):
        slot = key_slot(f"{{{prefix}:q{n}}}:ready".encode())
        chosen.setdefault(cluster.node_for_slot(slot).port, f"q{n}")
    return [chosen[node.port] for node in cluster.nodes]


def test_a_claim_over_three_masters_returns_the_live_ones_jobs(
    cluster: ClusterProcess, prefix: str
) -> None:
    q0, q1, q2 = _queues(cluster, prefix)
    store = redisq.connect(cluster.cluster_url, prefix=prefix)
    try:
        for queue in (q0, q1, q2):
            store.enqueue_many(queue, [f"{queue}-1", f"{queue}-2"])
        # When the master of q1 dies
        cluster.nodes[1].kill()
        for _ in range(3):  # whichever queue the round starts at
            jobs = store.claim([q0, q1, q2], worker="w", count=10)
            # Then the jobs of q0 and q2 come back, and q1 is reported with its error
            assert set(jobs.refused) == {q1}
            assert isinstance(jobs.refused[q1], redis.exceptions.ConnectionError)
            if jobs:
                assert sorted(j.payload for j in jobs) == sorted(
                    [f"{q0}-1", f"{q0}-2", f"{q2}-1", f"{q2}-2"]
                )
        assert store.counts(q0)[JobState.LEASED] == 2
        # A claim of q1 alone raises its error, unchanged
        with pytest.raises(redis.exceptions.ConnectionError):
            store.claim(q1, worker="w")
        # and the waiting claim and the async store behave the same way
        store.enqueue(q2, "later")
        jobs = store.claim([q0, q1, q2], worker="w", count=10, wait_ms=1_000)
        assert [j.payload for j in jobs] == ["later"]

        store.enqueue(q0, "async")

        async def claim_async() -> redisq.Claimed:
            # (check_server=False: the server check of a fresh store is point 4's business)
            url = cluster.cluster_url
            async with redisq.connect_async(url, prefix=prefix, check_server=False) as astore:
                return await astore.claim([q1, q0, q2], worker="w", count=10)

        jobs = asyncio.run(claim_async())
        assert [j.payload for j in jobs] == ["async"]
        assert set(jobs.refused) == {q1}
    finally:
        store.close()


def test_a_worker_keeps_working_the_live_masters_queues_while_one_master_is_down(
    cluster: ClusterProcess, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    q0, q1, q2 = _queues(cluster, prefix)
    app = redisq.App(cluster.cluster_url, prefix=prefix)

    @app.task(name="job", queue=q0)
    def job(n: int) -> None:
        time.sleep(0.002)  # a little work

    store = app.store
    stop = threading.Event()
    q1_jobs: list[str] = []

    def produce() -> None:
        # Every 20 ms a job for each queue; q1's enqueues fail while its master is down.
        n = 0
        while not stop.wait(0.02):
            n += 1
            for queue in (q0, q1, q2):
                try:
                    ref = job.options(queue=queue).enqueue(n)
                except redis.exceptions.RedisError:
                    continue
                if queue == q1:
                    q1_jobs.append(ref.id)

    def completed() -> tuple[int, int]:
        return store.totals(q0)["completed"], store.totals(q2)["completed"]

    producer = threading.Thread(target=produce, daemon=True)
    worker = redisq.Worker(app, queues=[q0, q1, q2], concurrency=4, idle_wait_ms=500)
    with running(worker):
        producer.start()
        try:
            wait_for(lambda: min(completed()) >= 20, timeout=15)
            # When the master of q1 dies
            cluster.nodes[1].kill()
            at_kill = completed()
            # Then the other two queues keep completing during the outage
            wait_for(
                lambda: min(b - a for a, b in zip(at_kill, completed(), strict=True)) >= 50,
                timeout=20,
                message=lambda: f"50 more completions each: {at_kill} -> {completed()}",
            )
            assert not cluster.nodes[1].running
            warned = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and f"queue {q1!r} refuses claims" in r.getMessage()
            ]
            assert len(warned) == 1
            # When the master comes back, q1's jobs run too
            stop.set()  # (no more jobs: q1's are counted)
            producer.join(5)
            cluster.nodes[1].start()
            cluster.wait_ok()
            wait_for(
                lambda: store.totals(q1)["completed"] >= len(q1_jobs) > 0,
                timeout=45,  # q1 is tried again after a pause of at most 30 s
                message=lambda: f"q1's {len(q1_jobs)} jobs to complete: {store.totals(q1)}",
            )
        finally:
            stop.set()
            producer.join(5)
    app.close()
