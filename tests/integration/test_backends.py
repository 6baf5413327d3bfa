"""How redisq reaches its server: URL schemes, TLS, ACL users, server checks, lost caches.

Every way in runs a real transition, and every failure of the connection itself must reach
the caller as redis-py raised it (DESIGN section 4: connection errors pass through unchanged).
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

import redisq
from redisq import JobState
from tests.support.proxy import TlsTerminatingProxy, tls_proxy
from tests.support.servers import LOOPBACK, ServerProcess, free_port
from tests.support.tls import make_tls_files

QUEUE = "jobs"
ACL_USER = ["--user", "alice", "on", ">s3cret", "~*", "&*", "+@all", "--user", "default", "off"]
SOCKET = "redis.sock"  # relative: the server runs in its own folder

MakeServer = Callable[..., ServerProcess]


def _round_trip(store: redisq.Store) -> None:
    """Enqueue, claim and ack one job, checking each step."""
    job = store.enqueue(QUEUE, {"n": 1}, id="j1")
    assert job.state is JobState.READY
    (claimed,) = store.claim(QUEUE, worker="w1")
    assert (claimed.id, claimed.payload, claimed.state) == ("j1", {"n": 1}, JobState.LEASED)
    done = store.ack(claimed, result="ok")
    assert done.state is JobState.COMPLETED
    stored = store.get(QUEUE, "j1")
    assert stored is not None
    assert (stored.state, stored.result) == (JobState.COMPLETED, "ok")


async def _async_round_trip(store: redisq.AsyncStore) -> None:
    job = await store.enqueue(QUEUE, {"n": 1}, id="j1")
    assert job.state is JobState.READY
    (claimed,) = await store.claim(QUEUE, worker="w1")
    done = await store.ack(claimed, result="ok")
    assert done.state is JobState.COMPLETED
    stored = await store.get(QUEUE, "j1")
    assert stored is not None
    assert (stored.state, stored.result) == (JobState.COMPLETED, "ok")


def _assert_from_redis_py(exc: BaseException, expected: type[BaseException]) -> None:
    """The error is redis-py's own, not wrapped into (or mixed with) redisq's tree."""
    assert type(exc) is expected
    assert not isinstance(exc, redisq.RedisqError)


# ----------------------------------------------------------------------------------------- TLS


@pytest.fixture
def tls(real_server: ServerProcess, tmp_path: Path) -> Iterator[tuple[TlsTerminatingProxy, str]]:
    """A TLS-terminating proxy in front of the real server, and the CA file to trust."""
    proxy, ca_file = tls_proxy(real_server.host, real_server.port, tmp_path)
    with proxy:
        yield proxy, ca_file


def test_rediss_with_the_ca(
    tls: tuple[TlsTerminatingProxy, str], real_url: str, prefix: str
) -> None:
    proxy, ca_file = tls
    assert proxy.url.startswith("rediss://")
    store = redisq.connect(proxy.url, prefix=prefix, ssl_ca_certs=ca_file)
    try:
        _round_trip(store)
    finally:
        store.close()
    assert proxy.accepted >= 1
    assert proxy.tls_failures == 0


def test_rediss_without_verification(
    tls: tuple[TlsTerminatingProxy, str], real_url: str, prefix: str
) -> None:
    proxy, _ = tls
    store = redisq.connect(proxy.url, prefix=prefix, ssl_cert_reqs="none", ssl_check_hostname=False)
    try:
        _round_trip(store)
    finally:
        store.close()


def test_rediss_async(tls: tuple[TlsTerminatingProxy, str], real_url: str, prefix: str) -> None:
    proxy, ca_file = tls

    async def main() -> None:
        async with redisq.connect_async(proxy.url, prefix=prefix, ssl_ca_certs=ca_file) as store:
            await _async_round_trip(store)

    asyncio.run(main())


def test_rediss_with_a_wrong_ca_fails_as_redis_py_does(
    tls: tuple[TlsTerminatingProxy, str], real_url: str, prefix: str, tmp_path: Path
) -> None:
    proxy, _ = tls
    other = tmp_path / "other-ca"
    other.mkdir()
    wrong_ca = make_tls_files(other).ca_file
    store = redisq.connect(proxy.url, prefix=prefix, ssl_ca_certs=wrong_ca)
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate") as caught:
            store.enqueue(QUEUE, 1)
    finally:
        store.close()
    _assert_from_redis_py(caught.value, redis.exceptions.ConnectionError)
    assert proxy.tls_failures >= 1


# ------------------------------------------------------------------------------ ACL and unix


@pytest.fixture
def acl_server(real_backend: str, make_server: MakeServer) -> ServerProcess:
    """A private server where only alice (password s3cret) may log in; it has a unix socket."""
    return make_server(
        real_backend, extra_args=[*ACL_USER, "--unixsocket", SOCKET, "--unixsocketperm", "700"]
    )


def test_acl_user_in_the_url(acl_server: ServerProcess, prefix: str) -> None:
    store = redisq.connect(f"redis://alice:s3cret@{LOOPBACK}:{acl_server.port}", prefix=prefix)
    try:
        _round_trip(store)
        assert store.queues() == [QUEUE]
    finally:
        store.close()


def test_acl_user_async(acl_server: ServerProcess, prefix: str) -> None:
    async def main() -> None:
        url = f"redis://alice:s3cret@{LOOPBACK}:{acl_server.port}"
        async with redisq.connect_async(url, prefix=prefix) as store:
            await _async_round_trip(store)

    asyncio.run(main())


@pytest.mark.parametrize(
    "credentials", ["alice:wrong@", "bob:s3cret@", ""], ids=["wrong-password", "no-user", "none"]
)
def test_acl_refusal_is_redis_pys_authentication_error(
    acl_server: ServerProcess, prefix: str, credentials: str
) -> None:
    store = redisq.connect(f"redis://{credentials}{LOOPBACK}:{acl_server.port}", prefix=prefix)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError) as caught:
            store.enqueue(QUEUE, 1)
    finally:
        store.close()
    _assert_from_redis_py(caught.value, redis.exceptions.AuthenticationError)


def test_unix_socket(acl_server: ServerProcess, prefix: str) -> None:
    path = acl_server.dir / SOCKET
    assert path.is_socket()
    store = redisq.connect(f"unix://{path}?username=alice&password=s3cret", prefix=prefix)
    try:
        _round_trip(store)
    finally:
        store.close()
    # The job went to the same server the TCP port serves
    tcp = redisq.connect(f"redis://alice:s3cret@{LOOPBACK}:{acl_server.port}", prefix=prefix)
    try:
        job = tcp.get(QUEUE, "j1")
        assert job is not None
        assert job.state is JobState.COMPLETED
    finally:
        tcp.close()


# ------------------------------------------------------------------------ server config checks


@pytest.fixture
def lru_server(real_backend: str, make_server: MakeServer) -> ServerProcess:
    """A private server that may evict any key under memory pressure."""
    return make_server(real_backend, extra_args=["--maxmemory-policy", "allkeys-lru"])


def test_eviction_policy_warns_on_first_use(lru_server: ServerProcess, prefix: str) -> None:
    store = redisq.connect(lru_server.url, prefix=prefix)
    try:
        # When the first call reaches a server that may evict queue keys
        with pytest.warns(redisq.ServerConfigWarning, match="allkeys-lru") as caught:
            store.enqueue(QUEUE, 1)
        assert len(caught) == 1

        # Then it warned once; later calls do not warn again
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            store.enqueue(QUEUE, 2)
            assert store.counts(QUEUE)[JobState.READY] == 2
    finally:
        store.close()


def test_eviction_policy_warns_async(lru_server: ServerProcess, prefix: str) -> None:
    async def main() -> None:
        async with redisq.connect_async(lru_server.url, prefix=prefix) as store:
            with pytest.warns(redisq.ServerConfigWarning, match="allkeys-lru"):
                await store.counts(QUEUE)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                await store.enqueue(QUEUE, 1)

    asyncio.run(main())


def test_eviction_policy_warning_points_at_the_caller(
    lru_server: ServerProcess, prefix: str
) -> None:
    store = redisq.connect(lru_server.url, prefix=prefix)
    try:
        with pytest.warns(redisq.ServerConfigWarning) as caught:
            store.enqueue(QUEUE, 1)
    finally:
        store.close()
    # The warning is attributed to the line that called redisq, not to redisq's internals
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_eviction_policy_check_can_be_turned_off(lru_server: ServerProcess, prefix: str) -> None:
    store = redisq.connect(lru_server.url, prefix=prefix, check_server=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _round_trip(store)
    finally:
        store.close()


def test_noeviction_does_not_warn(real_url: str, prefix: str) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _round_trip(store)
    finally:
        store.close()


# -------------------------------------------------------------------------------- memory://


def _memory_url() -> str:
    return f"memory://backends-{uuid.uuid4().hex[:12]}"


def test_memory_stores_of_one_name_share_data(prefix: str) -> None:
    url = _memory_url()
    first = redisq.connect(url, prefix=prefix)
    second = redisq.connect(url, prefix=prefix)
    elsewhere = redisq.connect(_memory_url(), prefix=prefix)

    first.enqueue(QUEUE, "shared", id="j1")
    (claimed,) = second.claim(QUEUE, worker="w2")
    assert (claimed.id, claimed.payload) == ("j1", "shared")
    first.ack(claimed)
    job = second.get(QUEUE, "j1")
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert first.queues() == second.queues() == [QUEUE]

    # Another name is another server
    assert elsewhere.get(QUEUE, "j1") is None
    assert elsewhere.queues() == []
    assert elsewhere.claim(QUEUE, worker="w3") == []


def test_memory_is_shared_between_sync_and_async(prefix: str) -> None:
    url = _memory_url()
    sync_store = redisq.connect(url, prefix=prefix)
    sync_store.enqueue(QUEUE, "from sync", id="s1")

    async def main() -> list[redisq.Job]:
        async with redisq.connect_async(url, prefix=prefix) as store:
            claimed = await store.claim(QUEUE, worker="async")
            await store.enqueue(QUEUE, "from async", id="a1")
            return claimed

    (claimed,) = asyncio.run(main())
    assert (claimed.id, claimed.payload) == ("s1", "from sync")
    # The async store's lease and its enqueue are visible to the sync store
    assert sync_store.ack(claimed).state is JobState.COMPLETED
    job = sync_store.get(QUEUE, "a1")
    assert job is not None
    assert job.payload == "from async"


def test_memory_names_are_isolated_for_async(prefix: str) -> None:
    async def main() -> None:
        async with (
            redisq.connect_async(_memory_url(), prefix=prefix) as one,
            redisq.connect_async(_memory_url(), prefix=prefix) as other,
        ):
            await one.enqueue(QUEUE, 1, id="j1")
            assert await other.get(QUEUE, "j1") is None
            assert await other.counts(QUEUE) == dict.fromkeys(JobState, 0)

    asyncio.run(main())


# ------------------------------------------------------------------- lazy connects, pass-through


def test_connect_async_is_a_plain_function_that_connects_lazily() -> None:
    assert not inspect.iscoroutinefunction(redisq.connect_async)
    closed = f"redis://{LOOPBACK}:{free_port()}"

    # Connecting to a port nobody listens on does not fail yet
    store = redisq.connect_async(closed, prefix="lazy")
    assert isinstance(store, redisq.AsyncStore)
    assert not inspect.isawaitable(store)

    async def main() -> BaseException:
        try:
            with pytest.raises(redis.exceptions.ConnectionError) as caught:
                await store.enqueue(QUEUE, 1)
            return caught.value
        finally:
            await store.close()

    # The first call raises redis-py's error, unchanged
    _assert_from_redis_py(asyncio.run(main()), redis.exceptions.ConnectionError)


def test_connect_is_lazy_too() -> None:
    store = redisq.connect(f"redis://{LOOPBACK}:{free_port()}", prefix="lazy")
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            store.claim(QUEUE, worker="w1")
    finally:
        store.close()
    _assert_from_redis_py(caught.value, redis.exceptions.ConnectionError)


@pytest.fixture
def private_server(real_backend: str, make_server: MakeServer) -> ServerProcess:
    """A private server of the backend's flavour, to stop, pause or restart."""
    return make_server(real_backend)


