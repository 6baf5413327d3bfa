"""Rate keys (docs/rate_limits.md#per-key): `rate_key=` on enqueue, a key's own limit and holds
enforced in claim, keys not interfering, `rate_keys` (what stats and show print), validation.

Each test runs on every backend (valkey, redis7, memory) with both clients (sync, async), on
the test clock: time moves only when the test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import InvalidArgument, JobState
from tests.support.clock import TestClock

Q = "api"
W = "w"
LONG = 600_000


def _claim(client: Any, count: int = 50) -> list[redisq.Job]:
    return list(client.claim(Q, worker=W, count=count, lease_ms=LONG))


def _ids(jobs: list[redisq.Job]) -> list[str]:
    return [j.id for j in jobs]


def test_jobs_with_a_rate_key_draw_from_its_bucket_alone(client: Any, clock: TestClock) -> None:
    client.set_rate_limit(Q, "2/s", key="stripe")  # one per 500 ms, a tolerance of 250 ms
    limited = [client.enqueue(Q, i, rate_key="stripe").id for i in range(3)]
    plain = [client.enqueue(Q, i).id for i in range(3)]
    other = [client.enqueue(Q, i, rate_key="github").id for i in range(3)]
    first = _claim(client)
    # One job of the limited key; the plain jobs and another key are not held back by it.
    assert sorted(_ids(first)) == sorted([limited[0], *plain, *other])
    held = client.claim(Q, worker=W, count=50, lease_ms=LONG)
    assert list(held) == []
    assert held.held_ms == 250  # when the key's next token is due: the worker waits that long
    clock.advance(249)
    assert _claim(client) == []
    clock.advance(1)
    assert _ids(_claim(client)) == limited[1:2]
    assert client.counts(Q)[JobState.READY] == 1
    # The key's job is its group (one structure serves both).
    assert client.concurrency(Q, limited[2]).group == "stripe"


def test_keys_do_not_interfere_each_keeps_its_own_limit(client: Any, clock: TestClock) -> None:
    client.set_rate_limit(Q, "4/s", key="slow")
    client.set_rate_limit(Q, "20/s", key="fast")
    client.enqueue_many(Q, list(range(40)), rate_key="slow")
    client.enqueue_many(Q, [redisq.Spec(i, rate_key="fast") for i in range(40)])
    client.enqueue_many(Q, list(range(40)))  # no key: no limit
    granted: dict[str, list[int]] = {"slow": [], "fast": [], "": []}
    groups: dict[str, str] = {}
    for _ in range(200):  # 2 s in steps of 10 ms, a claim at each
        for job in _claim(client):
            if job.id not in groups:
                groups[job.id] = client.concurrency(Q, job.id).group or ""
            granted[groups[job.id]].append(clock.now_ms)
        clock.advance(10)
    assert len(granted[""]) == 40  # all at once
    assert 8 <= len(granted["slow"]) <= 9, granted["slow"]
    assert 40 <= len(granted["fast"]) <= 41, granted["fast"]
    for key, limit in (("slow", 4), ("fast", 20)):
        times = granted[key]
        busiest = max(sum(1 for u in times if t <= u < t + 1000) for t in times)
        assert busiest <= limit + 1, (key, busiest)


def test_a_key_held_by_rate_limited_holds_only_that_key(client: Any, clock: TestClock) -> None:
    held = [client.enqueue(Q, i, rate_key="k").id for i in range(2)]
    free = [client.enqueue(Q, i, rate_key="other").id for i in range(2)]
    plain = client.enqueue(Q, 0).id
    # A handler of one of k's jobs met a 429: hold k (by the job) for 5 s.
    until = client.hold(Q, 5_000, id=held[0])
    assert until == clock.now_ms + 5_000
    assert client.rate_limit(Q).next_at_ms is None  # the queue is not held
    assert client.rate_limit(Q, key="k") == redisq.RateState(None, until)
    assert sorted(_ids(_claim(client))) == sorted([*free, plain])
    # A job joining the key (or one released back to it, as the worker does after the hold)
    # gives the key a turn again: claim still finds it held.
    held.append(client.enqueue(Q, 2, rate_key="k").id)
    waiting = client.claim(Q, worker=W, count=50, lease_ms=LONG)
    assert list(waiting) == []
    assert waiting.held_ms == 5_000
    keys = client.rate_keys(Q)
    assert keys == redisq.RateKeys(1, (redisq.HeldKey("k", until, 3, None),))
    clock.advance(4_999)
    assert _claim(client) == []
    clock.advance(1)
    assert sorted(_ids(_claim(client))) == sorted(held)
    assert client.rate_keys(Q) == redisq.RateKeys(0, ())
    assert client.rate_limit(Q, key="k") == redisq.RateState(None, None)  # the hold is gone


def test_a_hold_by_a_job_without_a_key_holds_its_queue(client: Any, clock: TestClock) -> None:
    plain = client.enqueue(Q, 0).id
    keyed = client.enqueue(Q, 1, rate_key="k").id
    until = client.hold(Q, 1_000, id=plain)
    assert client.rate_limit(Q).next_at_ms == until == clock.now_ms + 1_000
    assert _claim(client) == []  # the whole queue, its keys too
    clock.advance(1_000)
    assert sorted(_ids(_claim(client))) == sorted([plain, keyed])


def test_a_hold_on_a_limited_key_outlasts_its_tokens_then_the_limit_holds(
    client: Any, clock: TestClock
) -> None:
    client.set_rate_limit(Q, "10/s", key="k")
    ids = [client.enqueue(Q, i, rate_key="k").id for i in range(4)]
    assert _ids(_claim(client)) == ids[:1]
    client.hold(Q, 2_000, key="k")
    assert client.hold(Q, 500, key="k") == clock.now_ms + 2_000  # never shortened
    assert client.rate_keys(Q).keys[0].limit == "10/s"
    clock.advance(1_999)
    assert _claim(client) == []
    clock.advance(1)
    assert _ids(_claim(client)) == ids[1:2]  # then one per 100 ms again, no burst
    clock.advance(99)
    assert _claim(client) == []
    clock.advance(1)
    assert _ids(_claim(client)) == ids[2:3]


def test_rate_keys_lists_a_bounded_few_soonest_first(client: Any, clock: TestClock) -> None:
    for i in range(12):
        client.enqueue(Q, i, rate_key=f"k{i:02}")
        client.hold(Q, 10_000 - i * 100, key=f"k{i:02}")
    keys = client.rate_keys(Q, 5)
    assert (keys.held, keys.more) == (12, 7)
    assert [k.key for k in keys.keys] == ["k11", "k10", "k09", "k08", "k07"]
    assert [k.until_ms - clock.now_ms for k in keys.keys] == [8_900, 9_000, 9_100, 9_200, 9_300]
    assert all(k.ready == 1 for k in keys.keys)
    clock.advance(9_050)  # two have passed
    assert client.rate_keys(Q, 100).held == 10
    with pytest.raises(InvalidArgument) as info:
        client.rate_keys(Q, 101)
    assert info.value.field == "limit"


def test_rate_key_and_group_must_agree_and_nothing_is_written(client: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.enqueue(Q, 1, rate_key="k", group="g")
    assert info.value.field == "rate_key"
    assert "group ('g')" in str(info.value)
    with pytest.raises(InvalidArgument) as many:
        client.enqueue_many(Q, [1, redisq.Spec(2, group="g")], rate_key="k")
    assert many.value.field == "payloads[1].rate_key"
    for bad in ("", "a{b", "x" * 129, 3):
        with pytest.raises(InvalidArgument) as shape:
            client.enqueue(Q, 1, rate_key=bad)
        assert shape.value.field == "rate_key"
    with pytest.raises(InvalidArgument) as deps:
        client.enqueue(Q, 1, rate_key="k", depends_on=["x"])
    assert deps.value.field == "rate_key"
    assert client.queues() == []
    # The same name for both is one key.
    job = client.enqueue(Q, 1, rate_key="k", group="k")
    assert client.concurrency(Q, job.id).group == "k"


def test_bad_key_holds_are_refused_and_nothing_is_written(client: Any) -> None:
    for field, kwargs in (("key", {"key": "a{b"}), ("id", {"id": ""}), ("ms", {"ms": 0})):
        with pytest.raises(InvalidArgument) as info:
            client.hold(Q, **{"ms": 1_000, **kwargs})
        assert info.value.field == field
    assert client.hold(Q, 1_000, key="k") == 0  # no such queue: nothing written
    assert client.queues() == []


def test_a_task_gives_its_rate_key_a_limit(url: str, prefix: str) -> None:
    clock = TestClock()
    app = redisq.App(url, prefix=prefix, clock=clock)

    @app.task(name="charge", queue=Q, rate_limit="2/s", rate_key="stripe")
    def charge() -> None: ...

    @app.task(name="plain", queue=Q, rate_limit="1/h")  # the queue's own: no clash
    def plain() -> None: ...

    with pytest.raises(InvalidArgument) as clash:
        app.task(name="other", queue=Q, rate_limit="3/s", rate_key="stripe")(lambda: None)
    assert clash.value.field == "rate_limit"
    assert app.key_rate_limits() == {(Q, "stripe"): "2/s"}
    assert app.rate_limits() == {Q: "1/h"}
    app.declare_rate_limits()
    store = app.store
    assert store.rate_limit(Q, key="stripe").limit == "2/s"
    assert store.rate_limit(Q).limit == "1/h"
    ids = [charge.enqueue().id for _ in range(2)]
    other = charge.options(rate_key="paypal").enqueue().id
    assert store.concurrency(Q, ids[0]).group == "stripe"
    assert store.concurrency(Q, other).group == "paypal"
    with pytest.raises(InvalidArgument) as both:
        charge.options(group="tenant").enqueue()
    assert both.value.field == "rate_key"
    app.close()


@pytest.mark.cluster
def test_rate_keys_on_the_local_cluster(cluster_url: str, prefix: str) -> None:
    # Every structure of a key is a key of its queue, under its hash tag: queues on different
    # shards each keep their keys' limits and holds.
    clock = TestClock()
    store = redisq.connect(cluster_url, prefix=prefix, clock=clock)
    queues = [f"q{i}" for i in range(4)]
    for q in queues:
        store.set_rate_limit(q, "2/s", key="k")
        store.enqueue_many(q, [1, 2], rate_key="k")
        store.enqueue_many(q, [1, 2], rate_key="held")
        store.hold(q, 1_000, key="held")
    for q in queues:
        assert len(store.claim(q, worker=W, count=10)) == 1  # one token of k, held waits
        keys = store.rate_keys(q)
        assert (keys.held, [k.key for k in keys.keys]) == (2, ["k", "held"])
    clock.advance(1_000)
    for q in queues:
        assert len(store.claim(q, worker=W, count=10)) == 3  # k's next token, held's two
    store.close()
