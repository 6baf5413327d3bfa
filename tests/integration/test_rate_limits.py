"""Rate limits in claim (lua/lib/rate.lua): the bucket, holds, validation, client retries.

Each test runs on every backend (valkey, redis7, memory) with both clients (sync, async), on
the test clock: time moves only when the test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import InvalidArgument
from redisq._core import ops
from tests.support.clock import TestClock

Q = "calls"


def _fill(client: Any, n: int, queue: str = Q) -> list[str]:
    return [client.enqueue(queue, i).id for i in range(n)]


def test_a_queue_without_a_limit_leases_everything(client: Any) -> None:
    _fill(client, 5)
    assert client.rate_limit(Q) == redisq.RateState(None, None)
    assert len(client.claim(Q, worker="w", count=10)) == 5


def test_the_bucket_lets_one_job_per_interval_and_says_when(client: Any, clock: TestClock) -> None:
    ids = _fill(client, 10)
    client.set_rate_limit(Q, "10/s")  # one job per 100 ms
    assert client.rate_limit(Q).limit == "10/s"
    first = client.claim(Q, worker="w", count=10)
    assert [j.id for j in first] == ids[:1]
    # Held back: nothing more until the next token, and the store knows when it is due.
    assert client.claim(Q, worker="w", count=10) == []
    clock.advance(49)
    assert client.claim(Q, worker="w", count=10) == []
    clock.advance(1)  # 50 ms: within the tolerance of half an interval
    assert [j.id for j in client.claim(Q, worker="w", count=10)] == ids[1:2]
    clock.advance(1_000)  # an idle bucket does not save up a burst
    assert [j.id for j in client.claim(Q, worker="w", count=10)] == ids[2:3]
    assert client.counts(Q)[redisq.JobState.READY] == 7


def test_a_claim_held_back_says_when_the_next_job_may_start(client: Any, clock: TestClock) -> None:
    _fill(client, 3)
    client.set_rate_limit(Q, "2/s")  # 500 ms apart, tolerance 250 ms
    due_in: dict[str, int] = {}
    leased = client._run(ops.claim(client.settings, Q, "w", None, 3, 0, due_in))
    assert len(leased) == 1
    assert due_in == {Q: 250}  # not -1 (no scheduled job): the next token
    assert client.rate_limit(Q).next_at_ms == clock.now_ms + 250
    clock.advance(100)
    held = client._run(ops.claim(client.settings, Q, "w", None, 3, 0, due_in))
    assert held == []
    assert held.held_ms == 150
    assert due_in == {Q: 150}


def test_a_waiting_claim_held_back_briefly_returns_at_once(client: Any, clock: TestClock) -> None:
    _fill(client, 3)
    client.set_rate_limit(Q, "10/s")  # next job 50 ms after the first
    assert len(client.claim(Q, worker="w", count=3)) == 1
    # Not a blocking wait of up to 60 s on Redis (the test clock never moves): the caller
    # is told how soon the next job may start instead.
    held = client.claim(Q, worker="w", count=3, wait_ms=60_000)
    assert held == []
    assert held.held_ms == 50
    clock.advance(50)
    assert len(client.claim(Q, worker="w", count=3, wait_ms=60_000)) == 1


def test_fast_limits_lease_in_batches_within_the_window(client: Any, clock: TestClock) -> None:
    _fill(client, 1_100)
    client.set_rate_limit(Q, "1000/s")  # 1 ms apart, tolerance 5 ms: 6 at once
    taken = 0
    for _ in range(1_000):  # claims every ms for one second
        taken += len(client.claim(Q, worker="w", count=100))
        clock.advance(1)
    assert taken == 1_005  # the limit plus the tolerance's 5


def test_the_limit_is_per_queue(client: Any, clock: TestClock) -> None:
    _fill(client, 3, "a")
    _fill(client, 3, "b")
    client.set_rate_limit("a", "1/s")
    assert len(client.claim("a", worker="w", count=3)) == 1
    assert len(client.claim("b", worker="w", count=3)) == 3
    assert len(client.claim(["a", "b"], worker="w", count=3)) == 0


def test_clearing_the_limit_lets_claims_take_everything(client: Any) -> None:
    _fill(client, 5)
    client.set_rate_limit(Q, "1/h")
    assert len(client.claim(Q, worker="w", count=5)) == 1
    assert client.claim(Q, worker="w", count=5) == []
    client.set_rate_limit(Q, None)
    assert client.rate_limit(Q).limit is None
    # The bucket's position stays until it passes (it is a hold now): at most one interval.
    state = client.rate_limit(Q)
    assert state.next_at_ms is not None


def test_a_hold_stops_claims_for_every_worker_then_clears(client: Any, clock: TestClock) -> None:
    _fill(client, 4)
    assert client.hold(Q, 2_000) == clock.now_ms + 2_000
    assert client.claim(Q, worker="a", count=4) == []
    assert client.claim(Q, worker="b", count=4) == []
    assert client.hold(Q, 500) == clock.now_ms + 2_000  # a shorter hold changes nothing
    clock.advance(2_000)
    assert len(client.claim(Q, worker="a", count=4)) == 4
    # A passed hold on a queue without a limit is forgotten: claims are back on the cheap path.
    assert client.rate_limit(Q) == redisq.RateState(None, None)


def test_a_hold_on_an_unknown_queue_writes_nothing(client: Any, raw: Any, prefix: str) -> None:
    assert client.hold("nowhere", 1_000) == 0
    assert raw.keys(f"*{prefix}*") == []


@pytest.mark.parametrize(
    "bad",
    ["100", "100/d", "0/s", "-1/s", "1.5/s", " 1/s", "1/s ", "10000000/s", 100, b"1/s", "1/S"],
)
def test_bad_limits_are_refused_and_nothing_is_written(
    client: Any, raw: Any, prefix: str, bad: Any
) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.set_rate_limit(Q, bad)
    assert info.value.field == "rate_limit"
    assert raw.keys(f"*{prefix}*") == []


@pytest.mark.parametrize("bad", [0, -5, 1.5, "10", True, 10**12])
def test_bad_holds_are_refused_and_nothing_is_written(
    client: Any, raw: Any, prefix: str, bad: Any
) -> None:
    client.enqueue(Q, 1)
    before = raw.hgetall(redisq.keys.QueueKeys.build(prefix, Q).meta)
    with pytest.raises(InvalidArgument) as info:
        client.hold(Q, bad)
    assert info.value.field == "ms"
    assert raw.hgetall(redisq.keys.QueueKeys.build(prefix, Q).meta) == before


def test_claim_and_ack_keeps_the_limit_and_holds(client: Any, clock: TestClock) -> None:
    _fill(client, 4)
    client.set_rate_limit(Q, "1/h")
    assert client.claim_and_ack(Q) is not None
    assert client.claim_and_ack(Q) is None  # the next turn is an hour away
    assert client.claim(Q, worker="w", count=4) == []
    client.set_rate_limit(Q, None)
    clock.advance(3_600_000)
    client.hold(Q, 1_000)
    assert client.claim_and_ack(Q) is None
    clock.advance(1_000)
    assert client.claim_and_ack(Q) is not None
    assert client.rate_limit(Q) == redisq.RateState(None, None)  # the passed hold is gone
