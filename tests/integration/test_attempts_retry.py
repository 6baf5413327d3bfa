"""A client retry of a script that writes the attempt history (nack, cancel of a leased job)
runs it twice on the server (the first reply is held back past the socket timeout by a proxy,
as in test_client_retry.py): the attempt must still leave exactly one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redisq
from redisq import JobState
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


def _fields(direct: redis.Redis, prefix: str) -> list[bytes]:
    fields: list[bytes] = direct.hkeys(f"{{{prefix}:{Q}}}:jobs")  # type: ignore[assignment]
    return sorted(f for f in fields if b"\0" in f)


@pytest.mark.parametrize("dead", [False, True], ids=["retry", "dead"])
def test_a_resent_nack_leaves_one_entry(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice, dead: bool
) -> None:
    # Given a job that failed once already, on its second attempt of three
    store.enqueue(Q, "x", id="j1", max_attempts=3)
    (first,) = store.claim(Q, worker="w1")
    store.nack(first, error="first", delay_ms=0)
    (job,) = store.claim(Q, worker="w2")

    # When its nack is re-sent
    with twice():
        store.nack(job, error="second\n\nTraceback (most recent call last):\nE", dead=dead)

    # Then the attempt left one entry
    got = [(a.attempt, a.token, a.outcome, a.worker, a.error) for a in store.attempts(Q, "j1")]
    assert got == [
        (1, first.token, "retry", "w1", "first"),
        (2, job.token, "dead" if dead else "retry", "w2", "second"),
    ]
    assert _fields(direct, prefix) == [b"j1\0a0", b"j1\0a1"]
    stored = store.get(Q, "j1")
    assert stored is not None
    assert stored.state is (JobState.DEAD if dead else JobState.SCHEDULED)


def test_a_resent_cancel_of_a_leased_job_leaves_one_entry(
    store: redisq.Store, direct: redis.Redis, prefix: str, twice: Twice
) -> None:
    # Given a leased job
    store.enqueue(Q, "x", id="j1")
    (job,) = store.claim(Q, worker="w1")

    # When its cancel is re-sent
    with twice():
        assert store.cancel(Q, "j1") is True

    # Then the attempt left one entry, as cancelled
    got = [(a.attempt, a.token, a.outcome) for a in store.attempts(Q, "j1")]
    assert got == [(1, job.token, "cancelled")]
    assert _fields(direct, prefix) == [b"j1\0a0"]