def test_stopped_server_raises_redis_pys_connection_error(
    private_server: ServerProcess, prefix: str
) -> None:
    store = redisq.connect(private_server.url, prefix=prefix)
    try:
        job = store.enqueue(QUEUE, 1)
        private_server.stop()
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            store.enqueue(QUEUE, 2)
        _assert_from_redis_py(caught.value, redis.exceptions.ConnectionError)
        with pytest.raises(redis.exceptions.ConnectionError):
            store.get(QUEUE, job.id)
        with pytest.raises(redis.exceptions.ConnectionError):
            store.counts()
    finally:
        store.close()


def test_stopped_server_raises_redis_pys_connection_error_async(
    private_server: ServerProcess, prefix: str
) -> None:
    async def main() -> BaseException:
        async with redisq.connect_async(private_server.url, prefix=prefix) as store:
            await store.enqueue(QUEUE, 1)
            private_server.stop()
            with pytest.raises(redis.exceptions.ConnectionError) as caught:
                await store.claim(QUEUE, worker="w1")
            return caught.value

    _assert_from_redis_py(asyncio.run(main()), redis.exceptions.ConnectionError)


def test_unresponsive_server_raises_redis_pys_timeout_error(
    private_server: ServerProcess, prefix: str
) -> None:
    store = redisq.connect(private_server.url, prefix=prefix, socket_timeout=0.2)
    try:
        store.enqueue(QUEUE, 1)
        private_server.pause()
        try:
            with pytest.raises(redis.exceptions.TimeoutError) as caught:
                store.claim(QUEUE, worker="w1")
        finally:
            private_server.resume()
        _assert_from_redis_py(caught.value, redis.exceptions.TimeoutError)
    finally:
        store.close()


