"""`Store.counts(...).held`: the ready jobs a limit holds back now (issue 11, point 6).

Every backend (valkey, redis7, memory), both clients, on the test clock.
"""

from __future__ import annotations

from typing import Any

import redisq
from tests.support.clock import TestClock

Q = "held"


def test_a_queue_without_limits_holds_nothing(client: Any) -> None:
    for i in range(3):
        client.enqueue(Q, i)
    counts = client.counts(Q)
    assert counts[redisq.JobState.READY] == 3
    assert counts.held == 0


def test_the_concurrency_cap_holds_every_ready_job_while_the_leases_reach_it(client: Any) -> None:
    for i in range(3):
        client.enqueue(Q, i)
    client.set_concurrency(Q, 1)
    [job] = client.claim(Q, worker="w", count=5)
    assert client.counts(Q).held == 2
    client.ack(job)
    assert client.counts(Q).held == 0


def test_the_rate_limit_holds_until_the_next_token(client: Any, clock: TestClock) -> None:
    for i in range(3):
        client.enqueue(Q, i)
    client.set_rate_limit(Q, "10/s")  # one job per 100 ms
    assert len(client.claim(Q, worker="w", count=5)) == 1
    assert client.counts(Q).held == 2
    clock.advance(100)
    assert client.counts(Q).held == 0
    client.hold(Q, 1_000)  # a handler's RateLimited
    assert client.counts(Q).held == 2


def test_grouped_jobs_are_held_while_no_group_may_lease(client: Any) -> None:
    client.set_group_concurrency(Q, 1)
    for i in range(3):
        client.enqueue(Q, i, group="tenant-1")
    client.enqueue(Q, 9)  # a plain job: no group limit holds it
    claimed = client.claim(Q, worker="w", count=5)
    assert len(claimed) == 2  # the plain job and one of the group
    assert client.counts(Q).held == 2
    # Summed over every queue
    client.enqueue("other", 1)
    total = client.counts()
    assert total[redisq.JobState.READY] == 3
    assert total.held == 2
