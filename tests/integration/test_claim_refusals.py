"""A claim over several queues goes on past a queue that refuses it (issue 9, point 1).

A queue refuses a claim while it migrates (meta schema ``migrating:<n>``), when one of its keys
holds another type, or when an ACL denies its keys. The claim returns what the other queues
leased as a `redisq.Claimed` list whose ``refused`` names the refusing queues; only when every
queue refused does it raise (the first queue's error). Each test runs on every backend with
both clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

import redisq
from redisq import JobState, SchemaVersionError, WrongKeyType
from redisq._core.schema import SCHEMA_VERSION
from tests.support.servers import ServerProcess

MIGRATING = f"migrating:{SCHEMA_VERSION}"


def _meta(prefix: str, queue: str) -> str:
    return f"{{{prefix}:{queue}}}:meta"


def _leased(client: Any, queue: str) -> int:
    return int(client.counts(queue)[JobState.LEASED])


def test_a_migrating_queue_does_not_lose_the_jobs_leased_from_the_others(
    client: Any, raw: Any, prefix: str
) -> None:
    # Given b in the middle of a migration
    client.enqueue("b", "b1")
    raw.hset(_meta(prefix, "b"), "schema", MIGRATING)
    for n in range(3):  # each call starts the round at another queue
        client.enqueue_many("a", [f"a{n}", f"a{n}+"])
        client.enqueue("c", f"c{n}")
        # When a claim goes over all three queues
        jobs = client.claim(["a", "b", "c"], worker="w", count=10)
        # Then it returns what a and c leased, and says that b refused, with its error
        assert isinstance(jobs, redisq.Claimed)
        assert isinstance(jobs, list)
        assert sorted(j.payload for j in jobs) == [f"a{n}", f"a{n}+", f"c{n}"]
        assert all(j.state is JobState.LEASED for j in jobs)
        assert set(jobs.refused) == {"b"}
        assert isinstance(jobs.refused["b"], SchemaVersionError)
        assert jobs.refused["b"].found == MIGRATING
    # and nothing was leased that the caller did not get back
    assert _leased(client, "a") == 6
    assert _leased(client, "c") == 3
    raw.hset(_meta(prefix, "b"), "schema", SCHEMA_VERSION)
    assert [j.payload for j in client.claim(["a", "b", "c"], worker="w", count=10)] == ["b1"]


def test_no_refusal_gives_an_empty_refused_and_the_one_queue_case_raises(
    client: Any, raw: Any, prefix: str
) -> None:
    client.enqueue("a", 1)
    jobs = client.claim(["a", "b"], worker="w", count=5)
    assert [j.payload for j in jobs] == [1]
    assert jobs.refused == {}
    assert client.claim("a", worker="w").refused == {}
    # One queue alone that refuses raises, as before
    raw.hset(_meta(prefix, "b"), "schema", MIGRATING)
    with pytest.raises(SchemaVersionError):
        client.claim("b", worker="w")
    with pytest.raises(SchemaVersionError):
        client.claim(["b"], worker="w", wait_ms=50)


def test_when_every_queue_refuses_the_first_queues_error_is_raised(
    client: Any, raw: Any, prefix: str
) -> None:
    # Given b migrating and c's ready set of another type
    raw.hset(_meta(prefix, "b"), "schema", MIGRATING)
    raw.set(f"{{{prefix}:c}}:ready", "not a zset")
    for _ in range(2):  # whichever queue the round starts at
        with pytest.raises(SchemaVersionError):
            client.claim(["b", "c"], worker="w", count=3)
        with pytest.raises(WrongKeyType):
            client.claim(["c", "b"], worker="w", count=3)
    # A queue that answers (even with nothing) is not a refusal: no raise then
    jobs = client.claim(["b", "a", "c"], worker="w")
    assert jobs == []
    assert set(jobs.refused) == {"b", "c"}
    assert isinstance(jobs.refused["c"], WrongKeyType)


def test_a_waiting_claim_reports_refusals_and_returns_the_other_queues_jobs(
    client: Any, raw: Any, prefix: str
) -> None:
    # Given b migrating
    client.enqueue("b", "b1")
    raw.hset(_meta(prefix, "b"), "schema", MIGRATING)
    # When a waiting claim finds nothing in a: it waits, then reports b
    jobs = client.claim(["a", "b"], worker="w", count=2, wait_ms=100)
    assert jobs == []
    assert set(jobs.refused) == {"b"}
    # When a has work (also for the claim pipelined behind the wait, which this store
    # now starts with: its last claim of a and b came up short)
    client.enqueue("a", "a1")
    for _ in range(2):
        jobs = client.claim(["a", "b"], worker="w", count=2, wait_ms=2_000)
        if jobs:
            break
    assert [j.payload for j in jobs] == ["a1"]
    assert set(jobs.refused) <= {"b"}
    assert _leased(client, "a") == 1


def test_a_queue_an_acl_denies_is_refused_and_the_others_claimed(
    make_server: Callable[..., ServerProcess], real_backend: str, prefix: str
) -> None:
    # Given a user whose keys are those of queue a only (and the queue registry)
    server = make_server(real_backend)
    with server.client() as admin:
        admin.execute_command(
            "ACL", "SETUSER", "only_a", "on", ">pw", f"~{{{prefix}:a}}*", f"~{prefix}:*", "+@all"
        )
    owner = redisq.connect(server.url, prefix=prefix)
    owner.enqueue("a", "a1")
    owner.enqueue("b", "b1")
    url = server.url.replace("redis://", "redis://only_a:pw@")
    store = redisq.connect(url, prefix=prefix)
    try:
        # When that user claims from a and b
        jobs = store.claim(["b", "a"], worker="w", count=5)
        # Then a's job comes back and b is reported as refused (a denied command)
        assert [j.payload for j in jobs] == ["a1"]
        assert set(jobs.refused) == {"b"}
        error = jobs.refused["b"]
        assert isinstance(error, (redis.exceptions.NoPermissionError, redisq.RedisqError))
        # and b alone raises
        with pytest.raises((redis.exceptions.NoPermissionError, redisq.RedisqError)):
            store.claim("b", worker="w")
        assert owner.counts("b")[JobState.READY] == 1
    finally:
        store.close()
        owner.close()
