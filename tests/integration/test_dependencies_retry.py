"""A client retry of each script that dependencies changed or added runs it twice on the
server (the first reply is held back past the socket timeout by a proxy, as in
test_client_retry.py): each transition must still happen once, and release nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redisq
from redisq import JobState
from redisq.keys import QueueKeys
from tests.support.proxy import TcpProxy
from tests.support.resend import SOCKET_TIMEOUT

Q = "retried"

Twice = Callable[..., Any]


@pytest.fixture
def store(proxy: TcpProxy, prefix: str) -> Iterator[redisq.Store]:
    connected = redisq.connect(proxy.url, prefix=prefix, socket_timeout=SOCKET_TIMEOUT)
    connected.counts(Q)
    yield connected
    connected.close()


def _zset(direct: redis.Redis, key: str) -> list[str]:
    return [m.decode() for m in direct.zrange(key, 0, -1)]  # type: ignore[union-attr]


def _keys(prefix: str, queue: str = Q) -> QueueKeys:
    return QueueKeys.build(prefix, queue)


def test_enqueue_with_depends_on_is_created_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue(Q, "p", id="p")
    with twice(scripts=1):
        child = store.enqueue(Q, "c", id="c", depends_on=["p"])
    assert child.state is JobState.WAITING
    k = _keys(prefix)
    assert _zset(direct, k.waiting) == ["c"]
    assert direct.scard(k.deps_prefix + "c/p") == 1
    assert direct.hget(k.meta, "enqueued") == b"2"


def test_a_re_sent_ack_releases_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue(Q, "p1", id="p1")
    store.enqueue(Q, "p2", id="p2")
    store.enqueue(Q, "c", id="c", depends_on=["p1", "p2"])
    first, second = store.claim(Q, worker="w", count=2, lease_ms=60_000)
    with twice():
        store.ack(first)
    k = _keys(prefix)
    assert _zset(direct, k.waiting) == ["c"]
    assert direct.hget(k.deps, "c") == b"fail\np2"
    with twice():
        store.ack(second)
    assert _zset(direct, k.ready) == ["c"]
    assert _zset(direct, k.waiting) == []
    assert direct.hget(k.deps, "c") is None


def test_a_re_sent_claim_and_ack_releases_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue(Q, "p", id="p")
    store.enqueue(Q, "c", id="c", depends_on=["p"])
    with twice():
        done = store.claim_and_ack(Q)
    assert done is not None
    assert done.id == "p"
    assert _zset(direct, _keys(prefix).ready) == ["c"]


@pytest.mark.parametrize("how", ["nack", "cancel", "delete"])
def test_a_re_sent_end_of_a_parent_cancels_the_child_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice, how: str
) -> None:
    store.enqueue(Q, "p", id="p", max_attempts=1)
    store.enqueue(Q, "c", id="c", depends_on=["p"])
    store.enqueue(Q, "d", id="d", depends_on=["c"], on_parent_failure="continue")
    (job,) = store.claim(Q, worker="w", lease_ms=60_000)
    with twice():
        if how == "nack":
            store.nack(job, dead=True)
        elif how == "cancel":
            store.cancel(Q, "p")
        else:
            store.delete(Q, "p")
    k = _keys(prefix)
    assert sorted(_zset(direct, k.cancelled)) == (["c", "p"] if how == "cancel" else ["c"])
    # The cascade waits on the todo list once; reap then releases d (policy continue) once.
    assert direct.lrange(k.deps_todo, 0, -1) == [b"cancelled\nc"]
    store.reap(Q)
    assert _zset(direct, k.ready) == ["d"]


def test_a_re_sent_reap_drains_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue(Q, "p", id="p")
    for i in range(150):
        store.enqueue(Q, i, id=f"k{i:03d}", depends_on=["p"])
    (job,) = store.claim(Q, worker="w", lease_ms=60_000)
    store.ack(job)
    k = _keys(prefix)
    assert direct.zcard(k.ready) == 100
    with twice():
        store.reap(Q, limit=100)
    assert direct.zcard(k.ready) == 150
    assert direct.zcard(k.waiting) == 0
    assert direct.llen(k.deps_todo) == 0


def test_a_re_sent_link_across_queues_links_once(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    store.enqueue("up", "a", id="a")
    store.enqueue(Q, "other", id="other")  # the queue is registered (no pipeline below)
    store.enqueue(Q, "warm", id="warm", depends_on=[("up", "a")])  # connections opened
    with twice(scripts=2):
        child = store.enqueue(Q, "c", id="c", depends_on=[("up", "a")])
    assert child.state is JobState.WAITING
    up = _keys(prefix, "up")
    assert direct.smembers(up.deps_prefix + "x/a") == {f"{Q}\nc".encode(), f"{Q}\nwarm".encode()}
    (job,) = store.claim("up", worker="w")
    store.ack(job)
    store.reap("up")
    assert _zset(direct, _keys(prefix).ready) == ["other", "warm", "c"]
    assert direct.zcard(up.deps_prefix + "outbox") == 0