# ------------------------------------------------------------------------- lost script cache


def _flush_scripts(server: ServerProcess) -> None:
    with server.client() as client:
        client.script_flush()


def test_script_flush_is_survived(real_server: ServerProcess, real_url: str, prefix: str) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    try:
        steps: list[Callable[[], Any]] = [
            lambda: store.enqueue(QUEUE, 1, id="j1"),
            lambda: store.counts(),  # a pipelined read
            lambda: store.list(),
            lambda: store.find("j1"),
            lambda: store.claim(QUEUE, worker="w1"),
        ]
        results = []
        for step in steps:
            _flush_scripts(real_server)
            results.append(step())
        (claimed,) = results[-1]
        _flush_scripts(real_server)
        assert store.ack(claimed).state is JobState.COMPLETED
        assert results[1][JobState.READY] == 1
        assert [j.id for j in results[2]] == ["j1"]
        assert results[3] is not None
    finally:
        store.close()


def test_script_flush_is_survived_async(
    real_server: ServerProcess, real_url: str, prefix: str
) -> None:
    async def main() -> None:
        async with redisq.connect_async(real_url, prefix=prefix) as store:
            _flush_scripts(real_server)
            await store.enqueue(QUEUE, 1, id="j1")
            _flush_scripts(real_server)
            assert (await store.counts())[JobState.READY] == 1
            _flush_scripts(real_server)
            (claimed,) = await store.claim(QUEUE, worker="w1")
            _flush_scripts(real_server)
            assert (await store.ack(claimed)).state is JobState.COMPLETED

    asyncio.run(main())


