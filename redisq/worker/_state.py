"""The worker's shared state: jobs in flight, handler slots, and outcomes to settle.

One lock guards everything here; every thread (fetcher, handlers, keeper, settler, the
orchestrating `run`) changes state only through `State`'s methods, which keep these rules:

- an entry is in `entries` from its claim until its outcome was settled with the store (or
  given up), so the keeper renews its lease the whole time, including while its ack waits;
- at most `concurrency` handlers run; claimed jobs beyond that wait in `pending`;
- each entry gets at most one outcome: the first of its handler's result, its timeout, or
  its release at stop wins; later ones are dropped (and logged).
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisq._core.ops import MAX_CLAIM
from redisq.worker._support import logger

if TYPE_CHECKING:
    from redisq.context import Context
    from redisq.models import Job
    from redisq.task import Task

__all__ = ["Entry", "Outcome", "Phase", "State"]


class Phase(enum.Enum):
    """Where a claimed job is inside the worker."""

    #: Claimed, waiting for a free handler slot (prefetched).
    PENDING = "pending"
    #: Its handler runs.
    RUNNING = "running"
    #: An outcome was decided and waits for the settler.
    DECIDED = "decided"


class Entry:
    """One claimed job while the worker holds it."""

    __slots__ = (
        "cancelled",
        "claimed_at",
        "ctx",
        "handle",
        "job",
        "lease_ms",
        "lease_until",
        "lost",
        "phase",
        "released",
        "renew_at",
        "settled",
        "started_at",
        "task",
        "timed_out",
        "timeout_at",
    )

    def __init__(self, job: Job, task: Task[Any, Any] | None, lease_ms: int, now: float) -> None:
        self.job = job
        self.task = task
        self.lease_ms = lease_ms
        self.claimed_at = now
        #: Local (monotonic) estimate of the lease's end: the claim was sent at `now`.
        self.lease_until = now + lease_ms / 1000
        self.renew_at = now + lease_ms / 3000
        self.started_at: float | None = None
        self.timeout_at: float | None = None
        self.phase = Phase.PENDING
        self.timed_out = False
        self.released = False
        self.lost = False
        #: The store took its outcome (or it was given up): the worker forgot it.
        self.settled = False
        self.cancelled = threading.Event()
        self.ctx: Context | None = None
        #: The asyncio task running the handler (async pool), to cancel it.
        self.handle: Any = None

    @property
    def key(self) -> tuple[str, str]:
        """(queue, id)."""
        return self.job.queue, self.job.id

    def __repr__(self) -> str:
        return f"<Entry {self.job.queue}/{self.job.id} {self.phase.value}>"


@dataclass(slots=True)
class Outcome:
    """What to tell the store about an entry.

    Attributes:
        kind: ``"ack"``, ``"nack"`` or ``"release"``.
        label: what it means, for logs and metrics: completed, retry, failed, snooze,
            timeout, release, unknown.
    """

    entry: Entry
    kind: str
    label: str
    result: Any = None
    error: str = ""
    delay_ms: int | None = None
    dead: bool = False
    #: monotonic time before which a retry after a transient error waits.
    not_before: float = 0.0


class State:
    """The in-flight registry and the handler slots; thread-safe.

    Args:
        concurrency: handler slots.
        prefetch: jobs claimed beyond the free slots.
        start: starts a handler for an entry (the executor's; called outside the lock).
        settle: hands an outcome to the settler.
    """

    def __init__(
        self,
        concurrency: int,
        prefetch: int,
        start: Callable[[Entry], None],
        settle: Callable[[Outcome], None],
    ) -> None:
        self.concurrency = concurrency
        self.prefetch = prefetch
        self._start = start
        self._settle = settle
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.entries: dict[tuple[str, str], Entry] = {}
        self.pending: deque[Entry] = deque()
        self.running = 0
        self.stopping = False

    # ------------------------------------------------------------------------- capacity

    def capacity(self) -> int:
        """How many jobs the fetcher may claim now (call with the lock held)."""
        return self.concurrency + self.prefetch - self.running - len(self.pending)

    def wait_capacity(self, timeout: float) -> int:
        """Wait until jobs may be claimed (or stop); return how many (0 when stopping)."""
        with self.changed:
            self.changed.wait_for(lambda: self.stopping or self.capacity() > 0, timeout)
            # One claim leases at most MAX_CLAIM jobs; the fetcher claims again for the rest.
            return 0 if self.stopping else max(0, min(self.capacity(), MAX_CLAIM))

    # --------------------------------------------------------------------------- claims

    def admit(self, entries: list[Entry]) -> list[Entry]:
        """Register claimed entries and start what fits; return those to release (stopping)."""
        starting: list[Entry] = []
        refused: list[Entry] = []
        with self.lock:
            for entry in entries:
                self.entries[entry.key] = entry
                if self.stopping:
                    entry.phase = Phase.DECIDED
                    entry.released = True
                    refused.append(entry)
                elif self.running < self.concurrency:
                    self.running += 1
                    entry.phase = Phase.RUNNING
                    starting.append(entry)
                else:
                    self.pending.append(entry)
        for entry in starting:
            self._start(entry)
        return refused

    def mark_started(self, entry: Entry) -> None:
        """Note that the handler of `entry` starts now (its timeout counts from here)."""
        now = time.monotonic()
        with self.lock:
            entry.started_at = now
            task = entry.task
            if task is not None and task.timeout_ms is not None:
                entry.timeout_at = now + task.timeout_ms / 1000

    # ------------------------------------------------------------------------- outcomes

    def decide(self, entry: Entry, outcome: Outcome) -> bool:
        """Record the first outcome of an entry and hand it to the settler; False if late."""
        with self.lock:
            if entry.phase is Phase.DECIDED or entry.key not in self.entries:
                return False
            entry.phase = Phase.DECIDED
        self._settle(outcome)
        return True

    def handler_done(self, entry: Entry, outcome: Outcome | None) -> None:
        """A handler returned: settle its outcome (unless one came first), free its slot."""
        if outcome is not None and not self.decide(entry, outcome):
            why = (
                "its timeout already failed the attempt"
                if entry.timed_out
                else "its lease was released at stop"
                if entry.released
                else "an outcome was already decided"
            )
            logger.warning(
                "job %s/%s: the handler finished after %s; its %s is discarded (the store"
                " would refuse it: the job has moved on)",
                entry.job.queue,
                entry.job.id,
                why,
                outcome.label,
            )
        starting: Entry | None = None
        with self.changed:
            self.running -= 1
            if self.pending and not self.stopping:
                starting = self.pending.popleft()
                starting.phase = Phase.RUNNING
                self.running += 1
            self.changed.notify_all()
        if starting is not None:
            self._start(starting)

    def settled(self, entry: Entry) -> None:
        """The store took the entry's outcome (or it was given up): forget the entry."""
        with self.changed:
            entry.settled = True
            if self.entries.get(entry.key) is entry:
                del self.entries[entry.key]
            self.changed.notify_all()

    # ----------------------------------------------------------------------------- stop

    def begin_stop(self) -> list[Entry]:
        """Stop admitting work; take the prefetched entries (to release them)."""
        with self.changed:
            self.stopping = True
            pending = list(self.pending)
            self.pending.clear()
            for entry in pending:
                entry.phase = Phase.DECIDED
                entry.released = True
            self.changed.notify_all()
        return pending

    def _busy(self) -> bool:
        # Handlers whose outcome was decided (a timeout) may still run: not waited for.
        return any(e.phase is Phase.RUNNING for e in self.entries.values())

    def wait_idle(self, timeout: float, hurry: threading.Event) -> bool:
        """Wait until no handler without an outcome runs, `hurry` is set or `timeout` passes.

        Returns:
            True when no such handler runs.
        """
        deadline = time.monotonic() + timeout
        with self.changed:
            while self._busy() and not hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 0.05))
            return not self._busy()

    def take_running(self) -> list[Entry]:
        """Take the entries whose handler still runs and has no outcome (to release them)."""
        with self.lock:
            taken = [e for e in self.entries.values() if e.phase is Phase.RUNNING]
            for entry in taken:
                entry.phase = Phase.DECIDED
                entry.released = True
        return taken

    def wait_settled(self, timeout: float, hurry: threading.Event | None = None) -> bool:
        """Wait until every entry was settled (or the timeout); True when none is left."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.entries:
                left = deadline - time.monotonic()
                if left <= 0 or (hurry is not None and hurry.is_set()):
                    break
                self.changed.wait(min(left, 0.05))
            return not self.entries

    def snapshot(self) -> list[Entry]:
        """The entries in flight now."""
        with self.lock:
            return list(self.entries.values())
