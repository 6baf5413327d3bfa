"""`JobRef`: a handle on an enqueued job, to wait for its result."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from redisq.errors import JobFailed, JobNotFound
from redisq.models import Job, JobState

if TYPE_CHECKING:
    from redisq.app import App

__all__ = ["JobRef"]

#: JobRef.result polls `get` from this interval, doubling up to the cap (seconds).
_POLL_FIRST_S = 0.002
_POLL_CAP_S = 0.2


class JobRef:
    """A handle on an enqueued job: its id and queue, and a way to wait for its outcome.

    Attributes:
        id: the job id.
        queue: its queue.
        job: the snapshot enqueue returned (the existing job when enqueue was idempotent).
    """

    __slots__ = ("_app", "id", "job", "queue")

    def __init__(self, job: Job, app: App) -> None:
        self.job = job
        self.id = job.id
        self.queue = job.queue
        self._app = app

    def __repr__(self) -> str:
        return f"<JobRef {self.queue}/{self.id}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobRef):
            return NotImplemented
        return (self.queue, self.id) == (other.queue, other.id)

    def __hash__(self) -> int:
        return hash((self.queue, self.id))

    def get(self) -> Job | None:
        """Read the job's current snapshot (None once deleted or trimmed)."""
        return self._app.store.get(self.queue, self.id)

    async def aget(self) -> Job | None:
        """Read the job's current snapshot from asyncio."""
        return await self._app.async_store.get(self.queue, self.id)

    def cancel(self) -> bool:
        """Cancel the job if it has not finished; True when this call cancelled it."""
        return self._app.store.cancel(self.queue, self.id)

    async def acancel(self) -> bool:
        """Cancel the job from asyncio."""
        return await self._app.async_store.cancel(self.queue, self.id)

    def _outcome(self, job: Job | None) -> tuple[bool, Any]:
        if job is None:
            raise JobNotFound(self.queue, self.id)
        if job.state is JobState.COMPLETED:
            return True, job.result
        if job.state in (JobState.DEAD, JobState.CANCELLED):
            raise JobFailed(job)
        return False, job.state

    def _timeout(self, timeout: float | None, state: Any) -> TimeoutError:
        return TimeoutError(
            f"job {self.id!r} of queue {self.queue!r} is still {state} after {timeout:g} s"
        )

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job is final and return its result.

        Polls the job with a growing interval (2 ms doubling to 200 ms), so waiting is cheap.

        Args:
            timeout: seconds to wait at most; None waits for ever.

        Returns:
            The stored result of a completed job: the handler's return value when the task
            has ``store_result=True``, else None.

        Raises:
            JobFailed: the job was dead-lettered or cancelled (carries the Job and last_error).
            TimeoutError: the job was not final within `timeout`.
            JobNotFound: the job no longer exists (deleted, or trimmed by retention).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _POLL_FIRST_S
        while True:
            done, value = self._outcome(self.get())
            if done:
                return value
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout(timeout, value)
                delay = min(delay, left)
            time.sleep(delay)
            delay = min(delay * 2, _POLL_CAP_S)

    async def aresult(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109  (mirrors result(timeout=))
        """Wait from asyncio until the job is final and return its result (like `result`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _POLL_FIRST_S
        while True:
            done, value = self._outcome(await self.aget())
            if done:
                return value
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout(timeout, value)
                delay = min(delay, left)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_CAP_S)
