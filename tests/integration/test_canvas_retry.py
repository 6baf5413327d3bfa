"""A client retry of a whole workflow's enqueue (issue 12, point 5): the script call that
creates the jobs of a queue runs twice on the server (its first reply is held back past the
socket timeout by a proxy, and redis-py re-sends it, as in test_dependencies_retry.py): each
job and each link is created once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redisq
from redisq import JobState
from redisq.keys import QueueKeys
from tests.support.proxy import TcpProxy
from tests.support.resend import SOCKET_TIMEOUT, ran_twice

Q = "retried"


@pytest.fixture
def app(proxy: TcpProxy, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(proxy.url, prefix=prefix, socket_timeout=SOCKET_TIMEOUT)
    yield made
    made.close()


def _tasks(app: redisq.App) -> Any:
    @app.task(queue=Q, name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(queue=Q, name="total")
    def total(xs: list[int]) -> int:
        return sum(xs)

    return add, total


@pytest.mark.parametrize("shape", ["chain", "chord"])
def test_a_re_sent_workflow_enqueue_creates_nothing_twice(
    app: redisq.App, proxy: TcpProxy, direct: redis.Redis, prefix: str, shape: str
) -> None:
    add, total = _tasks(app)
    if shape == "chain":
        flow: Any = redisq.chain(add.s(1, 2), add.s(3), add.s(4))
        waiting, ready = 2, 1
    else:
        flow = redisq.chord([add.s(i, i) for i in range(10)], total.s())
        waiting, ready = 1, 10
    app.store.enqueue(Q, None, id="first")  # the queue is registered: one script call follows
    with ran_twice(proxy, direct):
        ref = flow.enqueue()
    k = QueueKeys.build(prefix, Q)
    assert direct.hget(k.meta, "enqueued") == str(1 + waiting + ready).encode()
    assert direct.zcard(k.waiting) == waiting
    assert direct.zcard(k.ready) == ready + 1
    assert direct.hlen(k.jobs) == 1 + waiting + ready
    # Every link once: each waiting job lists each parent once, each parent the child once.
    last = ref.refs[-1] if shape == "chain" else ref.callback
    parents = direct.hget(k.deps, last.id).decode().split("\n")[1:]  # type: ignore[union-attr]
    assert len(parents) == len(set(parents)) == (1 if shape == "chain" else 10)
    for p in parents:
        assert direct.smembers(k.deps_prefix + "c/" + p) == {last.id.encode()}
    # A whole retry of the enqueue (the caller's own, after a timeout) changes nothing more.
    again = flow.enqueue()
    assert [r.id for r in again.refs] == [r.id for r in ref.refs]
    assert direct.hget(k.meta, "enqueued") == str(1 + waiting + ready).encode()
    assert app.store.counts(Q)[JobState.WAITING] == waiting
