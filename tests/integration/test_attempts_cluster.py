"""The attempt history on the local 3-master cluster: written and removed in the queue's slot."""

from __future__ import annotations

from typing import Any

import redisq
from redisq import JobState
from tests.support.cluster import ClusterProcess


def test_history_is_written_read_and_removed_on_a_cluster(
    redis_cluster: ClusterProcess, cluster_url: str, prefix: str
) -> None:
    # Given a store on the cluster and a job that fails twice (dead), in two queues
    store = redisq.connect(cluster_url, prefix=prefix)
    try:
        for queue in ("a", "b"):
            store.enqueue(queue, "x", id="j1", max_attempts=2)
            for n in (1, 2):
                (job,) = store.claim(queue, worker="w1")
                store.nack(
                    job, error=f"E{n}\n\nTraceback (most recent call last):\nE{n}", delay_ms=0
                )

        # Then each queue's job has its two attempts
        for queue in ("a", "b"):
            got = [(a.attempt, a.outcome, a.error) for a in store.attempts(queue, "j1")]
            assert got == [(1, "retry", "E1"), (2, "dead", "E2")]
            assert store.get(queue, "j1").state is JobState.DEAD  # type: ignore[union-attr]

        # When one is deleted and the other purged
        assert store.delete("a", "j1") is True
        assert store.purge("b", JobState.DEAD) == 1

        # Then no history field is left in either queue's jobs hash
        for queue in ("a", "b"):
            assert store.attempts(queue, "j1") == []
            jobs: Any = store.redis.hkeys(f"{{{prefix}:{queue}}}:jobs")
            assert jobs == []
    finally:
        store.close()
