"""What a running task handler knows about its job: `Context` and `current_context()`.

A handler that declares a parameter named ``ctx`` (or annotated ``redisq.Context``) receives
its Context; any code running inside a handler can also call `redisq.current_context()`.

The Context is not part of the job's arguments: ``task.enqueue(x)`` for ``def task(ctx, x)``.
Type checkers see the function's own signature in ``enqueue``, so give a typed ``ctx`` a
default (``ctx: redisq.Context | None = None``) or call `current_context()` instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from redisq.errors import JobNotFound, LeaseLost

if TYPE_CHECKING:
    from redisq._sync.store import Store
    from redisq.models import Job

__all__ = ["Context", "current_context"]

#: The running handler's Context, or a ``(make, arg)`` pair that makes it on first use with
#: ``make(arg)`` (the worker's hot path: most handlers never ask for their Context, and
#: ``make`` returns the same Context on every call for one job).
_current: ContextVar[Context | tuple[Callable[[Any], Context], Any] | None] = ContextVar(
    "redisq_context", default=None
)


def current_context() -> Context:
    """Return the Context of the task handler running in this thread or asyncio task.

    Raises:
        LookupError: called outside a task handler run by a worker.
    """
    value = _current.get()
    if value is None:
        raise LookupError(
            "redisq.current_context() is only available inside a task handler run by a"
            " redisq Worker"
        )
    if type(value) is tuple:
        make, arg = value
        return make(arg)
    assert isinstance(value, Context)
    return value


class Context:
    """The job a handler is running, its lease, and the worker's view of it.

    Attributes:
        job: the Job as claimed (payload, attempts, token...).
        worker: the name of the worker running it.
        cancelled_event: set when the worker learns the lease is lost: the job was cancelled
            (within about a millisecond of `Store.cancel`, or `JobRef.cancel`), or its lease
            expired and another claim took it (at the next renewal). The handler should stop:
            whatever it returns is dropped.

    Stopping on a cancel: an async handler's task is cancelled (``asyncio.CancelledError``
    at its next ``await``). A thread cannot be interrupted, so a sync handler that runs long
    checks now and then, with ``ctx.cancelled`` (a bool), ``ctx.raise_if_cancelled()``, or
    ``ctx.cancelled_event.wait(timeout)`` in place of a sleep. Its handler slot is free as
    soon as it returns or raises.
    """

    def __init__(
        self,
        job: Job,
        worker: str,
        store: Store,
        cancelled_event: threading.Event,
        on_renewed: Callable[[Job], None] | None = None,
    ) -> None:
        self.job = job
        self.worker = worker
        self._event: threading.Event | None = cancelled_event
        self._event_source: Callable[[], threading.Event] | None = None
        self._store = store
        self._on_renewed = on_renewed

    @classmethod
    def _lazy(
        cls,
        job: Job,
        worker: str,
        store: Store,
        event_source: Callable[[], threading.Event],
        on_renewed: Callable[[Job], None] | None,
    ) -> Context:
        """A Context whose cancellation Event is made by `event_source` on first use.

        The worker makes one Context per job; most handlers never look at the Event.
        """
        ctx = cls.__new__(cls)
        ctx.job = job
        ctx.worker = worker
        ctx._event = None
        ctx._event_source = event_source
        ctx._store = store
        ctx._on_renewed = on_renewed
        return ctx

    @property
    def cancelled_event(self) -> threading.Event:
        """Set when the worker learns the lease is lost (see `cancelled`)."""
        event = self._event
        if event is None:
            source = self._event_source
            event = self._event = threading.Event() if source is None else source()
        return event

    def __repr__(self) -> str:
        return (
            f"<Context job={self.job.id!r} queue={self.job.queue!r} attempt={self.attempt}"
            f" token={self.token} cancelled={self.cancelled}>"
        )

    @property
    def id(self) -> str:
        """The job id."""
        return self.job.id

    @property
    def queue(self) -> str:
        """The job's queue."""
        return self.job.queue

    @property
    def attempt(self) -> int:
        """The attempt number of this run (1 for the first)."""
        return self.job.attempts

    @property
    def token(self) -> int:
        """The fencing token of this run's lease, strictly increasing per queue.

        Use it to fence your own side effects, e.g. ``UPDATE ... WHERE fence < :token``.
        """
        return self.job.token or 0

    @property
    def cancelled(self) -> bool:
        """Tell whether the lease was lost (cancelled, or taken over after it expired)."""
        return self.cancelled_event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise `LeaseLost` if the lease was lost (the job was cancelled, or taken over):
        a check for sync handlers to call between steps of long work.

        Raises:
            LeaseLost: `cancelled` is True; the worker drops the handler's outcome.
        """
        if self.cancelled_event.is_set():
            raise LeaseLost(
                self.job.id,
                self.job.token,
                "the worker was told the job was cancelled or its lease was taken over",
            )

    def _lost(self, exc: LeaseLost | JobNotFound) -> None:
        self.cancelled_event.set()
        raise exc

    def progress(self, value: Any) -> None:
        """Record a progress value (msgpack) on the job; one round trip.

        Raises:
            LeaseLost: the lease is lost; `cancelled` is now True.
        """
        try:
            self._store.progress(self.job, value)
        except (LeaseLost, JobNotFound) as exc:
            self._lost(exc)

    def heartbeat(self) -> None:
        """Renew the lease now (the worker also renews it every lease_ms / 3).

        Raises:
            LeaseLost: the lease is lost; `cancelled` is now True.
        """
        try:
            renewed = self._store.renew(self.job)
        except (LeaseLost, JobNotFound) as exc:
            self._lost(exc)
        if self._on_renewed is not None:
            self._on_renewed(renewed)

    async def aprogress(self, value: Any) -> None:
        """Record a progress value from an async handler (runs `progress` in a thread)."""
        await asyncio.to_thread(self.progress, value)

    async def aheartbeat(self) -> None:
        """Renew the lease now from an async handler (runs `heartbeat` in a thread)."""
        await asyncio.to_thread(self.heartbeat)
