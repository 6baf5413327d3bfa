"""Running one job's handler and turning what happened into an `Outcome`.

`Runner.run_sync` runs in a handler thread (thread pool); `Runner.run_async` runs as an
asyncio task (async pool). Both give an Outcome (or the Entry itself for an ack without a
result, the common case, to make no object per job), or None when the run was cut short by
its timeout or a release at stop (the outcome was decided elsewhere).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redisq._core.backoff import exponential
from redisq._core.codec import encode
from redisq._core.tasks import describe_exception, is_retryable, parse_payload
from redisq.backoff import delay_for
from redisq.context import Context, _current
from redisq.errors import (
    PayloadTooLarge,
    RateLimited,
    ResultExpired,
    Retry,
    SerializationError,
    Snooze,
)
from redisq.middleware import Hooks, JobOutcome, hook_name
from redisq.worker._flow import FLOW_KEY, flow_arguments, keeps_result
from redisq.worker._state import Entry, Outcome, Settlement
from redisq.worker._support import logger

if TYPE_CHECKING:
    from redisq._sync.store import Store

__all__ = ["Runner", "cancel_handler"]


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def cancel_handler(entry: Entry) -> bool:
    """Cancel the asyncio task running an entry's handler, from any thread; False if none."""
    task = entry.handle
    if not isinstance(task, asyncio.Task):
        return False
    try:
        task.get_loop().call_soon_threadsafe(task.cancel)
    except RuntimeError:  # its loop is closed: the handler has ended
        return False
    return True


