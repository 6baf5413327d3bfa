"""Helpers for the tests of redisq's users (docs/testing.md).

`memory://name` stores share one in-process server per name for the life of the process; in
a test suite, give each test its own name and forget it afterwards::

    url = f"memory://{request.node.name}"
    store = redisq.connect(url)
    ...
    redisq.testing.forget_memory(url)

Run what was enqueued with a worker in this process until the queues are empty (the store
is the App's: ``memory://`` or a real server)::

    summary = app.run_until_empty(timeout=10)      # or: await app.arun_until_empty()
    assert (summary.completed, summary.failed) == (3, 0)

Or run each task at enqueue, in the caller, with no server at all (eager mode)::

    with app.eager():
        ref = add.enqueue(1, 2)
        assert ref.result() == 3
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from redisq._connect import connect, forget_memory
from redisq.models import Job

if TYPE_CHECKING:
    from redisq._async.store import AsyncStore
    from redisq._sync.store import Store
    from redisq.app import App
    from redisq.worker import Worker
    from redisq.worker._state import Settlement

__all__ = [
    "Eager",
    "RunSummary",
    "arun_until_empty",
    "eager",
    "forget_memory",
    "run_until_empty",
]

#: Most attempts one eager enqueue may run (a handler that snoozes with no delay for ever).
MAX_EAGER_RUNS = 10_000


# ------------------------------------------------------------------------ run_until_empty


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What `run_until_empty` did, from its worker's counters.

    Attributes:
        completed: jobs completed.
        failed: failed attempts: ``retried + dead``.
        retried: failed attempts sent back for a retry (a retry due later stays scheduled).
        dead: jobs dead-lettered.
        snoozed: jobs put back by a Snooze (due later: not run again here).
        released: jobs given back unfinished (only when the timeout cut the run short).
        cancelled: jobs cancelled while this worker held them.
        seconds: how long it ran.
    """

    completed: int
    failed: int
    retried: int
    dead: int
    snoozed: int
    released: int
    cancelled: int
    seconds: float


def _summary(worker: Worker, started: float) -> RunSummary:
    m = worker.metrics
    return RunSummary(
        completed=m.completed,
        failed=m.retried + m.dead,
        retried=m.retried,
        dead=m.dead,
        snoozed=m.snoozed,
        released=m.released,
        cancelled=m.cancelled,
        seconds=time.monotonic() - started,
    )


def _burst_worker(app: App, queues: Sequence[str] | str | None, options: dict[str, Any]) -> Worker:
    from redisq.worker import Worker

    options.setdefault("schedules", False)
    options.setdefault("registry_ttl_ms", 0)
    return Worker(app, queues=queues, burst=True, handle_signals=False, **options)


def _timed_out(queues: Any, timeout: float, summary: RunSummary) -> TimeoutError:
    what = "the app's queues" if queues is None else f"queues {queues!r}"
    return TimeoutError(
        f"{what} were not empty after {timeout:g} s (the jobs still running were released);"
        f" so far: {summary}"
    )


def run_until_empty(
    app: App,
    queues: Sequence[str] | str | None = None,
    *,
    timeout: float = 30.0,
    **worker_options: Any,
) -> RunSummary:
    """Run a worker of `app` in this thread until its queues are empty; summarize.

    The worker is a ``Worker(app, burst=True)`` (see its ``burst`` for what "empty" means:
    scheduled jobs due later, a retry's backoff included, are left scheduled), without
    schedules (periodic ticks) nor a registry record unless `worker_options` say so.

    Args:
        app: the App whose jobs run (its url: ``memory://`` or a server).
        queues: the queues (default: every queue of the app's tasks).
        timeout: seconds at most; then the jobs still running are released and
            TimeoutError is raised.
        **worker_options: more `redisq.Worker` options (concurrency, pool, ...).

    Raises:
        TimeoutError: the queues were not empty within `timeout`.
    """
    worker = _burst_worker(app, queues, worker_options)
    started = time.monotonic()
    timer = threading.Timer(timeout, worker.stop, kwargs={"grace": False})
    timer.daemon = True
    timer.start()
    try:
        worker.run()
    finally:
        timer.cancel()
    summary = _summary(worker, started)
    if not worker.drained:
        raise _timed_out(queues, timeout, summary)
    return summary


async def arun_until_empty(
    app: App,
    queues: Sequence[str] | str | None = None,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109  (mirrors run_until_empty(timeout=))
    **worker_options: Any,
) -> RunSummary:
    """`run_until_empty` from asyncio: the worker runs in this event loop (`Worker.arun`)."""
    worker = _burst_worker(app, queues, worker_options)
    started = time.monotonic()
    timer = asyncio.get_running_loop().call_later(timeout, worker.stop, False)
    try:
        await worker.arun()
    finally:
        timer.cancel()
    summary = _summary(worker, started)
    if not worker.drained:
        raise _timed_out(queues, timeout, summary)
    return summary


# ---------------------------------------------------------------------------------- eager


def _enqueues(name: str) -> bool:
    """Tell whether a store method may make jobs ready (then eager mode runs them)."""
    return name.startswith("enqueue") or name in ("retry_dead", "run_schedule_now")


class _EagerStore:
    """The App's store in eager mode: the private memory store, whose enqueues run the jobs."""

    def __init__(self, eager: Eager) -> None:
        self._eager = eager
        self._store = eager.base

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or not _enqueues(name):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            value = attr(*args, **kwargs)
            self._eager.drain()
            return value

        return call

    def close(self) -> None:
        """Nothing: the eager block closes the store when it ends."""


