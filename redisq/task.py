"""Tasks: calling, enqueueing and describing calls of a registered function.

A task job's payload is ``{"args": [...], "kwargs": {...}}`` (msgpack) and its name is the
task name (see `redisq._core.tasks`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from redisq._core.groups import check_limit
from redisq._core.rates import parse_rate
from redisq._core.tasks import make_payload
from redisq._core.validate import (
    MAX_ATTEMPTS,
    MAX_DELAY_MS,
    MAX_GROUP_LENGTH,
    MAX_LEASE_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_id,
    check_int,
    check_name,
    check_optional_text,
)
from redisq.backoff import resolve
from redisq.context import Context
from redisq.errors import InvalidArgument
from redisq.jobref import JobRef
from redisq.middleware import EnqueueRequest, enter_enqueue, exit_enqueue, fail_enqueue
from redisq.models import Spec

if TYPE_CHECKING:
    from redisq.app import App
    from redisq.canvas import Signature

__all__ = ["ExceptionTypes", "Task", "TaskCall", "TaskOptions", "TaskSettings"]

P = ParamSpec("P")
R = TypeVar("R")

#: No options seen yet (None means a call without options of its own).
_NONE: Any = object()

#: Latest run_at_ms accepted (the store keeps scores below 2^53).
_MAX_TIME_MS = 2**53 - 1

#: What retry_for and non_retryable accept.
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


# ------------------------------------------------------------------------------ validation


def _exception_types(field: str, value: Any) -> tuple[type[BaseException], ...]:
    items = (value,) if isinstance(value, type) else value
    if not isinstance(items, (tuple, list)) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in items
    ):
        raise InvalidArgument(field, "an exception class or a tuple of exception classes", value)
    return tuple(items)


def _optional_int(field: str, value: Any, low: int, high: int) -> int | None:
    return None if value is None else check_int(field, value, low, high)


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(field, "a bool", value)
    return value


@dataclass(frozen=True, slots=True)
class _CallOptions:
    """Per-call enqueue options; None = the task's default."""

    id: str | None = None
    unique_key: str | None = None
    delay_ms: int | None = None
    run_at_ms: int | None = None
    priority: int | None = None
    max_attempts: int | None = None
    queue: str | None = None
    #: Parents (Jobs, JobRefs or ids) and the failure policy (Store.enqueue).
    depends_on: tuple[Any, ...] | None = None
    on_parent_failure: str | None = None
    group: str | None = None
    expires_ms: int | None = None
    throttle_ms: int | None = None
    debounce_ms: int | None = None

    def merged(self, other: _CallOptions) -> _CallOptions:
        """Return these options with `other`'s given values on top."""
        changes = {
            name: getattr(other, name)
            for name in self.__slots__
            if getattr(other, name) is not None
        }
        return replace(self, **changes)


def _call_options(
    id: Any = None,
    unique_key: Any = None,
    delay_ms: Any = None,
    run_at_ms: Any = None,
    priority: Any = None,
    max_attempts: Any = None,
    queue: Any = None,
    depends_on: Any = None,
    on_parent_failure: Any = None,
    group: Any = None,
    expires_ms: Any = None,
    throttle_ms: Any = None,
    debounce_ms: Any = None,
) -> _CallOptions:
    if id is not None:
        check_id("id", id)
    if unique_key is not None:
        check_id("unique_key", unique_key)
    _optional_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
    _optional_int("run_at_ms", run_at_ms, 0, _MAX_TIME_MS)
    if delay_ms is not None and run_at_ms is not None:
        raise InvalidArgument("run_at_ms", "None when delay_ms is given (pick one)", run_at_ms)
    _optional_int("priority", priority, PRIORITY_MIN, PRIORITY_MAX)
    _optional_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS)
    if queue is not None:
        check_name("queue", queue)
    parents: tuple[Any, ...] | None = None
    if depends_on is not None:
        parents = tuple(depends_on) if isinstance(depends_on, (list, tuple)) else (depends_on,)
    if on_parent_failure is not None and on_parent_failure not in ("fail", "continue", "ignore"):
        raise InvalidArgument(
            "on_parent_failure", "one of 'fail', 'continue', 'ignore'", on_parent_failure
        )
    if group is not None:
        check_optional_text("group", group, MAX_GROUP_LENGTH)
    # Each alone here; how they combine (a unique key, not both windows) is checked at enqueue,
    # where the options of the task and of each call are merged.
    _optional_int("expires_ms", expires_ms, 1, MAX_DELAY_MS)
    _optional_int("throttle_ms", throttle_ms, 1, MAX_DELAY_MS)
    _optional_int("debounce_ms", debounce_ms, 1, MAX_DELAY_MS)
    return _CallOptions(
        id,
        unique_key,
        delay_ms,
        run_at_ms,
        priority,
        max_attempts,
        queue,
        parents,
        on_parent_failure,
        group,
        expires_ms,
        throttle_ms,
        debounce_ms,
    )


