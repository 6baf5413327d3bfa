"""No write before a refusal (issue 9 point 5).

- `ack_many` and `renew_many` check every job (its queue, id and token) before the first
  script call, so a bad job anywhere in the list leaves the jobs of every queue untouched.
- `enqueue` adds the queue to the registry (`<prefix>:queues`, outside the queue's slot)
  before it writes the job: a user not allowed SADD (ACL) is refused with nothing written,
  so a caller that retries without an id cannot make a duplicate. A registered queue whose
  jobs never came (that refusal, or a key of the wrong type) reads as an empty queue
  everywhere: queues(), counts, list, find and `redisq stats`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis

import redisq
from redisq import InvalidArgument, JobState, RedisqError, WrongKeyType
from redisq.cli import main
from redisq.keys import QueueKeys
from tests.integration.test_hostile_keyspace import keyspace
from tests.support.servers import LOOPBACK, ServerProcess

MakeServer = Callable[..., ServerProcess]


def three_queues(client: Any) -> list[redisq.Job]:
    jobs = []
    for queue in ("qa", "qb", "qc"):
        client.enqueue(queue, queue)
        jobs += client.claim(queue, worker="w")
    return jobs


# A job of the last queue made unusable in each way a hand-built Job can be.
BAD_JOBS: dict[str, tuple[Callable[[redisq.Job], redisq.Job], str]] = {
    "queue-brace": (lambda j: replace(j, queue="bad{q"), "jobs[3].queue"),
    "queue-empty": (lambda j: replace(j, queue=""), "jobs[3].queue"),
    "queue-list": (lambda j: replace(j, queue=["qc"]), "jobs[3]"),  # type: ignore[arg-type]
    "id-none": (lambda j: replace(j, id=None), "jobs[3]"),  # type: ignore[arg-type]
    "id-surrogate": (lambda j: replace(j, id="a\ud800"), "jobs[3].id"),
    "token-bool": (lambda j: replace(j, token=True), "jobs[3].token"),
    "token-tuple": (lambda j: replace(j, token=(1,)), "jobs[3].token"),  # type: ignore[arg-type]
    "token-negative": (lambda j: replace(j, token=-1), "jobs[3].token"),
}


@pytest.mark.parametrize("op", ["ack_many", "renew_many"])
@pytest.mark.parametrize("bad", BAD_JOBS.values(), ids=BAD_JOBS.keys())
def test_a_bad_job_anywhere_refuses_the_whole_list(
    client: Any, raw: Any, prefix: str, op: str, bad: tuple[Callable[..., Any], str]
) -> None:
    make_bad, field = bad
    jobs = three_queues(client)
    listed = [*jobs, make_bad(jobs[2])]
    before = keyspace(raw, prefix)
    with pytest.raises(InvalidArgument) as info:
        getattr(client, op)(listed)
    assert info.value.field.startswith(field)
    assert keyspace(raw, prefix) == before
    assert [client.get(j.queue, j.id).state for j in jobs] == [JobState.LEASED] * 3


def test_ack_many_with_a_bad_queue_acks_nothing_then_the_good_list_acks(client: Any) -> None:
    jobs = three_queues(client)
    with pytest.raises(InvalidArgument, match=r"jobs\[1\]\.queue"):
        client.ack_many([jobs[0], replace(jobs[1], queue="q b "), jobs[2]])
    assert client.counts()[JobState.LEASED] == 3
    assert {j.state for j in client.ack_many(jobs)} == {JobState.COMPLETED}


# ------------------------------------------------------------------------- the registry


@pytest.fixture
def no_sadd(real_backend: str, make_server: MakeServer) -> str:
    """A private server with a user allowed everything but SADD; its URL with that user."""
    server = make_server(
        real_backend, extra_args=["--user", "nosadd", "on", ">pw", "~*", "&*", "+@all", "-sadd"]
    )
    return f"redis://nosadd:pw@{LOOPBACK}:{server.port}"


#: What a denied command raises: redis-py's error, or redisq's typed one naming the command.
DENIED = (redis.exceptions.NoPermissionError, RedisqError)


def test_enqueue_denied_the_registry_writes_nothing(no_sadd: str, prefix: str) -> None:
    store = redisq.connect(no_sadd, prefix=prefix)
    try:
        for _ in range(2):  # a caller retrying without an id
            with pytest.raises(DENIED, match=r"(?i)sadd"):
                store.enqueue("jobs", {"n": 1})
            with pytest.raises(DENIED, match=r"(?i)sadd"):
                store.enqueue_many("jobs", [1, 2, 3])
        assert keyspace(store.redis, prefix) == {}
    finally:
        store.close()


def test_enqueue_denied_the_registry_writes_nothing_async(no_sadd: str, prefix: str) -> None:
    async def main() -> None:
        async with redisq.connect_async(no_sadd, prefix=prefix) as store:
            for _ in range(2):
                with pytest.raises(DENIED, match=r"(?i)sadd"):
                    await store.enqueue("jobs", {"n": 1})

    asyncio.run(main())
    with redis.Redis.from_url(no_sadd) as raw:
        assert keyspace(raw, prefix) == {}


def test_the_registry_is_written_before_the_job(client: Any, raw: Any, prefix: str) -> None:
    # A key of the wrong type refuses the script: the queue is registered, no job written.
    keys = QueueKeys.build(prefix, "ghost")
    raw.set(keys.ready, "not a zset")
    with pytest.raises(WrongKeyType):
        client.enqueue("ghost", 1)
    assert raw.smembers(f"{prefix}:queues") == {b"ghost"}
    assert raw.exists(keys.jobs, keys.meta) == 0
    raw.delete(keys.ready)
    # Registered and empty reads as empty everywhere.
    assert client.queues() == []
    assert set(client.counts().values()) == {0}
    assert set(client.counts("ghost").values()) == {0}
    assert client.list() == []
    assert client.find("anything") is None
    # The next enqueue goes through, and the queue shows.
    job = client.enqueue("ghost", 2)
    assert client.queues() == ["ghost"]
    assert client.find(job.id) == job


def test_redisq_stats_does_not_show_a_registered_empty_queue(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with redisq.connect(real_url, prefix=prefix) as store:
        store.enqueue("real", 1)
        store.redis.sadd(f"{prefix}:queues", "ghost")
    capsys.readouterr()
    assert main(["stats", "--json", "--url", real_url, "--prefix", prefix]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document["queues"]) == ["real"]
    assert document["total"]["ready"] == 1


def test_a_client_whose_registered_queue_was_lost_registers_it_again(
    client: Any, raw: Any, prefix: str
) -> None:
    # The server lost the queue with the registry (a restart without persistence): the
    # script reports that it created the queue, and the client adds it again.
    client.enqueue("lost", 1)
    keys = QueueKeys.build(prefix, "lost")
    raw.delete(f"{prefix}:queues", keys.meta, keys.ready, keys.jobs, keys.wake)
    client.enqueue("lost", 2)
    assert raw.smembers(f"{prefix}:queues") == {b"lost"}
