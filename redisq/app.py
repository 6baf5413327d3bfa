"""The task registry: `App` and its ``@app.task`` decorator.

::

    app = redisq.App("redis://localhost:6379")

    @app.task(queue="emails", max_attempts=5)
    def send_welcome(user_id: int) -> None: ...

    ref = send_welcome.enqueue(42)                 # a job: {"args": [42], "kwargs": {}}
    send_welcome.options(delay_ms=60_000).enqueue(43)
    ref.result(timeout=10)                         # wait until a worker finished it

Workers (`redisq.Worker(app)`) look tasks up by the job's name.

Periodic tasks (docs/schedules.md)::

    @app.periodic(cron="0 9 * * MON-FRI", tz="Europe/Paris", args=("daily",))
    @app.task(queue="reports")
    def report(kind: str) -> None: ...

Workers of the task's queue (or `redisq scheduler`) store the declared schedules when they
start, and enqueue each tick exactly once across the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from redisq._async.store import AsyncStore
from redisq._connect import connect, connect_async
from redisq._core.calls import Settings
from redisq._core.schedules import build_definition
from redisq._core.tasks import make_payload
from redisq._core.validate import check_name, check_optional_text
from redisq._sync.store import Store
from redisq.backoff import BackoffLike
from redisq.errors import InvalidArgument
from redisq.keys import check_prefix
from redisq.middleware import Hooks, single
from redisq.models import Schedule
from redisq.task import ExceptionTypes, Task, TaskSettings

if TYPE_CHECKING:
    from redisq.testing import Eager, RunSummary

__all__ = ["App", "Periodic"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

# ------------------------------------------------------------------------------------ App


class App:
    """A registry of tasks and the connection settings of their store.

    The stores open lazily: `store` (sync) on first use, and one `AsyncStore` per event loop
    for the async methods (call `await app.aclose()` before your event loop ends).

    Args:
        url: as for `redisq.connect` (``redis://...``, ``memory://`` by default).
        prefix: the key prefix of every queue.
        middleware: `redisq.Middleware` objects, in order (see `add_middleware`).
        **connect_options: passed to `redisq.connect` / `redisq.connect_async` (retention,
            payload_limit, socket_timeout, clock in tests...).
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        prefix: str = "redisq",
        middleware: Sequence[Any] = (),
        **connect_options: Any,
    ) -> None:
        check_prefix(prefix)
        self.url = url
        self.prefix = prefix
        self.connect_options = dict(connect_options)
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[tuple[str, str], Periodic] = {}
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._astores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncStore] = (
            weakref.WeakKeyDictionary()
        )
        self._middleware: list[Any] = []
        #: The hooks compiled in the order they run (rebuilt when one is added).
        self.hooks = Hooks()
        #: Eager mode while `eager` is on (redisq.testing.Eager), else None.
        self._eager: Any = None
        for m in middleware:
            self.add_middleware(m)

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
        if self._eager is not None:
            eager: Store = self._eager.store
            return eager
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
        if self._eager is not None:
            eager: AsyncStore = self._eager.async_store
            return eager
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

    # -------------------------------------------------------------------------- testing

    def eager(self) -> contextlib.AbstractContextManager[Eager]:
        """Run each task at enqueue, in the caller, for the block: ``with app.eager(): ...``.

        The App's stores become a private ``memory://`` store (no server needed); each
        enqueue runs the jobs it made ready before it returns, so ``ref.result()`` is ready.
        A failed attempt is retried at once until max_attempts, then the job is dead
        (``result()`` raises JobFailed). See `redisq.testing.Eager` and docs/testing.md.
        """
        from redisq.testing import eager

        return eager(self)

    def run_until_empty(
        self, queues: Sequence[str] | str | None = None, *, timeout: float = 30.0, **options: Any
    ) -> RunSummary:
        """Run a worker in this thread until the queues are empty; return a
        `redisq.testing.RunSummary` (completed, failed...). See docs/testing.md.

        Raises:
            TimeoutError: the queues were not empty within `timeout` seconds.
        """
        from redisq.testing import run_until_empty

        return run_until_empty(self, queues, timeout=timeout, **options)

    async def arun_until_empty(
        self,
        queues: Sequence[str] | str | None = None,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109  (mirrors run_until_empty(timeout=))
        **options: Any,
    ) -> RunSummary:
        """`run_until_empty` from asyncio (the worker runs in this event loop)."""
        from redisq.testing import arun_until_empty

        return await arun_until_empty(self, queues, timeout=timeout, **options)

    # ---------------------------------------------------------------------------- hooks

    @property
    def middleware(self) -> tuple[Any, ...]:
        """The middleware and single hooks added, in order."""
        return tuple(self._middleware)

    def add_middleware(self, middleware: Any) -> None:
        """Add a `redisq.Middleware` (or any object with some of its hook methods).

        It becomes the innermost layer so far: its on_worker_start, before_job and
        around_enqueue run after those added before it, its after_job, on_retry, on_dead and
        on_worker_stop before theirs (docs/hooks.md). Add hooks before workers start: a
        running worker keeps the hooks it started with.

        Raises:
            InvalidArgument: a hook is not callable, or around_enqueue is no generator
                function; nothing is added.
        """
        with self._lock:
            hooks = Hooks.build([*self._middleware, middleware])
            self._middleware.append(middleware)
            self.hooks = hooks

    def _single(self, kind: str, fn: F) -> F:
        self.add_middleware(single(kind, fn))
        return fn

    def on_worker_start(self, fn: F) -> F:
        """Register a hook run once when each worker starts, before it claims: ``fn(worker)``
        (a plain or async function: a DB pool, for example). If it raises, the worker does
        not start (`WorkerStartError`)."""
        return self._single("on_worker_start", fn)

    def on_worker_stop(self, fn: F) -> F:
        """Register a hook run once when each worker stops, after its jobs: ``fn(worker)``."""
        return self._single("on_worker_stop", fn)

    def before_job(self, fn: F) -> F:
        """Register a hook run before each attempt's handler: ``fn(ctx)``; if it raises, the
        attempt fails with its error (the handler does not run)."""
        return self._single("before_job", fn)

    def after_job(self, fn: F) -> F:
        """Register a hook run after each attempt's handler: ``fn(ctx, outcome)``
        (`redisq.JobOutcome`), before the outcome is sent; if it raises, a completed attempt
        fails with its error instead."""
        return self._single("after_job", fn)

    def on_retry(self, fn: F) -> F:
        """Register a hook run when an attempt failed and the job runs again:
        ``fn(ctx, outcome)``; an error in it is logged."""
        return self._single("on_retry", fn)

    def on_dead(self, fn: F) -> F:
        """Register a hook run when a job is dead-lettered: ``fn(ctx, outcome)``; an error in
        it is logged."""
        return self._single("on_dead", fn)

    def around_enqueue(self, fn: F) -> F:
        """Register a generator hook around each enqueue of the task API: it receives the
        `redisq.EnqueueRequest`, yields once (the enqueue happens there) and gets the jobs
        back from the yield; an error of the enqueue is raised at the yield."""
        return self._single("around_enqueue", fn)

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
        rate_limit: str | None = None,
        queue_concurrency: int | None = None,
        group_concurrency: int | None = None,
        rate_key: str | None = None,
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
        rate_limit: str | None = None,
        queue_concurrency: int | None = None,
        group_concurrency: int | None = None,
        rate_key: str | None = None,
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
            rate_limit: the rate limit of the task's queue (``"100/s"``, ``"/m"``, ``"/h"``;
                see `Store.set_rate_limit`): it limits every job of the queue, so the tasks of
                one queue that give one must give the same. Workers of the queue store it
                when they start (a task without one leaves the queue's limit as it is).
            queue_concurrency: the most jobs of the task's queue leased at once, across
                every worker (see `Store.set_concurrency`); the queue's, like rate_limit.
            group_concurrency: the most jobs of one concurrency group of the task's queue
                leased at once (1: strict FIFO per group; see `Store.set_group_concurrency`
                and ``task.options(group=...)``); the queue's, like rate_limit.
            rate_key: the rate key of its jobs (``task.options(rate_key=...)`` overrides it;
                see `Store.enqueue`); with rate_limit, the limit is that key's, not the
                queue's (docs/rate_limits.md).

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
            rate_limit=rate_limit,
            queue_concurrency=queue_concurrency,
            group_concurrency=group_concurrency,
            rate_key=rate_key,
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
            for option in ("rate_limit", "queue_concurrency", "group_concurrency"):
                limit = getattr(settings, option)
                for other in self._tasks.values():
                    theirs = getattr(other, option)
                    if option == "rate_limit" and other.rate_key != task.rate_key:
                        continue  # (a rate key's limit is the key's, not the queue's)
                    if limit and other.queue == task.queue and theirs not in (None, limit):
                        raise InvalidArgument(
                            option,
                            f"the limit of queue {task.queue!r} that task {other.name!r} gives"
                            f" ({theirs}): a {option.replace('_', ' ')} is the queue's",
                            limit,
                        )
            self._tasks[name] = task
        return task

    # ------------------------------------------------------------------------ schedules

    @property
    def periodic_schedules(self) -> list[Periodic]:
        """The schedules declared with `periodic`, in declaration order."""
        return list(self._periodic.values())

    def periodic(
        self,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        tz: str = "UTC",
        id: str | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: str = "once",
        jitter_ms: int = 0,
        start_at: int | datetime | None = None,
        end_at: int | datetime | None = None,
        limit: int | None = None,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Declare a periodic schedule for a task: put it above ``@app.task``.

        Each tick enqueues one call of the task, ``task(*args, **kwargs)``, with the task's
        queue, priority, attempts and lease. Workers of that queue (and `redisq scheduler`)
        store the declaration when they start (`declare_schedules`): storing the same
        definition again changes nothing, a changed one takes effect from its next tick.

        Args:
            cron: a cron expression read in `tz` (``"*/5 * * * *"``); or give every_ms.
            every_ms: the interval between ticks in ms; or give cron.
            tz: the IANA time zone of `cron` (DST included).
            id: the schedule id (default: the task name; give one to declare several
                schedules of one task).
            args: the positional arguments of each call.
            kwargs: the keyword arguments of each call.
            missed: ticks missed while no driver ran: "skip", "once" (default) or "all".
            jitter_ms: each tick's job becomes due up to this many ms after its tick.
            start_at: no tick before this time (ms since the epoch or an aware datetime).
            end_at: no tick after this time.
            limit: most ticks in all.

        Raises:
            InvalidArgument: an argument is invalid, or the id is declared twice in the
                queue; nothing is declared.
        """
        payload = make_payload(args, kwargs or {})
        options: dict[str, Any] = {
            "cron": cron,
            "every_ms": every_ms,
            "tz": tz,
            "missed": missed,
            "jitter_ms": jitter_ms,
            "start_at": start_at,
            "end_at": end_at,
            "limit": limit,
        }
        # Validate now (with the payload as the task's jobs carry it), not at the first deploy.
        build_definition(Settings(), name=None, payload=payload, options=None, **options)
        if id is not None:
            check_name("id", id)

        def declare(task: Task[P, R]) -> Task[P, R]:
            if not isinstance(task, Task):
                raise InvalidArgument(
                    "task", "a Task: put @app.periodic(...) above @app.task(...)", task
                )
            schedule_id = id if id is not None else task.name
            key = (task.queue, schedule_id)
            jobs = {
                "priority": task.priority,
                "max_attempts": task.max_attempts,
                "lease_ms": task.lease_ms,
            }
            entry = Periodic(schedule_id, task.queue, task.name, payload, jobs, options)
            with self._lock:
                if key in self._periodic:
                    raise InvalidArgument(
                        "id", f"a schedule id not yet declared in queue {task.queue!r}", id
                    )
                self._periodic[key] = entry
            return task

        return declare

    def rate_limits(self, queues: list[str] | None = None) -> dict[str, str]:
        """The rate limits the tasks give their queues (of `queues`, default all)."""
        return {
            t.queue: t.rate_limit
            for t in self.tasks.values()
            if t.rate_limit is not None
            and t.rate_key is None
            and (queues is None or t.queue in queues)
        }

    def key_rate_limits(self, queues: list[str] | None = None) -> dict[tuple[str, str], str]:
        """The rate limits the tasks with a rate key give it: (queue, key) -> limit."""
        return {
            (t.queue, t.rate_key): t.rate_limit
            for t in self.tasks.values()
            if t.rate_limit is not None
            and t.rate_key is not None
            and (queues is None or t.queue in queues)
        }

    def declare_rate_limits(
        self, store: Store | None = None, queues: list[str] | None = None
    ) -> dict[str, str]:
        """Store the rate limits the tasks give their queues (workers do it when they start);
        return them. A queue no task gives a limit keeps the one it has."""
        target = store if store is not None else self.store
        limits = self.rate_limits(queues)
        for queue, limit in limits.items():
            target.set_rate_limit(queue, limit)
        for (queue, key), limit in self.key_rate_limits(queues).items():
            target.set_rate_limit(queue, limit, key=key)
        return limits

    def flow_limits(self, queues: list[str] | None = None) -> dict[str, dict[str, int]]:
        """The concurrency limits the tasks give their queues (of `queues`, default all):
        queue -> {"queue_concurrency": n, "group_concurrency": n} (those given)."""
        out: dict[str, dict[str, int]] = {}
        for t in self.tasks.values():
            if queues is not None and t.queue not in queues:
                continue
            for name in ("queue_concurrency", "group_concurrency"):
                value = getattr(t, name)
                if value is not None:
                    out.setdefault(t.queue, {})[name] = value
        return out

    def declare_flow_limits(
        self, store: Store | None = None, queues: list[str] | None = None
    ) -> dict[str, dict[str, int]]:
        """Store the concurrency limits the tasks give their queues (workers do it when they
        start); return them. A limit no task gives is left as it is."""
        target = store if store is not None else self.store
        limits = self.flow_limits(queues)
        for queue, given in limits.items():
            if "queue_concurrency" in given:
                target.set_concurrency(queue, given["queue_concurrency"])
            if "group_concurrency" in given:
                target.set_group_concurrency(queue, given["group_concurrency"])
        return limits

    def declare_schedules(
        self, store: Store | None = None, queues: list[str] | None = None
    ) -> list[Schedule]:
        """Store the schedules declared with `periodic` (of `queues`, default all).

        Workers and `redisq scheduler` call this when they start. Storing what is stored
        already writes nothing; when two deploys declare different definitions of one
        schedule, the one stored last wins (see docs/schedules.md).
        """
        target = store if store is not None else self.store
        out = []
        for p in self.periodic_schedules:
            if queues is None or p.queue in queues:
                out.append(p.upsert(target))
        return out


@dataclass(frozen=True, slots=True)
class Periodic:
    """A schedule declared with `App.periodic`."""

    id: str
    queue: str
    task: str
    payload: dict[str, Any]
    #: The jobs' options, from the task: priority, max_attempts, lease_ms.
    job_options: dict[str, int] = field(default_factory=dict)
    #: The timing and policy keywords of `Store.upsert_schedule`.
    options: dict[str, Any] = field(default_factory=dict)

    def upsert(self, store: Store) -> Schedule:
        """Store this declaration (see `Store.upsert_schedule`)."""
        return store.upsert_schedule(
            self.id,
            queue=self.queue,
            name=self.task,
            payload=self.payload,
            options=self.job_options,
            **self.options,
        )


class _Decorator(Protocol):
    """What ``app.task(...)`` returns: keeps the function's types (workflows are checked)."""

    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