def _context_parameter(fn: Callable[..., Any]) -> tuple[str | None, int | None]:
    """Find the handler's Context parameter: (name, index if it can be positional)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable string annotations: fall back to their text
        hints = {}
    for index, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, param.annotation)
        if (
            param.name == "ctx"
            or annotation is Context
            or annotation in ("Context", "redisq.Context", "redisq.context.Context")
        ):
            return param.name, None if param.kind is param.KEYWORD_ONLY else index
    return None, None


def _positional_range(
    signature: inspect.Signature | None, context_param: str | None
) -> tuple[int, float, int] | None:
    """What positional-only calls fit a signature: (fewest, most, least for the Context).

    A call with no keyword arguments and n positional ones binds when fewest <= n <= most
    and n >= the third number (the Context's position, so it is passed positionally; 0
    when it is keyword-only or absent). None when keyword-only parameters are required.
    """
    if signature is None:
        return None
    low, high, context_after = 0, 0.0, 0
    for index, param in enumerate(signature.parameters.values()):
        if param.name == context_param:
            if param.kind is not param.KEYWORD_ONLY:
                context_after = index
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            high += 1
            if param.default is param.empty:
                low += 1
        elif param.kind is param.VAR_POSITIONAL:
            high = float("inf")
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            return None
    return low, high, context_after


def _result_ttl(value: Any, store_result: bool) -> int | None:
    if value is None:
        return None
    check_int("result_ttl_ms", value, 0, MAX_DELAY_MS)
    if not store_result:
        raise InvalidArgument(
            "result_ttl_ms", "None unless store_result=True (it keeps stored results)", value
        )
    return int(value)


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """A task's validated options."""

    name: str | None
    queue: str
    max_attempts: int
    lease_ms: int
    timeout_ms: int | None
    backoff: Callable[[int], int]
    priority: int
    retry_for: tuple[type[BaseException], ...] | None
    non_retryable: tuple[type[BaseException], ...]
    store_result: bool
    result_ttl_ms: int | None = None
    #: The limit of the task's queue (`Store.set_rate_limit`), stored by workers at start.
    rate_limit: str | None = None
    #: The concurrency limits of the task's queue (`Store.set_concurrency`,
    #: `Store.set_group_concurrency`), stored by workers at start.
    queue_concurrency: int | None = None
    group_concurrency: int | None = None

    @classmethod
    def build(cls, **o: Any) -> TaskSettings:
        name = o["name"]
        return cls(
            name=None if name is None else check_optional_text("name", name),
            queue=check_name("queue", o["queue"]),
            max_attempts=check_int("max_attempts", o["max_attempts"], 1, MAX_ATTEMPTS),
            lease_ms=check_int("lease_ms", o["lease_ms"], 1, MAX_LEASE_MS),
            timeout_ms=_optional_int("timeout_ms", o["timeout_ms"], 1, MAX_DELAY_MS),
            backoff=resolve(o["backoff"]),
            priority=check_int("priority", o["priority"], PRIORITY_MIN, PRIORITY_MAX),
            retry_for=(
                None if o["retry_for"] is None else _exception_types("retry_for", o["retry_for"])
            ),
            non_retryable=_exception_types("non_retryable", o["non_retryable"]),
            store_result=_check_bool("store_result", o["store_result"]),
            result_ttl_ms=_result_ttl(o.get("result_ttl_ms"), o["store_result"]),
            rate_limit=_rate_limit(o.get("rate_limit")),
            queue_concurrency=check_limit("queue_concurrency", o.get("queue_concurrency")),
            group_concurrency=check_limit("group_concurrency", o.get("group_concurrency")),
        )


def _rate_limit(value: Any) -> str | None:
    parsed = parse_rate("rate_limit", value)
    return None if parsed is None else parsed.spec


