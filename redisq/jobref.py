"""`JobRef`: a handle on an enqueued job, to wait for its result."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from redisq._core.events import MAX_WAIT_MS
from redisq.errors import JobFailed, JobNotFound, ResultExpired
from redisq.models import Job, JobState, Retention

if TYPE_CHECKING:
    from redisq.app import App

__all__ = ["JobRef"]


def _duration(ms: int) -> str:
    """Write a duration in ms in its largest whole unit: 1 day, 2 h, 30 min, 5 s, 1500 ms."""
    for unit, size in (("day", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if ms and ms % size == 0:
            n = ms // size
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{ms} ms"


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

    def _gone(self) -> JobNotFound:
        """The error for a job whose record is gone (and its stored result, if it had one)."""
        where = f"job {self.id!r} of queue {self.queue!r}"
        task = self._app.get_task(self.job.name or "")
        if task is not None and not task.store_result:
            return JobNotFound(
                self.queue,
                self.id,
                f"{where} is gone: it was deleted or purged, or it finished and retention"
                f" trimmed its record; its task {task.name!r} stores no result"
                " (store_result=False), so there is none to read",
            )
        ttl = task.result_ttl_ms if task is not None else None
        if ttl is None:
            retention = self._app.connect_options.get("retention")
            ttl = (retention if isinstance(retention, Retention) else Retention()).result_ttl_ms
        return ResultExpired(
            self.queue,
            self.id,
            f"{where} is gone and its result expired: a stored result stays readable"
            f" {_duration(ttl)} after the job completed (result_ttl_ms of the task or of"
            " redisq.Retention), after retention trimmed its record; or the job was deleted or"
            " purged, or its handler returned None (nothing stored)",
        )

    def _outcome(self, job: Job | None) -> tuple[bool, Any]:
        if job is None or job.created_at_ms != self.job.created_at_ms:
            # (Another created_at is another job enqueued later under the same id.)
            raise self._gone()
        if job.state is JobState.COMPLETED:
            return True, job.result
        if job.state in (JobState.DEAD, JobState.CANCELLED):
            raise JobFailed(job)
        return False, job.state

    def _timeout(self, timeout: float | None, state: Any) -> TimeoutError:
        return TimeoutError(
            f"job {self.id!r} of queue {self.queue!r} is still {state} after {timeout:g} s"
        )

    def _wait_ms(self, deadline: float | None, max_block_ms: int) -> int:
        """How long the next wait blocks: what is left of the timeout, within one blocking
        call's limit (longer waits register again)."""
        ms = min(max_block_ms, MAX_WAIT_MS)
        if deadline is not None:
            ms = min(ms, math.ceil((deadline - time.monotonic()) * 1000))
        return max(1, ms)

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job is final and return its result.

        Blocks on Redis, not polling: the script that makes the job final (its ack, its
        nack or reap to the dead set, its cancel) wakes the wait in the same step (a list the
        wait pops with BLPOP; docs/events.md). A wait costs three commands (two when the job
        is final already), and three more for each further minute. A stored result stays
        readable for its result_ttl_ms (one day by default) after the job completed, even
        once retention trimmed the completed record.

        Args:
            timeout: seconds to wait at most; None waits for ever.

        Returns:
            The stored result of a completed job: the handler's return value when the task
            has ``store_result=True``, else None.

        Raises:
            JobFailed: the job was dead-lettered or cancelled (carries the Job and last_error).
            TimeoutError: the job was not final within `timeout`.
            ResultExpired: the job is gone (deleted, or trimmed by retention) and its stored
                result has expired too (a JobNotFound).
            JobNotFound: the job is gone and its task stores no result.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        store = self._app.store
        while True:
            ms = self._wait_ms(deadline, store.settings.max_block_ms)
            store.wait_final(self.queue, self.id, timeout_ms=ms)
            done, value = self._outcome(self.get())
            if done:
                return value
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise self._timeout(timeout, value)

    async def aresult(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109  (mirrors result(timeout=))
        """Wait from asyncio until the job is final and return its result (like `result`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        store = self._app.async_store
        while True:
            ms = self._wait_ms(deadline, store.settings.max_block_ms)
            await store.wait_final(self.queue, self.id, timeout_ms=ms)
            done, value = self._outcome(await self.aget())
            if done:
                return value
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise self._timeout(timeout, value)
