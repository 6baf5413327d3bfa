"""Hooks and middleware: code of yours that runs around workers, jobs and enqueues.

::

    app = redisq.App("redis://localhost:6379")

    @app.before_job
    def log_start(ctx: redisq.Context) -> None:
        print("starting", ctx.job.id)

    class Timing(redisq.Middleware):            # or bundle hooks in a middleware
        def before_job(self, ctx): ...
        def after_job(self, ctx, outcome): ...

    app.add_middleware(Timing())

The order (docs/hooks.md): middleware and single hooks run in the order they were added for
``on_worker_start``, ``before_job`` and ``around_enqueue`` (the first added is the outermost
layer), and in the reverse order for ``after_job``, ``on_retry``, ``on_dead`` and
``on_worker_stop`` (the innermost layer first): an onion. The ``after_job`` of a layer runs
only when its ``before_job`` ran (or it has none), so what a before_job opens its after_job
closes.

An error in a job's hook is logged with the job id and fails that attempt (as if the handler
had raised it), never the worker; the hooks run in the attempt, before its outcome is sent,
so an attempt still has exactly one outcome. See `Middleware` for each hook.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from redisq.errors import InvalidArgument

if TYPE_CHECKING:
    from redisq.context import Context
    from redisq.models import Job
    from redisq.task import Task
    from redisq.worker import Worker

__all__ = ["EnqueueRequest", "JobOutcome", "Middleware"]

#: Errors of around_enqueue hooks (the worker's hooks log to "redisq.worker").
logger = logging.getLogger("redisq.middleware")

#: What a job's outcome is, as hooks see it.
OutcomeStatus = Literal["completed", "retry", "dead", "snoozed", "rate_limited", "released"]

HOOKS = (
    "on_worker_start",
    "on_worker_stop",
    "before_job",
    "after_job",
    "on_retry",
    "on_dead",
    "around_enqueue",
)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How an attempt ended, as `after_job`, `on_retry` and `on_dead` see it.

    It is decided when they run but not yet sent to Redis (an after_job that raises turns a
    completion into a failed attempt); the store may still refuse it (the lease was lost).

    Attributes:
        status: ``"completed"``; ``"retry"`` (the attempt failed, the job runs again);
            ``"dead"`` (dead-lettered: attempts used up, a non-retryable error, or a job no
            task can run); ``"snoozed"``, ``"rate_limited"`` (put back, attempt not
            counted); ``"released"`` (given back at a stop, attempt not counted).
        result: what the handler returned (completed).
        error: the exception that failed the attempt (None for a completion, and for a job
            refused before it ran: see `message`); a timeout is a `TimeoutError`.
        message: the error text stored on the job (`Job.last_error`), "" if none.
        delay_ms: the delay before the job runs again (retry, snoozed, rate_limited).
    """

    status: OutcomeStatus
    result: Any = None
    error: BaseException | None = None
    message: str = ""
    delay_ms: int | None = None


@dataclass(slots=True)
class EnqueueRequest:
    """An enqueue through the task API, as `around_enqueue` sees it before it is sent.

    A hook may change `queue` and `options` before it yields (they are what is sent).

    Attributes:
        task: the Task enqueued.
        queue: the queue the jobs go to.
        payloads: the jobs' payloads (``{"args": [...], "kwargs": {...}}``, or `Spec`s with
            per-job options in an enqueue_many).
        options: the options of every job (priority, delay_ms, id, unique_key, ...).
        many: True for enqueue_many.
    """

    task: Task[Any, Any]
    queue: str
    payloads: list[Any]
    options: dict[str, Any] = field(default_factory=dict)
    many: bool = False


class Middleware:
    """Hooks bundled in one object: subclass it and override the hooks you need.

    Each hook may be a plain method or an ``async def`` one (awaited on the worker's event
    loop with pool="async"; on a private event loop in the thread with pool="thread"), except
    `around_enqueue`, a generator. The hooks that are not overridden cost nothing. Any object
    with some of these methods works too (they are looked up by name).
    """

    def on_worker_start(self, worker: Worker) -> Awaitable[None] | None:
        """Run once when a worker starts, before it claims anything (open a DB pool)."""
        return None

    def on_worker_stop(self, worker: Worker) -> Awaitable[None] | None:
        """Run once when a worker stops, after its jobs ended (close the DB pool)."""
        return None

    def before_job(self, ctx: Context) -> Awaitable[None] | None:
        """Run before each attempt's handler, in its thread or asyncio task."""
        return None

    def after_job(self, ctx: Context, outcome: JobOutcome) -> Awaitable[None] | None:
        """Run after each attempt's handler, with its outcome, before it is sent to Redis."""
        return None

    def on_retry(self, ctx: Context, outcome: JobOutcome) -> Awaitable[None] | None:
        """Run after after_job when the attempt failed and the job will run again."""
        return None

    def on_dead(self, ctx: Context, outcome: JobOutcome) -> Awaitable[None] | None:
        """Run after after_job when the job is dead-lettered."""
        return None

    def around_enqueue(self, request: EnqueueRequest) -> Generator[None, list[Job], None] | None:
        """Wrap each enqueue of the task API: a generator that yields once, receiving the
        enqueued jobs (an error of the enqueue is raised at the yield)."""
        return None


class _Single(Middleware):
    """One hook function registered with an App decorator (``@app.before_job``)."""

    def __init__(self, kind: str, fn: Callable[..., Any]) -> None:
        self.kind = kind
        self.fn = fn
        setattr(self, kind, fn)

    def __repr__(self) -> str:
        return f"<{self.kind} hook {hook_name(self.fn)}>"