class Runner:
    """Runs handlers for a worker.

    Args:
        store: the sync store (for the handler's Context: progress, heartbeat).
        worker: the worker's name.
        mark_started: called when the handler of a task with a timeout starts (its timeout
            counts from then).
    """

    def __init__(
        self,
        store: Store,
        worker: str,
        mark_started: Callable[[Entry], None],
        hooks: Hooks | None = None,
    ) -> None:
        self.store = store
        self.worker = worker
        self._mark_started = mark_started
        self._make_context = self.context
        #: The App's job hooks, or None when it has none: the runs then never look further.
        self.hooks = hooks if hooks is not None and hooks.for_jobs else None
        #: The threads of sync handlers under the async pool (None: the loop's default).
        self.pool: concurrent.futures.Executor | None = None

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Run `fn(*args)` on `pool` (like ``asyncio.to_thread``, context variables kept)."""
        if self.pool is None:
            return asyncio.to_thread(fn, *args)
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return asyncio.get_running_loop().run_in_executor(self.pool, call)

    # ----------------------------------------------------------------------- outcomes

    def backoff_ms(self, entry: Entry) -> int:
        """The task's retry delay after this attempt (the default policy for unknown ones)."""
        attempt = entry.job.attempts
        task = entry.task
        if task is None:
            return exponential(attempt)
        try:
            return delay_for(task.backoff, attempt)
        except Exception:
            logger.exception(
                "task %s: its backoff policy failed for attempt %d; using the default",
                task.name,
                attempt,
            )
            return exponential(attempt)

    def completed(self, entry: Entry, value: Any) -> Settlement:
        """The outcome of a handler that returned `value` (the entry itself: a plain ack)."""
        task = entry.task
        if (
            task is None
            or value is None
            or not (task.store_result or keeps_result(entry.job.payload))
        ):
            return entry
        try:
            # Checked here so one bad result cannot fail a whole ack_many batch.
            encode("result", value, self.store.settings.payload_limit, entry.job.id)
        except (SerializationError, PayloadTooLarge) as exc:
            return Outcome(
                entry,
                "nack",
                "failed",
                error=f"the task's result cannot be stored: {exc}",
                dead=True,
            )
        return Outcome(entry, "ack", "completed", result=value)

    def failed(self, entry: Entry, exc: BaseException) -> Outcome:
        """The outcome of a handler that raised `exc`."""
        if isinstance(exc, RateLimited):
            # The queue is held back for every worker, then the job goes back to its place
            # in the ready set: the attempt is not counted (the settler sends both).
            return Outcome(entry, "release", "rate_limited", delay_ms=exc.delay_ms)
        if isinstance(exc, Snooze):
            # A release with a delay: the attempt is not counted, last_error is kept.
            return Outcome(entry, "release", "snooze", delay_ms=exc.delay_ms)
        text = describe_exception(exc)
        if isinstance(exc, Retry):
            delay = self.backoff_ms(entry) if exc.delay_ms is None else exc.delay_ms
            return Outcome(entry, "nack", "retry", error=text, delay_ms=delay)
        task = entry.task
        if task is not None and not is_retryable(exc, task.retry_for, task.non_retryable):
            return Outcome(entry, "nack", "failed", error=text, dead=True)
        return Outcome(entry, "nack", "failed", error=text, delay_ms=self.backoff_ms(entry))

    def _refuse(self, entry: Entry) -> tuple[Outcome | None, Any]:
        """Check that the job can run here; (dead-letter outcome, None) when it cannot."""
        job = entry.job
        task = entry.task
        if task is None:
            if not job.name:
                error = (
                    "the job has no task name, so no task can run it (a worker runs the jobs"
                    " its app's tasks enqueue): enqueue it as a task, with task.enqueue(...)"
                    " or `redisq enqueue QUEUE --task NAME --args '[...]'`"
                )
            else:
                error = (
                    f"no task named {job.name!r} is registered in the app of worker"
                    f" {self.worker!r}; register it (and deploy) before enqueueing it"
                )
            return Outcome(entry, "nack", "unknown", error=error, dead=True), None
        payload = job.payload
        try:
            if (
                type(payload) is dict
                and len(payload) == 2
                and type(args := payload.get("args")) is list
                and type(kwargs := payload.get("kwargs")) is dict
                and not kwargs
            ):
                pass  # the common call shape, checked without parse_payload's generality
            elif type(payload) is dict and FLOW_KEY in payload:
                args, kwargs = flow_arguments(self.store, payload)  # a workflow's job
            else:
                args, kwargs = parse_payload(payload)
            task.check_arguments(args, kwargs)
        except (ValueError, TypeError, ResultExpired) as exc:
            error = f"task {task.name!r} cannot run this job: {exc}"
            if isinstance(exc, ResultExpired):
                error = f"task {task.name!r} cannot run this job: ResultExpired: {exc}"
            return Outcome(entry, "nack", "failed", error=error, dead=True), None
        except Exception as exc:  # the read of the parents' results failed: retried
            error = f"the parents' results could not be read: {describe_exception(exc)}"
            return Outcome(
                entry, "nack", "failed", error=error, delay_ms=self.backoff_ms(entry)
            ), None
        return None, (args, kwargs)

    async def _arefuse(self, entry: Entry) -> tuple[Outcome | None, Any]:
        """`_refuse` from the event loop: a workflow job's read of its parents' results (a
        round trip on the sync store) runs in a thread, so the loop's other handlers go on."""
        payload = entry.job.payload
        if type(payload) is dict and FLOW_KEY in payload:
            refused: tuple[Outcome | None, Any] = await self.in_thread(self._refuse, entry)
            return refused
        return self._refuse(entry)

    def context(self, entry: Entry) -> Context:
        """The Context of `entry`'s run, made on first use (the same one on every call)."""
        ctx = entry.ctx
        if ctx is None:
            ctx = entry.ctx = Context._lazy(
                entry.job, self.worker, self.store, entry.cancelled_event, entry.heartbeat
            )
        return ctx

    # ------------------------------------------------------------------------ runners

    def run_sync(self, entry: Entry) -> Settlement | None:
        """Run the handler of `entry` in this thread (a handler thread of the worker)."""
        if self.hooks is not None:
            return self._run_sync_hooked(entry, self.hooks)
        task = entry.task
        payload = entry.job.payload
        if (
            task is not None
            and type(payload) is dict
            and len(payload) == 2
            and type(args := payload.get("args")) is list
            and type(kwargs := payload.get("kwargs")) is dict
            and not kwargs
            and task.min_args <= len(args) <= task.max_args
        ):
            pass  # the common call shape, checked without _refuse's generality
        else:
            refusal, call = self._refuse(entry)
            if refusal is not None:
                return refusal
            args, kwargs = call
        assert task is not None
        if task.timeout_ms is not None:
            self._mark_started(entry)
        # current_context() makes the Context on first use. The variable is not reset after
        # the run: a handler thread runs nothing but handlers, and each run sets it first.
        _current.set((self._make_context, entry))
        try:
            if task.context_param is None:
                value = task.fn(*args, **kwargs)
            else:
                value = task.invoke(args, kwargs, self.context(entry))
            if value is None:
                return entry  # a plain ack
            if inspect.isawaitable(value):  # an async task, in a thread
                value = self._run_coroutine(entry, value)
            return self.completed(entry, value)
        except asyncio.CancelledError as exc:
            if entry.timed_out or entry.released or entry.cancelled:
                return None  # cancelled by the worker: the outcome was decided already
            return self.failed(entry, exc)
        except BaseException as exc:  # a handler's SystemExit fails its job, not the worker
            return self.failed(entry, exc)

    @staticmethod
    def _run_coroutine(entry: Entry, awaitable: Awaitable[Any]) -> Any:
        """Run an async handler on a private event loop in this thread (cancellable)."""
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(_awaited(awaitable))
            entry.handle = task
            if entry.timed_out or entry.released or entry.cancelled:
                task.cancel()
            return loop.run_until_complete(task)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def run_async(self, entry: Entry) -> Settlement | None:
        """Run the handler of `entry` as (part of) the current asyncio task."""
        if self.hooks is not None:
            return await self._run_async_hooked(entry, self.hooks)
        refusal, call = await self._arefuse(entry)
        if refusal is not None:
            return refusal
        args, kwargs = call
        task = entry.task
        assert task is not None
        ctx = self.context(entry) if task.context_param is not None else None
        if task.timeout_ms is not None:
            self._mark_started(entry)
        # The asyncio task runs in its own copy of the context.
        _current.set((self._make_context, entry))
        try:
            if task.is_async:
                value = await task.invoke(args, kwargs, ctx)
            else:
                value = await self.in_thread(task.invoke, args, kwargs, ctx)
                if inspect.isawaitable(value):
                    value = await value
            return self.completed(entry, value)
        except asyncio.CancelledError as exc:
            if entry.timed_out or entry.released or entry.cancelled:
                return None  # cancelled by the worker: the outcome was decided already
            return self.failed(entry, exc)
        except BaseException as exc:
            return self.failed(entry, exc)

    # ------------------------------------------------------------------ with the App's hooks

    def _run_sync_hooked(self, entry: Entry, hooks: Hooks) -> Settlement | None:
        """`run_sync` with the job hooks around the handler (see redisq.middleware)."""
        refusal, call = self._refuse(entry)
        ctx = self.context(entry)
        if refusal is not None:  # never ran: no before_job nor after_job, but on_dead
            return self._after_sync(hooks, entry, ctx, refusal, None, 0)
        args, kwargs = call
        task = entry.task
        assert task is not None
        if task.timeout_ms is not None:
            self._mark_started(entry)  # the timeout covers the hooks too
        _current.set((self._make_context, entry))
        entered = 0
        settlement: Settlement | None = None
        error: BaseException | None = None
        ran = False
        for layer in hooks.layers:
            if layer.before is not None:
                try:
                    self._call_sync(entry, layer.before, ctx)
                except BaseException as exc:
                    ran = True
                    error = exc
                    if isinstance(exc, asyncio.CancelledError) and (
                        entry.timed_out or entry.released
                    ):
                        settlement = None  # cut short by the worker: decided already
                    else:
                        settlement = self._hook_error(entry, "before_job", layer.before, exc)
                    break
            entered += 1
        if not ran:
            try:
                value = task.invoke(args, kwargs, ctx)
                if inspect.isawaitable(value):
                    value = self._run_coroutine(entry, value)
                settlement = self.completed(entry, value)
            except asyncio.CancelledError as exc:
                error = exc
                settlement = None if entry.timed_out or entry.released else self.failed(entry, exc)
            except BaseException as exc:
                error = exc
                settlement = self.failed(entry, exc)
        return self._after_sync(hooks, entry, ctx, settlement, error, entered)

    def _call_sync(self, entry: Entry, fn: Callable[..., Any], *args: Any) -> None:
        value = fn(*args)
        if inspect.isawaitable(value):
            self._run_coroutine(entry, value)  # cancellable by the timeout, as a handler

    def _after_sync(
        self,
        hooks: Hooks,
        entry: Entry,
        ctx: Context,
        settlement: Settlement | None,
        error: BaseException | None,
        entered: int,
    ) -> Settlement | None:
        outcome = self.public_outcome(entry, settlement, error)
        for layer in reversed(hooks.layers[:entered]):
            if layer.after is None:
                continue
            try:
                self._call_sync(entry, layer.after, ctx, outcome)
            except BaseException as exc:
                changed = self._after_error(entry, settlement, layer.after, exc)
                if changed is not None:
                    settlement = changed
                    outcome = self.public_outcome(entry, settlement, exc)
        for fn in self._notified(hooks, outcome):
            try:
                self._call_sync(entry, fn, ctx, outcome)
            except BaseException as exc:
                self._notify_error(entry, fn, outcome, exc)
        return settlement

    async def _run_async_hooked(self, entry: Entry, hooks: Hooks) -> Settlement | None:
        """`run_async` with the job hooks around the handler (see redisq.middleware)."""
        refusal, call = await self._arefuse(entry)
        ctx = self.context(entry)
        if refusal is not None:
            return await self._after_async(hooks, entry, ctx, refusal, None, 0)
        args, kwargs = call
        task = entry.task
        assert task is not None
        if task.timeout_ms is not None:
            self._mark_started(entry)
        _current.set((self._make_context, entry))
        entered = 0
        settlement: Settlement | None = None
        error: BaseException | None = None
        ran = False
        for layer in hooks.layers:
            if layer.before is not None:
                try:
                    await _call_async(layer.before, ctx)
                except BaseException as exc:
                    ran = True
                    error = exc
                    if isinstance(exc, asyncio.CancelledError) and (
                        entry.timed_out or entry.released
                    ):
                        settlement = None
                    else:
                        settlement = self._hook_error(entry, "before_job", layer.before, exc)
                    break
            entered += 1
        if not ran:
            try:
                if task.is_async:
                    value = await task.invoke(args, kwargs, ctx)
                else:
                    value = await self.in_thread(task.invoke, args, kwargs, ctx)
                    if inspect.isawaitable(value):
                        value = await value
                settlement = self.completed(entry, value)
            except asyncio.CancelledError as exc:
                error = exc
                settlement = None if entry.timed_out or entry.released else self.failed(entry, exc)
            except BaseException as exc:
                error = exc
                settlement = self.failed(entry, exc)
        return await self._after_async(hooks, entry, ctx, settlement, error, entered)

    async def _after_async(
        self,
        hooks: Hooks,
        entry: Entry,
        ctx: Context,
        settlement: Settlement | None,
        error: BaseException | None,
        entered: int,
    ) -> Settlement | None:
        outcome = self.public_outcome(entry, settlement, error)
        for layer in reversed(hooks.layers[:entered]):
            if layer.after is None:
                continue
            try:
                await _call_async(layer.after, ctx, outcome)
            except BaseException as exc:
                changed = self._after_error(entry, settlement, layer.after, exc)
                if changed is not None:
                    settlement = changed
                    outcome = self.public_outcome(entry, settlement, exc)
        for fn in self._notified(hooks, outcome):
            try:
                await _call_async(fn, ctx, outcome)
            except BaseException as exc:
                self._notify_error(entry, fn, outcome, exc)
        return settlement

    def public_outcome(
        self, entry: Entry, settlement: Settlement | None, error: BaseException | None
    ) -> JobOutcome:
        """The outcome hooks see: `settlement` (None: decided elsewhere, by the attempt's
        timeout or a release at stop)."""
        job = entry.job
        if settlement is None:
            if entry.timed_out:
                task = entry.task
                limit = task.timeout_ms if task is not None else None
                text = f"timeout after {limit} ms"
                dead = job.attempts >= job.max_attempts
                return JobOutcome("dead" if dead else "retry", None, TimeoutError(text), text)
            return JobOutcome("released", None, error)
        if isinstance(settlement, Entry):
            return JobOutcome("completed")
        if settlement.kind == "ack":
            return JobOutcome("completed", settlement.result)
        if settlement.kind == "nack":
            dead = settlement.dead or job.attempts >= job.max_attempts
            return JobOutcome(
                "dead" if dead else "retry",
                None,
                error,
                settlement.error,
                None if dead else settlement.delay_ms,
            )
        if settlement.label == "snooze":
            return JobOutcome("snoozed", None, error, "", settlement.delay_ms)
        if settlement.label == "rate_limited":
            return JobOutcome("rate_limited", None, error, "", settlement.delay_ms)
        return JobOutcome("released", None, error)

    @staticmethod
    def _notified(hooks: Hooks, outcome: JobOutcome) -> tuple[Callable[..., Any], ...]:
        if outcome.status == "retry":
            return hooks.on_retry
        if outcome.status == "dead":
            return hooks.on_dead
        return ()

    def _hook_error(
        self, entry: Entry, kind: str, fn: Callable[..., Any], exc: BaseException
    ) -> Outcome:
        """A before_job hook raised: the attempt fails with its error (as a handler's)."""
        logger.error(
            "job %s/%s: %s hook %s failed; the attempt fails",
            *entry.key,
            kind,
            hook_name(fn),
            exc_info=exc,
        )
        return self.failed(entry, exc)

    def _after_error(
        self,
        entry: Entry,
        settlement: Settlement | None,
        fn: Callable[..., Any],
        exc: BaseException,
    ) -> Outcome | None:
        """An after_job hook raised: a completed attempt fails with its error instead (the
        new outcome is returned); any other outcome stands (None)."""
        completed = isinstance(settlement, Entry) or (
            isinstance(settlement, Outcome) and settlement.kind == "ack"
        )
        logger.error(
            "job %s/%s: after_job hook %s failed; %s",
            *entry.key,
            hook_name(fn),
            "the attempt fails" if completed else "the attempt's outcome stands",
            exc_info=exc,
        )
        return self.failed(entry, exc) if completed else None

    @staticmethod
    def _notify_error(
        entry: Entry, fn: Callable[..., Any], outcome: JobOutcome, exc: BaseException
    ) -> None:
        kind = "on_retry" if outcome.status == "retry" else "on_dead"
        logger.error(
            "job %s/%s: %s hook %s failed; the job is %s all the same",
            *entry.key,
            kind,
            hook_name(fn),
            "retried" if outcome.status == "retry" else "dead",
            exc_info=exc,
        )


async def _call_async(fn: Callable[..., Any], *args: Any) -> None:
    """Call a hook on the worker's event loop (a sync one runs right there: keep it quick)."""
    value = fn(*args)
    if inspect.isawaitable(value):
        await value