class _EagerAsyncStore:
    """The App's AsyncStore in eager mode: the same private store, awaitable."""

    def __init__(self, eager: Eager) -> None:
        self._eager = eager
        self._store = eager.base

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        runs = _enqueues(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            value = attr(*args, **kwargs)
            if runs:
                await self._eager.adrain()
            return value

        return call

    async def close(self) -> None:
        """Nothing: the eager block closes the store when it ends."""


class Eager:
    """Eager mode of an App (`App.eager`): each job runs when it is enqueued, in the caller.

    The App's stores are replaced by a private ``memory://`` store for the block: no server
    is needed, nothing reaches the App's own store. Each enqueue (``task.enqueue``,
    ``aenqueue``, ``enqueue_many``, and the store's enqueue methods) runs the jobs it made
    ready before it returns, one attempt after the other, through the worker's own handler
    code: hooks (before_job, after_job, on_retry, on_dead; around_enqueue), ``ctx``, stored
    results, retry_for and non_retryable behave as in a worker. The returned JobRef's
    ``result()`` is ready at once: the return value (with ``store_result=True``), or
    `JobFailed` for a dead job.

    Differences from a worker, on purpose:

    - a failed attempt is retried at once (no backoff wait), until max_attempts;
    - a job not ready at enqueue (delay_ms, run_at, depends_on whose parents did not
      complete) and a job released with a delay (Snooze, RateLimited) stay in the store and
      do not run in the block;
    - timeout_ms is not enforced; on_worker_start / on_worker_stop hooks do not run;
    - a task that enqueues another runs the other inside its own run (nested, depth first).

    From a sync enqueue, sync handlers run in the calling thread, and async ones on a private
    event loop (in a helper thread when the caller's thread runs an event loop). From
    ``aenqueue``, async handlers run in the caller's loop, sync ones in a thread.

    Attributes:
        app: the App.
        base: the private store (read jobs from it, or through the App, in the block).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.url = f"memory://redisq-eager-{secrets.token_hex(6)}"
        options = {
            k: v for k, v in app.connect_options.items() if k in ("payload_limit", "retention")
        }
        self.base: Store = connect(self.url, prefix=app.prefix, **options)
        self.store = cast("Store", _EagerStore(self))
        self.async_store = cast("AsyncStore", _EagerAsyncStore(self))

    def close(self) -> None:
        """Drop the private store."""
        self.base.close()
        forget_memory(self.url)

    # ----------------------------------------------------------------------- running

    def _claim(self) -> tuple[Job, Any] | None:
        """Lease the next ready job of any queue of the private store, with its entry."""
        from redisq.worker._state import Entry

        store = self.base
        for queue in store.queues():
            claimed = store.claim(queue, worker="eager", count=1)
            if claimed:
                job = claimed[0]
                task = self.app.get_task(job.name or "")
                lease = job.lease_ms or store.settings.lease_ms
                return job, Entry(job, task, lease, time.monotonic())
        return None

    def _runner(self) -> Any:
        from redisq.worker._handlers import Runner

        return Runner(self.base, "eager", lambda entry: None, self.app.hooks)

    def drain(self) -> None:
        """Run every ready job of the private store, in this thread, until none is left."""
        runner = self._runner()
        for _ in range(MAX_EAGER_RUNS):
            claimed = self._claim()
            if claimed is None:
                return
            job, entry = claimed
            # In a copy of the caller's context: the handler's current_context() must not
            # stay set in the caller after the run.
            run = functools.partial(contextvars.copy_context().run, runner.run_sync, entry)
            self._settle(job, entry, _run_here(run))
        raise RuntimeError(f"eager mode ran {MAX_EAGER_RUNS} attempts for one enqueue; a loop?")

    async def adrain(self) -> None:
        """`drain` from asyncio: async handlers run in the caller's event loop."""
        runner = self._runner()
        for _ in range(MAX_EAGER_RUNS):
            claimed = self._claim()
            if claimed is None:
                return
            job, entry = claimed
            # As its own asyncio task (a copy of the caller's context, as above).
            self._settle(job, entry, await asyncio.create_task(runner.run_async(entry)))
        raise RuntimeError(f"eager mode ran {MAX_EAGER_RUNS} attempts for one enqueue; a loop?")

    def _settle(self, job: Job, entry: Any, settlement: Settlement | None) -> None:
        """Store an attempt's outcome; a retry is due at once."""
        from redisq.worker._state import outcome_of

        store = self.base
        if settlement is None:  # cut short (cannot happen here: no timeout, no stop)
            store.release(job)
            return
        outcome = outcome_of(settlement)
        if outcome.kind == "ack":
            task = entry.task
            ttl = None if task is None else task.result_ttl_ms
            store.ack(job, outcome.result, result_ttl_ms=ttl)
        elif outcome.kind == "nack":
            store.nack(job, error=outcome.error, delay_ms=0, dead=outcome.dead)
        else:
            store.release(job, delay_ms=outcome.delay_ms or 0)


def _run_here(fn: Callable[[], Any]) -> Any:
    """Call `fn` in this thread, or in a helper thread when an event loop runs in this one
    (an async handler's private loop cannot run inside it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    box: list[Any] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main, name="redisq-eager", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


@contextlib.contextmanager
def eager(app: App) -> Iterator[Eager]:
    """Put `app` in eager mode for the block (see `Eager`); nestable only once per App.

    Raises:
        RuntimeError: the App is in eager mode already.
    """
    if app._eager is not None:
        raise RuntimeError("the App is in eager mode already (app.eager() blocks do not nest)")
    mode = Eager(app)
    app._eager = mode
    try:
        yield mode
    finally:
        app._eager = None
        mode.close()