# ----------------------------------------------------------------------------------- Task


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One call of a task, for `enqueue_many`: made by ``task.call(*args, **kwargs)``."""

    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: _CallOptions = field(default_factory=_CallOptions)


class _Enqueuer(Generic[P]):
    """What Task and TaskOptions share: enqueueing calls with a set of options."""

    _task: Task[Any, Any]
    _options: _CallOptions

    def call(self, *args: P.args, **kwargs: P.kwargs) -> TaskCall:
        """Describe a call for `enqueue_many` without enqueueing it."""
        return TaskCall(self._task, args, dict(kwargs), self._options)

    def _job_options(self, options: _CallOptions) -> tuple[str, dict[str, Any]]:
        t = self._task
        queue = options.queue or t.queue
        out: dict[str, Any] = {
            "id": options.id,
            "name": t.name,
            "priority": t.priority if options.priority is None else options.priority,
            "delay_ms": options.delay_ms or 0,
            "run_at_ms": options.run_at_ms,
            "max_attempts": options.max_attempts or t.max_attempts,
            "lease_ms": t.lease_ms,
            "unique_key": options.unique_key,
            "group": options.group,
            "expires_ms": options.expires_ms,
            "throttle_ms": options.throttle_ms,
            "debounce_ms": options.debounce_ms,
        }
        if options.depends_on is not None:
            out["depends_on"] = list(options.depends_on)
        if options.on_parent_failure is not None:
            out["on_parent_failure"] = options.on_parent_failure
        return queue, out

    def _batch(self, calls: Iterable[Any]) -> tuple[str, list[Any], dict[str, Any]]:
        """Check the calls of one enqueue_many: (queue, payloads, options shared by all).

        When every call has the same options (the usual case), the payloads are plain and
        the options go to the store once; else each payload is a Spec with its own.
        """
        if isinstance(calls, (str, bytes)) or not isinstance(calls, Iterable):
            raise InvalidArgument(
                "calls", "a list of task.call(...) or (args, kwargs) items", calls
            )
        queue: str | None = None
        payloads: list[Any] = []
        per_item: list[dict[str, Any]] = []
        # The options of the item before: calls of one task share one _CallOptions object.
        last: Any = _NONE
        item_queue = ""
        o: dict[str, Any] = {}
        for i, item in enumerate(calls):
            if isinstance(item, TaskCall):
                if item.task is not self._task:
                    raise InvalidArgument(
                        f"calls[{i}]", f"a call of task {self._task.name!r}", item.task.name
                    )
                call_options: _CallOptions | None = item.options
                args, kwargs = item.args, item.kwargs
            elif (
                isinstance(item, tuple)
                and len(item) == 2
                and isinstance(item[0], (list, tuple))
                and isinstance(item[1], Mapping)
            ):
                call_options = None
                args, kwargs = item
            else:
                raise InvalidArgument(
                    f"calls[{i}]", "task.call(...) or an (args, kwargs) tuple", item
                )
            if call_options is not last:
                last = call_options
                merged = (
                    self._options if call_options is None else self._options.merged(call_options)
                )
                item_queue, o = self._job_options(merged)
                if "depends_on" in o or "on_parent_failure" in o:
                    raise InvalidArgument(
                        f"calls[{i}].depends_on",
                        "None in enqueue_many (enqueue the jobs with dependencies one by one)",
                        o.get("depends_on"),
                    )
            if queue is None:
                queue = item_queue
            elif item_queue != queue:
                raise InvalidArgument(
                    f"calls[{i}].queue", f"{queue!r}, like every item of one call", item_queue
                )
            payloads.append(make_payload(args, kwargs))
            per_item.append(o)
        first = per_item[0] if per_item else {"id": None}
        if first["id"] is None and all(x is first for x in per_item):
            return (
                queue or self._task.queue,
                payloads,
                {k: v for k, v in first.items() if k != "id"},
            )
        specs = [Spec(p, **o) for p, o in zip(payloads, per_item, strict=True)]
        return queue or self._task.queue, specs, {}

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Enqueue one call of the task; its arguments must be msgpack data.

        Idempotent on the `id` and `unique_key` options: the existing job is returned.

        Raises:
            SerializationError: an argument is not msgpack data; nothing was written.
            PayloadTooLarge: the encoded arguments are over the store's payload limit.
        """
        queue, options = self._job_options(self._options)
        app = self._task.app
        if app.hooks.around_enqueue:
            return self._hooked(queue, [make_payload(args, kwargs)], options, False)[0]
        job = app.store.enqueue(queue, make_payload(args, kwargs), **options)
        return JobRef(job, app)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Enqueue one call of the task from asyncio (like `enqueue`)."""
        queue, options = self._job_options(self._options)
        app = self._task.app
        if app.hooks.around_enqueue:
            refs = await self._ahooked(queue, [make_payload(args, kwargs)], options, False)
            return refs[0]
        job = await app.async_store.enqueue(queue, make_payload(args, kwargs), **options)
        return JobRef(job, app)

    def enqueue_many(
        self, calls: Iterable[TaskCall | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRef]:
        """Enqueue many calls with one round trip per 1,000; all validated before sending.

        Args:
            calls: ``task.call(*args, **kwargs)`` items (their options apply per job) or
                ``(args, kwargs)`` tuples. All must go to one queue.

        Returns:
            One JobRef per call, in order.
        """
        queue, payloads, options = self._batch(calls)
        if not payloads:
            return []
        if self._task.app.hooks.around_enqueue:
            return self._hooked(queue, payloads, options, True)
        jobs = self._task.app.store.enqueue_many(queue, payloads, **options)
        return [JobRef(job, self._task.app) for job in jobs]

    async def aenqueue_many(
        self, calls: Iterable[TaskCall | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRef]:
        """Enqueue many calls from asyncio (like `enqueue_many`)."""
        queue, payloads, options = self._batch(calls)
        if not payloads:
            return []
        if self._task.app.hooks.around_enqueue:
            return await self._ahooked(queue, payloads, options, True)
        jobs = await self._task.app.async_store.enqueue_many(queue, payloads, **options)
        return [JobRef(job, self._task.app) for job in jobs]

    def _hooked(
        self, queue: str, payloads: list[Any], options: dict[str, Any], many: bool
    ) -> list[JobRef]:
        """Enqueue through the App's around_enqueue hooks (see redisq.middleware)."""
        app = self._task.app
        request = EnqueueRequest(self._task, queue, payloads, options, many)
        entered = enter_enqueue(app.hooks.around_enqueue, request)
        try:
            if many:
                jobs = app.store.enqueue_many(request.queue, request.payloads, **request.options)
            else:
                jobs = [app.store.enqueue(request.queue, request.payloads[0], **request.options)]
        except BaseException as exc:
            fail_enqueue(entered, exc)
            raise
        exit_enqueue(entered, jobs)
        return [JobRef(job, app) for job in jobs]

    async def _ahooked(
        self, queue: str, payloads: list[Any], options: dict[str, Any], many: bool
    ) -> list[JobRef]:
        """`_hooked` from asyncio (the hooks are plain generators: they must not block)."""
        app = self._task.app
        request = EnqueueRequest(self._task, queue, payloads, options, many)
        entered = enter_enqueue(app.hooks.around_enqueue, request)
        store = app.async_store
        try:
            if many:
                jobs = await store.enqueue_many(request.queue, request.payloads, **request.options)
            else:
                jobs = [await store.enqueue(request.queue, request.payloads[0], **request.options)]
        except BaseException as exc:
            fail_enqueue(entered, exc)
            raise
        exit_enqueue(entered, jobs)
        return [JobRef(job, app) for job in jobs]