def hook_name(fn: Any) -> str:
    """A hook's name for messages: module.qualname (of its class, for a method)."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, _Single):
        cls = type(owner)
        return f"{cls.__module__}.{cls.__qualname__}.{getattr(fn, '__name__', '?')}"
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', None) or repr(fn)}"


def _hook(middleware: Any, kind: str) -> Callable[..., Any] | None:
    """The middleware's hook of `kind`, or None when it has none (or the no-op default)."""
    fn = getattr(middleware, kind, None)
    if fn is None:
        return None
    if not callable(fn):
        raise InvalidArgument(f"middleware.{kind}", "a callable", fn)
    if getattr(fn, "__func__", None) is getattr(Middleware, kind):
        return None  # Middleware's no-op: not called at all
    return fn  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Layer:
    """One middleware's job hooks (before_job and after_job, either may be None)."""

    before: Callable[..., Any] | None
    after: Callable[..., Any] | None


@dataclass(frozen=True, slots=True)
class Hooks:
    """The hooks of an App, compiled in the order they run (see the module docstring)."""

    #: (index of the middleware, hook), in the order they run.
    worker_start: tuple[tuple[int, Callable[..., Any]], ...] = ()
    #: Reversed: the last added runs first.
    worker_stop: tuple[tuple[int, Callable[..., Any]], ...] = ()
    #: In the order added; after_job hooks run in reverse over the layers entered.
    layers: tuple[Layer, ...] = ()
    on_retry: tuple[Callable[..., Any], ...] = ()
    on_dead: tuple[Callable[..., Any], ...] = ()
    around_enqueue: tuple[Callable[..., Any], ...] = ()

    @classmethod
    def build(cls, middleware: Sequence[Any]) -> Hooks:
        """Compile a list of middleware (each checked: InvalidArgument names what is wrong)."""
        found = [{kind: _hook(m, kind) for kind in HOOKS} for m in middleware]
        for m, hooks in zip(middleware, found, strict=True):
            around = hooks["around_enqueue"]
            if around is not None and not inspect.isgeneratorfunction(around):
                raise InvalidArgument(
                    "around_enqueue",
                    "a generator function that yields once (def hook(request): ... yield ...)",
                    m,
                )
        layers = tuple(
            Layer(h["before_job"], h["after_job"])
            for h in found
            if h["before_job"] is not None or h["after_job"] is not None
        )
        return cls(
            worker_start=tuple(
                (i, f) for i, h in enumerate(found) if (f := h["on_worker_start"]) is not None
            ),
            worker_stop=tuple(
                (i, f)
                for i, h in reversed(list(enumerate(found)))
                if (f := h["on_worker_stop"]) is not None
            ),
            layers=layers,
            on_retry=tuple(f for h in reversed(found) if (f := h["on_retry"]) is not None),
            on_dead=tuple(f for h in reversed(found) if (f := h["on_dead"]) is not None),
            around_enqueue=tuple(f for h in found if (f := h["around_enqueue"]) is not None),
        )

    @property
    def for_jobs(self) -> bool:
        """Tell whether any hook runs around jobs (else the worker runs none: no cost)."""
        return bool(self.layers or self.on_retry or self.on_dead)


def single(kind: str, fn: Any) -> Middleware:
    """Wrap one hook function as a middleware (checking it)."""
    if not callable(fn):
        raise InvalidArgument(kind, "a function (used as @app." + kind + ")", fn)
    return _Single(kind, fn)


# ------------------------------------------------------------------------- around_enqueue


def enter_enqueue(hooks: tuple[Callable[..., Any], ...], request: EnqueueRequest) -> list[Any]:
    """Run the around_enqueue hooks up to their yield, outermost first; return them to
    `exit_enqueue`. A hook that raises before its yield stops the enqueue: the hooks entered
    get the error at their yield, and it is raised to the caller (nothing was written)."""
    entered: list[Generator[None, list[Job], None]] = []
    for fn in hooks:
        try:
            gen = fn(request)
            next(gen)
        except StopIteration:
            error: BaseException = RuntimeError(
                f"around_enqueue hook {hook_name(fn)} returned without yielding: it must yield"
                " once (the enqueue happens at the yield)"
            )
            fail_enqueue(entered, error)
            raise error from None
        except BaseException as exc:
            fail_enqueue(entered, exc)
            raise
        entered.append(gen)
    return entered


def fail_enqueue(entered: list[Any], error: BaseException) -> None:
    """Throw the enqueue's error into the entered hooks, innermost first (they clean up)."""
    for gen in reversed(entered):
        try:
            gen.throw(error)
        except StopIteration:
            pass
        except BaseException as exc:
            if exc is not error:
                logger.error("an around_enqueue hook failed while unwinding: %r", exc)
        else:
            gen.close()


def exit_enqueue(entered: list[Any], jobs: list[Job]) -> None:
    """Send the enqueued jobs into the entered hooks, innermost first. An error of a hook
    now is logged with the job ids, not raised: the jobs are enqueued (raising would make
    callers enqueue them again)."""
    for gen in reversed(entered):
        try:
            gen.send(jobs)
        except StopIteration:
            continue
        except Exception:
            ids = ", ".join(f"{j.queue}/{j.id}" for j in jobs[:10])
            logger.exception(
                "an around_enqueue hook failed after the enqueue of %s; the job(s) are"
                " enqueued all the same",
                ids,
            )
            continue
        gen.close()
        logger.error("an around_enqueue hook yielded twice; it must yield once")


# --------------------------------------------------------------------------- worker hooks


def call_blocking(fn: Callable[..., Any], *args: Any) -> None:
    """Call a hook from a thread: an awaitable it returns runs on a private event loop."""
    value = fn(*args)
    if inspect.isawaitable(value):
        asyncio.run(_awaited(value))


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value
