"""The task registry: `App` and its ``@app.task`` decorator.

::

    app = redisq.App("redis://localhost:6379")

    @app.task(queue="emails", max_attempts=5)
    def send_welcome(user_id: int) -> None: ...

    ref = send_welcome.enqueue(42)                 # a job: {"args": [42], "kwargs": {}}
    send_welcome.options(delay_ms=60_000).enqueue(43)
    ref.result(timeout=10)                         # wait until a worker finished it

Workers (`redisq.Worker(app)`) look tasks up by the job's name.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar, overload

from redisq._async.store import AsyncStore
from redisq._connect import connect, connect_async
from redisq._core.validate import check_optional_text
from redisq._sync.store import Store
from redisq.backoff import BackoffLike
from redisq.errors import InvalidArgument
from redisq.keys import check_prefix
from redisq.task import ExceptionTypes, Task, TaskSettings

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")

# ------------------------------------------------------------------------------------ App


class App:
    """A registry of tasks and the connection settings of their store.

    The stores open lazily: `store` (sync) on first use, and one `AsyncStore` per event loop
    for the async methods (call `await app.aclose()` before your event loop ends).

    Args:
        url: as for `redisq.connect` (``redis://...``, ``memory://`` by default).
        prefix: the key prefix of every queue.
        **connect_options: passed to `redisq.connect` / `redisq.connect_async` (retention,
            payload_limit, socket_timeout, clock in tests...).
    """

    def __init__(
        self, url: str = "memory://", *, prefix: str = "redisq", **connect_options: Any
    ) -> None:
        check_prefix(prefix)
        self.url = url
        self.prefix = prefix
        self.connect_options = dict(connect_options)
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._astores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncStore] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<redisq.App {self.url!r} prefix={self.prefix!r} tasks={len(self._tasks)}>"

    # -------------------------------------------------------------------------- stores

    def connect(self) -> Store:
        """Open a new sync Store with the app's settings (the caller closes it)."""
        return connect(self.url, prefix=self.prefix, **self.connect_options)

    def connect_async(self) -> AsyncStore:
        """Open a new AsyncStore with the app's settings (the caller closes it)."""
        return connect_async(self.url, prefix=self.prefix, **self.connect_options)

    @property
    def store(self) -> Store:
        """The app's sync Store, opened on first use; shared by threads."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self.connect()
                store = self._store
        return store

    @property
    def async_store(self) -> AsyncStore:
        """The app's AsyncStore for the running event loop, opened on first use.

        Raises:
            RuntimeError: no event loop is running in this thread.
        """
        loop = asyncio.get_running_loop()
        store = self._astores.get(loop)
        if store is None:
            store = self._astores[loop] = self.connect_async()
        return store

    def close(self) -> None:
        """Close the sync store (it reopens on next use)."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    async def aclose(self) -> None:
        """Close the AsyncStore of the running event loop (it reopens on next use)."""
        store = self._astores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.close()

    # ---------------------------------------------------------------------------- tasks

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks by name (read-only)."""
        return MappingProxyType(self._tasks)

    @property
    def task_queues(self) -> list[str]:
        """The distinct queues of the registered tasks, in registration order."""
        return list(dict.fromkeys(t.queue for t in self._tasks.values()))

    def get_task(self, name: str) -> Task[Any, Any] | None:
        """Return the task registered under `name`, or None."""
        return self._tasks.get(name)

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 3,
        lease_ms: int = 30_000,
        timeout_ms: int | None = None,
        backoff: BackoffLike = None,
        priority: int = 0,
        retry_for: ExceptionTypes | None = None,
        non_retryable: ExceptionTypes = (),
        store_result: bool = False,
        result_ttl_ms: int | None = None,
    ) -> _Decorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 3,
        lease_ms: int = 30_000,
        timeout_ms: int | None = None,
        backoff: BackoffLike = None,
        priority: int = 0,
        retry_for: ExceptionTypes | None = None,
        non_retryable: ExceptionTypes = (),
        store_result: bool = False,
        result_ttl_ms: int | None = None,
    ) -> Task[Any, Any] | _Decorator:
        """Register a function (plain or ``async def``) as a task; usable bare or with options.

        Args:
            fn: the function, when used as ``@app.task`` without parentheses.
            name: the task name stored as the job's name (default ``module.qualname``).
            queue: the queue its jobs go to.
            max_attempts: runs allowed, counting the first (1 to 1000).
            lease_ms: the lease of each run; the worker renews it every lease_ms / 3.
            timeout_ms: hard time limit of one run: after it the worker stops renewing and
                fails the attempt (None = no limit).
            backoff: the retry delays (see `redisq.backoff`); None = exponential 1 s x2.
            priority: default priority of its jobs, in [-1000, 1000].
            retry_for: only these exception types are retried; others dead-letter the job.
            non_retryable: exception types that dead-letter the job at once.
            store_result: keep the return value on the completed job (`JobRef.result`).
            result_ttl_ms: with store_result, how long the result stays readable after the
                job completed, even once retention trimmed its record (None: the store's
                ``Retention.result_ttl_ms``, one day; 0: only as long as the record).

        Raises:
            InvalidArgument: an option is out of range, or the name is taken; nothing is
                registered.
        """
        options = TaskSettings.build(
            name=name,
            queue=queue,
            max_attempts=max_attempts,
            lease_ms=lease_ms,
            timeout_ms=timeout_ms,
            backoff=backoff,
            priority=priority,
            retry_for=retry_for,
            non_retryable=non_retryable,
            store_result=store_result,
            result_ttl_ms=result_ttl_ms,
        )

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            return self._register(function, options)

        if fn is not None:
            return register(fn)
        return register

    def _register(self, fn: Callable[..., Any], settings: TaskSettings) -> Task[Any, Any]:
        if not callable(fn):
            raise InvalidArgument("fn", "a function", fn)
        name = settings.name
        if name is None:
            module = getattr(fn, "__module__", None)
            qualname = getattr(fn, "__qualname__", None)
            if not module or not qualname:
                raise InvalidArgument("name", "given for a callable without a qualname", fn)
            name = check_optional_text("name", f"{module}.{qualname}")
        task: Task[Any, Any] = Task(self, fn, replace(settings, name=name))
        with self._lock:
            if name in self._tasks:
                raise InvalidArgument(
                    "name", "a task name not yet registered in this app (pass name=...)", name
                )
            self._tasks[name] = task
        return task


_Decorator = Callable[[Callable[..., Any]], "Task[Any, Any]"]