class TaskOptions(_Enqueuer[P]):
    """A task with per-call enqueue options, made by ``task.options(...)``."""

    def __init__(self, task: Task[P, Any], options: _CallOptions) -> None:
        self._task = task
        self._options = options

    def __repr__(self) -> str:
        return f"<TaskOptions {self._task.name!r} {self._options}>"


class Task(_Enqueuer[P], Generic[P, R]):
    """A registered task: call it to run the function here, enqueue it to run on a worker.

    Attributes:
        app: the App it belongs to.
        fn: the function.
        name: the task name (the job name).
        queue, max_attempts, lease_ms, timeout_ms, backoff, priority, retry_for,
        non_retryable, store_result, result_ttl_ms, rate_limit, queue_concurrency,
        group_concurrency: its options (see `App.task`).
        is_async: True for ``async def`` functions.
    """

    def __init__(self, app: App, fn: Callable[..., R], settings: TaskSettings) -> None:
        self._task = self
        self._options = _CallOptions()
        self.app = app
        self.fn = fn
        self.name: str = settings.name or ""
        self.queue = settings.queue
        self.max_attempts = settings.max_attempts
        self.lease_ms = settings.lease_ms
        self.timeout_ms = settings.timeout_ms
        self.backoff = settings.backoff
        self.priority = settings.priority
        self.retry_for = settings.retry_for
        self.non_retryable = settings.non_retryable
        self.store_result = settings.store_result
        self.result_ttl_ms = settings.result_ttl_ms
        self.rate_limit = settings.rate_limit
        self.queue_concurrency = settings.queue_concurrency
        self.group_concurrency = settings.group_concurrency
        self.is_async = inspect.iscoroutinefunction(fn)
        self.context_param, self.context_position = _context_parameter(fn)
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None
        self._positional = _positional_range(self.signature, self.context_param)
        # The worker's fast path: a job with n positional arguments and no keyword ones
        # binds for sure when min_args <= n <= max_args (see check_arguments).
        fast = self._positional
        self.min_args: int = max(fast[0], fast[2]) if fast is not None else 0
        self.max_args: float = (
            fast[1] if fast is not None else float("inf") if self.signature is None else -1
        )
        self.__doc__ = getattr(fn, "__doc__", None)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        """Run the function here and now, as a plain call (no job, no worker)."""
        return self.fn(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature[P, R]:
        """Describe a call for a workflow (`redisq.chain`, `group`, `chord`) without
        enqueueing it; a chain step after the first leaves out its first argument (the
        previous step's result)."""
        from redisq.canvas import Signature

        return Signature(self, args, kwargs, self._options)

    def options(
        self,
        *,
        id: str | None = None,
        unique_key: str | None = None,
        delay_ms: int | None = None,
        run_at_ms: int | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        depends_on: Sequence[Any] | None = None,
        on_parent_failure: str | None = None,
        group: str | None = None,
        expires_ms: int | None = None,
        throttle_ms: int | None = None,
        debounce_ms: int | None = None,
    ) -> TaskOptions[P]:
        """Set options for the next enqueue: ``task.options(delay_ms=5000).enqueue(...)``.

        Args:
            id: the job id (enqueue is idempotent on it).
            unique_key: a dedupe key, held while the job is live.
            delay_ms: run no earlier than this many ms from now.
            run_at_ms: run no earlier than this Redis time (ms); not with delay_ms.
            priority: overrides the task's priority.
            max_attempts: overrides the task's max_attempts.
            queue: overrides the task's queue.
            depends_on: jobs (Jobs, JobRefs, ids of its queue, or (queue, id) pairs) that
                must complete before this one runs; it waits meanwhile (docs/workflows.md).
            on_parent_failure: "fail" (default), "continue" or "ignore": what a parent that
                ends dead, cancelled or deleted does to it (Store.enqueue).
            group: the job's concurrency group (see `Store.enqueue`).
            expires_ms: cancel the job (last_error "expired") if it has not started within
                this many ms.
            throttle_ms: with unique_key: repeats within this many ms of this enqueue return
                this job, even after it finished.
            debounce_ms: with unique_key: the job waits this long; a repeat while it waits
                replaces its arguments and waits debounce_ms from then.

        Raises:
            InvalidArgument: an option is out of range.
        """
        return TaskOptions(
            self,
            _call_options(
                id,
                unique_key,
                delay_ms,
                run_at_ms,
                priority,
                max_attempts,
                queue,
                depends_on,
                on_parent_failure,
                group,
                expires_ms,
                throttle_ms,
                debounce_ms,
            ),
        )

    def _with_context(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], ctx: Any
    ) -> tuple[list[Any], dict[str, Any]]:
        """Add the Context to a job's arguments: at its position when the arguments before
        it are given positionally, else by keyword."""
        name, position = self.context_param, self.context_position
        if name is None:
            return list(args), dict(kwargs)
        if position is not None and len(args) >= position:
            return [*args[:position], ctx, *args[position:]], dict(kwargs)
        return list(args), {**kwargs, name: ctx}

    def invoke(self, args: Sequence[Any], kwargs: Mapping[str, Any], ctx: Context | None) -> Any:
        """Call the function with a job's arguments, passing `ctx` where it asks for one."""
        if ctx is None or self.context_param is None:
            return self.fn(*args, **kwargs)
        full_args, full_kwargs = self._with_context(args, kwargs, ctx)
        return self.fn(*full_args, **full_kwargs)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Check that a job's arguments fit the function's signature.

        Raises:
            TypeError: they do not (the job can never succeed).
        """
        if self.signature is None:
            return
        # The common case, decided without binding: positional arguments only, their count
        # within the function's range (the Context is passed at its position or by keyword).
        fast = self._positional
        if fast is not None and not kwargs:
            low, high, context_after = fast
            if low <= len(args) <= high and len(args) >= context_after:
                return
        full_args, full_kwargs = self._with_context(args, kwargs, None)
        self.signature.bind(*full_args, **full_kwargs)
