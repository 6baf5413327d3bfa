"""Fixtures of the behaviour suite: one suite, two clients (STYLE T4).

`client` runs every test body twice per backend: on the sync Store and on the AsyncStore,
whose coroutines an adapter drives on a private event loop, so the same lines exercise both.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import redisq
from tests.support.clock import TestClock


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
