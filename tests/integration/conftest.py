"""Fixtures of the behaviour suite: one suite, two clients (STYLE T4).

`client` runs every test body twice per backend: on the sync Store and on the AsyncStore,
whose coroutines an adapter drives on a private event loop, so the same lines exercise both.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redisq
from redisq._core.scripts import load_all
from tests.support.clock import TestClock
from tests.support.proxy import TcpProxy
from tests.support.resend import ran_twice
from tests.support.servers import ServerProcess


class AsyncAdapter:
    """Present an AsyncStore with the sync Store's calling convention."""

    def __init__(self, store: redisq.AsyncStore) -> None:
        self._store = store
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if inspect.iscoroutinefunction(attr):

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._loop.run_until_complete(attr(*args, **kwargs))

            return call
        return attr

    def close(self) -> None:
        self._loop.run_until_complete(self._store.close())
        self._loop.close()


@pytest.fixture
def clock() -> TestClock:
    """A test clock shared by the `client` store and the test."""
    return TestClock()


@pytest.fixture(params=["sync", "async"])
def client_factory(
    request: pytest.FixtureRequest, url: str, prefix: str, clock: TestClock
) -> Iterator[Callable[..., Any]]:
    """Make stores of the parametrised flavour on `url` with `prefix` and the test clock."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("prefix", prefix)
        options.setdefault("clock", clock)
        store: Any
        if request.param == "sync":
            store = redisq.connect(url, **options)
        else:
            store = AsyncAdapter(redisq.connect_async(url, **options))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def client(client_factory: Callable[..., Any]) -> Any:
    """A store (sync, or async behind the adapter) on the test clock."""
    return client_factory()


@pytest.fixture
def raw(url: str, prefix: str) -> Iterator[Any]:
    """A plain sync redis-py client on the same server, for looking at keys directly."""
    store = redisq.connect(url, prefix=prefix)
    yield store.redis
    store.close()


# ------------------------------------------------------------ client retries (the *_retry tests)


@pytest.fixture
def proxy(real_server: ServerProcess, make_proxy: Callable[..., TcpProxy]) -> TcpProxy:
    """A fault-injection proxy in front of the real server."""
    return make_proxy(real_server.port)


@pytest.fixture
def direct(real_server: ServerProcess) -> Iterator[redis.Redis]:
    """A plain client to the server (not through the proxy), with every script loaded.

    Loading the scripts up front means no EVALSHA of the test meets NOSCRIPT, so the
    ``cmdstat_evalsha`` counter moves exactly once per execution.
    """
    with real_server.client() as client:
        for spec in load_all().values():
            client.script_load(spec.source)
        yield client


@pytest.fixture
def twice(proxy: TcpProxy, direct: redis.Redis) -> Callable[..., Any]:
    """``with twice(): store.op(...)``: the op's script runs twice, its first reply lost
    (``twice(scripts=n)`` for an op of n script calls; tests/support/resend.py)."""
    return functools.partial(ran_twice, proxy, direct)
