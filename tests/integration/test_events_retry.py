"""A client retry (redis-py re-sends a script whose reply was late) writes no second event and
no second completion signal (issue 13 point 2).

As in test_client_retry.py: a loopback proxy holds back exactly one reply past the socket
timeout, so the client re-sends the script, and each test checks that the script really ran
twice (EVALSHA calls and one reconnection).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redisq
from redisq.keys import QueueKeys
from tests.support.proxy import TcpProxy
from tests.support.resend import SOCKET_TIMEOUT, ran_twice

QUEUE = "retried"


@pytest.fixture
def store(proxy: TcpProxy, prefix: str) -> Iterator[redisq.Store]:
    connected = redisq.connect(proxy.url, prefix=prefix, socket_timeout=SOCKET_TIMEOUT)
    connected.set_events(QUEUE)
    connected.enqueue(QUEUE, 0, id="first")  # the queue's registration is done before the test
    (first,) = connected.claim(QUEUE, worker="w")
    connected.ack(first)
    yield connected
    connected.close()


def _kinds(direct: redis.Redis, prefix: str) -> list[str]:
    entries: Any = direct.xrange(QueueKeys.build(prefix, QUEUE).events)
    return [e[1][b"event"].decode() for e in entries if e[1][b"id"] != b"first"]


def test_a_re_sent_enqueue_claim_and_ack_write_each_event_once(
    store: redisq.Store, proxy: TcpProxy, direct: redis.Redis, prefix: str
) -> None:
    with ran_twice(proxy, direct):
        job = store.enqueue(QUEUE, 1, id="j1")
    with ran_twice(proxy, direct):
        (claimed,) = store.claim(QUEUE, worker="w")
    # A result waiter registered, as JobRef.result does before it blocks.
    assert store.wait_final(QUEUE, job.id, timeout_ms=1) is False
    with ran_twice(proxy, direct):
        store.ack(claimed, "r")
    assert _kinds(direct, prefix) == ["enqueued", "started", "completed"]
    assert direct.llen(QueueKeys.build(prefix, QUEUE).wait_prefix + "q" + job.id) == 1


def test_a_re_sent_cancel_or_nack_writes_its_event_once(
    store: redisq.Store, proxy: TcpProxy, direct: redis.Redis, prefix: str
) -> None:
    a = store.enqueue(QUEUE, 1, id="a")
    with ran_twice(proxy, direct):
        assert store.cancel(QUEUE, a.id)
    store.enqueue(QUEUE, 2, id="b")
    (b,) = store.claim(QUEUE, worker="w")
    with ran_twice(proxy, direct):
        store.nack(b, error="boom", delay_ms=0)
    assert _kinds(direct, prefix) == ["enqueued", "cancelled", "enqueued", "started", "retried"]