def test_server_restart_is_survived(private_server: ServerProcess, prefix: str) -> None:
    store = redisq.connect(private_server.url, prefix=prefix)
    try:
        store.enqueue(QUEUE, "before", id="before")

        # When the server restarts (an empty script cache, and no data: nothing is persisted)
        private_server.restart()

        # Then the next calls work
        _round_trip(store)
        assert store.counts(QUEUE)[JobState.COMPLETED] == 1
        assert store.get(QUEUE, "before") is None
    finally:
        store.close()


def test_queue_registry_survives_restart(private_server: ServerProcess, prefix: str) -> None:
    store = redisq.connect(private_server.url, prefix=prefix)
    try:
        # Given a store that enqueued to a queue before the server lost its data
        store.enqueue(QUEUE, "before", id="before")
        private_server.restart()

        # When the same store enqueues to that queue again
        store.enqueue(QUEUE, "after", id="after")

        # Then the queue is known again: listed, counted and searched
        assert store.queues() == [QUEUE]
        assert store.counts()[JobState.READY] == 1
        assert [j.id for j in store.list()] == ["after"]
        found = store.find("after")
        assert found is not None
        assert found.payload == "after"
    finally:
        store.close()


def test_server_restart_is_survived_async(private_server: ServerProcess, prefix: str) -> None:
    async def main() -> None:
        async with redisq.connect_async(private_server.url, prefix=prefix) as store:
            await store.enqueue(QUEUE, "before", id="before")
            private_server.restart()
            await _async_round_trip(store)
            assert (await store.counts(QUEUE))[JobState.COMPLETED] == 1

    asyncio.run(main())


def test_a_refused_reply_mid_pipeline_leaves_the_connection_usable(
    real_url: str, prefix: str
) -> None:
    # Given three queues, the middle one written by another schema version
    store = redisq.connect(real_url, prefix=prefix)
    try:
        for queue in ("a", "b", "c"):
            store.enqueue(queue, queue)
        store.redis.hset(f"{{{prefix}:b}}:meta", "schema", "999")
        # When a pipelined read over every queue meets the refusal
        with pytest.raises(redisq.SchemaVersionError):
            store.counts()
        # Then every reply was read: the next calls on the same connection get their own
        assert store.counts("c")[JobState.READY] == 1
        assert [j.payload for j in store.claim("a", worker="w")] == ["a"]
    finally:
        store.close()
