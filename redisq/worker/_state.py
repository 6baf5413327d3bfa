"""The worker's shared state: jobs in flight, handler slots, and outcomes to settle.

One lock guards everything here; every thread (fetcher, handlers, keeper, settler, the
orchestrating `run`) changes state only through `State`'s methods, which keep these rules:

- an entry is in `entries` from its claim until its outcome was settled with the store (or
  given up), so the keeper renews its lease the whole time, including while its ack waits;
- claimed entries wait in `pending` (the buffer) until a handler takes one (`next`); at most
  `concurrency` handlers run; the buffer's size follows `Sizer` (`_sizing.py`); at stop,
  what is still pending is released;
- a pending entry never starts once its lease may be gone: one whose renewal found the lease
  lost (the job was cancelled or taken over) is dropped, one whose lease could not be renewed
  for two thirds of its length is released (`_stale`); and what the buffer holds beyond its
  size once its oldest entry waited `STALE_WAIT_S` is released for other workers (`trim`);
- each entry gets at most one outcome: the first of its handler's result, its timeout, or
  its release at stop wins; later ones are dropped (and logged);
- a cancel of its job (`cancel`, from the keeper's cancel watch) ends an entry at once: no
  outcome is sent for it (the cancel is the job's outcome), a pending one never starts, and a
  running one's slot is freed when its handler returns (dropping what it returned, quietly).

The per-job path is short on purpose: a handler hands in its outcome and takes its next
entry under one plain lock acquisition, and threads are woken only when work or room
appears (one idle handler at a time; the fetcher once enough room for a good claim is free).
"""

from __future__ import annotations

import contextlib
import enum
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

from redisq._core.calls import MAX_CLAIM
from redisq.worker._sizing import STALE_WAIT_S, Sizer
from redisq.worker._support import logger

if TYPE_CHECKING:
    from redisq.context import Context
    from redisq.models import Job
    from redisq.task import Task

__all__ = ["Entry", "Handoff", "Outcome", "Phase", "Settlement", "State", "outcome_of"]

#: Guards the lazy creation of the entries' cancellation Events (rarely taken).
_EVENT_LOCK = threading.Lock()
#: Longest wait of a handler thread for the fetcher it woke to take the room (s).
_NUDGE_WAIT_S = 0.002


class Phase(enum.Enum):
    """Where a claimed job is inside the worker."""

    #: Claimed, waiting for a free handler slot (prefetched).
    PENDING = "pending"
    #: Its handler runs.
    RUNNING = "running"
    #: An outcome was decided and waits for the settler.
    DECIDED = "decided"


class Handoff(enum.Enum):
    """What `State.next` gives a handler thread instead of an entry."""

    #: Run the fetcher's loop now: the thread that ran it kept a job for itself (see
    #: `State.hand_over`).
    FETCH = "fetch"


class Entry:
    """One claimed job while the worker holds it."""

    __slots__ = (
        "_event",
        "cancel_noticed",
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
        "started",
        "task",
        "timed_out",
        "timeout_at",
    )

    def __init__(self, job: Job, task: Task[Any, Any] | None, lease_ms: int, now: float) -> None:
        self.job = job
        self.task = task
        self.lease_ms = lease_ms
        #: When the claim was sent (monotonic), and when the handler started (0: not yet).
        self.claimed_at = now
        self.started = 0.0
        #: Local (monotonic) estimate of the lease's end: the claim was sent at `now`.
        self.lease_until = now + lease_ms / 1000
        self.renew_at = now + lease_ms / 3000
        self.timeout_at: float | None = None
        self.phase = Phase.PENDING
        self.timed_out = False
        self.released = False
        self.lost = False
        #: Its job was cancelled (the cancel watch said so): nothing is sent for it.
        self.cancelled = False
        #: The store took its outcome (or it was given up): the worker forgot it.
        self.settled = False
        #: The handler was told that the lease is lost (see `cancelled_event`).
        self.cancel_noticed = False
        self._event: threading.Event | None = None
        #: The asyncio task running the handler (async pool), to cancel it.
        self.handle: Any = None
        #: The handler's Context, made on first use (see `Runner.context`).
        self.ctx: Context | None = None

    def __repr__(self) -> str:
        return f"<Entry {self.job.queue}/{self.job.id} {self.phase.value}>"

    @property
    def key(self) -> tuple[str, str]:
        """(queue, id), for messages."""
        return self.job.queue, self.job.id

    def renewed(self, sent_at: float) -> None:
        """Note a renewal of the lease sent at monotonic time `sent_at`."""
        self.lease_until = sent_at + self.lease_ms / 1000
        self.renew_at = sent_at + self.lease_ms / 3000

    def heartbeat(self, job: Job) -> None:
        """Note a renewal made by the handler itself (``ctx.heartbeat()``)."""
        self.renewed(time.monotonic())

    def cancelled_event(self) -> threading.Event:
        """The Event set when the lease is lost, made on first use (most handlers never ask)."""
        event = self._event
        if event is None:
            with _EVENT_LOCK:
                event = self._event
                if event is None:
                    event = threading.Event()
                    if self.cancel_noticed:
                        event.set()
                    self._event = event
        return event

    def notify_cancelled(self) -> None:
        """Tell the handler that the lease is lost (sets `cancelled_event`)."""
        with _EVENT_LOCK:
            self.cancel_noticed = True
            event = self._event
        if event is not None:
            event.set()


_RUNNING = Phase.RUNNING
_DECIDED = Phase.DECIDED


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


#: What a handler's run hands to the settler: an Outcome, or the Entry itself for the most
#: common outcome, an ack without a result to store (no object is made for it per job).
Settlement = Outcome | Entry


def outcome_of(settlement: Settlement) -> Outcome:
    """The Outcome a settlement stands for (an Entry: a plain ack)."""
    if isinstance(settlement, Outcome):
        return settlement
    return Outcome(settlement, "ack", "completed")


class State:
    """The in-flight registry and the handler slots; thread-safe.

    Args:
        concurrency: handler slots.
        prefetch: jobs claimed beyond the free slots; None: as many as the handlers finish
            within a few milliseconds (see `Sizer`).
        wake: tells the executor that entries wait in `pending` (called outside the lock;
            handler threads blocked in `next` are woken by the State itself).
        settle: hands an outcome to the settler (called with the lock held: must not block).
    """

    def __init__(
        self,
        concurrency: int,
        prefetch: int | None,
        wake: Callable[[], None],
        settle: Callable[[Settlement], None],
    ) -> None:
        self.concurrency = concurrency
        self.sizer = Sizer(concurrency, prefetch)
        self._wake = wake
        self._settle = settle
        self.lock = threading.Lock()
        #: Notified when room frees up (for the fetcher) and, while draining, at every change.
        self.changed = threading.Condition(self.lock)
        #: Idle handler threads wait here.
        self.work = threading.Condition(self.lock)
        #: Notified when a handler thread woken for work is up (see `yield_to_woken`).
        self.woken = threading.Condition(self.lock)
        #: Every entry from its claim until settled (a set: the same job claimed again after
        #: its lease ended is another entry).
        self.entries: set[Entry] = set()
        self.pending: deque[Entry] = deque()
        self.running = 0
        self.stopping = False
        self.closed = False
        #: Entries admitted whose handler has not returned (pending + running).
        self._held = 0
        #: Handler threads waiting in `work` and not yet notified; notified, not yet awake.
        self._idle = 0
        self._waking = 0
        #: Handler threads that woke up for work so far; someone waits in `yield_to_woken`.
        self._wakeups = 0
        self._woken_waiting = False
        #: The fetcher's loop waits for a handler thread to take it over (`hand_over`).
        self._fetch_free = False
        self._room_waiting = False
        #: The buffer's size as of the fetcher's last look (`_size`), and the room that makes
        #: a claim worthwhile: a quarter of the slots and the buffer.
        self._buffer = self.sizer.target(time.monotonic(), False)
        self._refill = max(1, (concurrency + self._buffer) // 4)
        #: The fetcher was just woken for room: the handler thread that woke it lets it run
        #: (see `next`); `looked` is notified each time the fetcher has looked at the room
        #: (in `wait_capacity`), and `_looks` counts those looks.
        self._nudged = False
        self.looked = threading.Condition(self.lock)
        self._looks = 0
        #: Pending entries released because their lease could not be renewed, since the
        #: last WARNING about it, and when that was.
        self._stale_count = 0
        self._stale_logged = -math.inf
        #: When `trim` last looked at a buffer whose oldest entry had waited long enough.
        self._trimmed = -math.inf
        self._draining = False

    # ------------------------------------------------------------------------- capacity

    def capacity(self) -> int:
        """How many jobs the fetcher may claim now (call with the lock held): the free
        handler slots plus the buffer's size, less what waits in it already."""
        return self.concurrency + self._buffer - self._held

    def _size(self, now: float) -> None:
        """Size the buffer for `now` (lock held; at each claim decision, not per job)."""
        buffer = self.sizer.target(now, self.running > 0)
        self._buffer = buffer
        self._refill = max(1, (self.concurrency + buffer) // 4)

    def _room(self) -> bool:
        """Tell whether a claim is worthwhile now (lock held): a quarter of the slots and
        the buffer is free, or anything is free while no claimed job waits for a handler."""
        free = self.concurrency + self._buffer - self._held
        return free > 0 and (free >= self._refill or not self.pending)

    def wait_capacity(self, timeout: float) -> int:
        """Wait until a claim is worthwhile (or stop); return how many (0 when stopping).

        A claim is worthwhile when a quarter of concurrency + buffer is free, or as soon as
        anything is free while no claimed job waits for a handler; after `timeout`, whatever
        is free. An adaptive buffer's claim takes at most half of concurrency + buffer (and
        always the free handler slots): the next claim then goes out while the jobs of this
        one keep the handlers busy. (One claim of the whole buffer, 1,000 no-op jobs, takes
        the fetcher longer to send, read and admit than the handlers take to run the jobs
        left: the buffer ran dry before each claim came back, and the two took turns.)
        """
        with self.lock:
            now = time.monotonic()
            deadline = now + timeout
            self._size(now)
            while not (self.stopping or self._room()):
                left = deadline - now
                if left <= 0:
                    break
                # Cleared by the notifier: one notification per wait, not one per job.
                self._room_waiting = True
                self.changed.wait(left)
                now = time.monotonic()
                self._size(now)
                self._looks += 1
                self.looked.notify_all()
            self._room_waiting = False
            if self.stopping:
                return 0
            count = self.capacity()
            if self.sizer.adaptive:
                half = (self.concurrency + self._buffer) // 2
                count = min(count, max(half, self.concurrency - self.running))
            # One claim leases at most MAX_CLAIM jobs; the fetcher claims again for the rest.
            return max(0, min(count, MAX_CLAIM))

    # --------------------------------------------------------------------------- claims

    def admit(self, entries: list[Entry]) -> list[Entry]:
        """Register claimed entries for the handlers; return those to release (stopping)."""
        with self.lock:
            self.entries.update(entries)
            if self.stopping:
                for entry in entries:
                    entry.phase = Phase.DECIDED
                    entry.released = True
                return entries
            self.pending.extend(entries)
            self._held += len(entries)
            self._wake_one()
        self._wake()
        return []

    def hand_over(self, entries: list[Entry]) -> Entry | None:
        """Admit claimed entries but keep the first for the calling fetcher thread to run at
        once, when a handler thread idles; that thread takes over the fetcher's loop.

        This is how an idle worker starts a job without a thread switch: the thread that
        received the job runs it, and the switch (waking the idle thread) happens off that
        path. Returns the kept entry (marked running), or None: nothing was admitted (no
        thread idles, or the worker stops), and the caller admits them with `admit`.
        """
        with self.lock:
            if (
                self.stopping
                or self.closed
                or not self._idle
                or self._fetch_free
                or self.running >= self.concurrency
            ):
                return None
            self.entries.update(entries)
            first = entries[0]
            self._start(first, time.monotonic())
            self._held += len(entries)
            self.pending.extend(entries[1:])
            self._fetch_free = True
            self._notify_idle()
        if len(entries) > 1:
            self._wake()
        return first

    def _start(self, entry: Entry, now: float) -> None:
        """Mark an entry running from `now` (lock held)."""
        entry.phase = _RUNNING
        entry.started = now
        if not self.running:
            self.sizer.busy(now)
        self.running += 1

    def _wake_one(self) -> None:
        """Wake one idle handler thread if work waits and none is waking already."""
        if self._idle and not self._waking and self.pending:
            self._notify_idle()

    def _notify_idle(self) -> None:
        """Wake one idle handler thread (lock held; there is one)."""
        self._idle -= 1
        self._waking += 1
        self.work.notify()

    def _pop(self, now: float) -> Entry | None:
        """Take the next pending entry that may start, and mark it running (lock held; a
        handler slot is free). Entries whose lease may be gone are released on the way."""
        pending = self.pending
        while pending:
            entry = pending.popleft()
            if entry.lease_until - now < entry.lease_ms / 3000:
                self._stale(entry)
                continue
            self._start(entry, now)
            return entry
        return None

    def _stale(self, entry: Entry) -> None:
        """Release a pending entry whose lease could not be renewed for two thirds of its
        length (Redis unreachable): starting it could run the job twice (lock held)."""
        entry.phase = Phase.DECIDED
        entry.released = True
        self._held -= 1
        self._settle(Outcome(entry, "release", "release"))
        # Through an outage the whole buffer may go this way: one WARNING a minute at most.
        self._stale_count += 1
        now = time.monotonic()
        if now - self._stale_logged >= 60.0:
            logger.warning(
                "%d claimed job(s) not started, e.g. %s/%s: their lease could not be renewed"
                " while they waited for a handler; they are released (the attempt does not"
                " count)",
                self._stale_count,
                *entry.key,
            )
            self._stale_count = 0
            self._stale_logged = now
        else:
            logger.debug("job %s/%s: not started (lease not renewed); released", *entry.key)

    @overload
    def _take(self, block: Literal[False]) -> Entry | None: ...

    @overload
    def _take(self, block: bool) -> Entry | Handoff | None: ...

    def _take(self, block: bool) -> Entry | Handoff | None:
        """Take the next pending entry and mark it running (lock held); a handler thread
        (`block`) takes over the fetcher's loop first when it waits for one."""
        while not self.closed:
            if block and self._fetch_free:
                self._fetch_free = False
                self._wake_one()  # entries may wait: another idle thread runs them
                return Handoff.FETCH
            if self.pending and not self.stopping and self.running < self.concurrency:
                entry = self._pop(time.monotonic())
                if entry is not None:
                    self._wake_one()  # more work: let one more idle thread join in
                    return entry
                continue
            if not block:
                return None
            self._idle += 1
            self.work.wait()
            self._waking -= 1
            self._wakeups += 1
            if self._woken_waiting:
                self._woken_waiting = False
                self.woken.notify()
        return None

    def yield_to_woken(self, timeout: float) -> None:
        """Let the handler thread that `admit` just woke start first (the fetcher calls this).

        Waking an idle handler thread takes tens of microseconds, and then it needs the
        GIL, which the fetcher would hold while it prepares its next claim: an idle worker's
        pickup would wait for that. So the fetcher waits (without the GIL) until the woken
        thread is up or `timeout` passes; it returns at once when no thread is waking.
        """
        with self.lock:
            if not self._waking or self.closed:
                return
            seen = self._wakeups
            self._woken_waiting = True
            self.woken.wait_for(lambda: self._wakeups != seen or self.closed, timeout)
            self._woken_waiting = False

    @overload
    def next(
        self, done: Entry | None, outcome: Settlement | None, block: Literal[False]
    ) -> Entry | None: ...

    @overload
    def next(
        self, done: Entry | None, outcome: Settlement | None, block: Literal[True]
    ) -> Entry | Handoff | None: ...

    def next(
        self, done: Entry | None, outcome: Settlement | None, block: bool
    ) -> Entry | Handoff | None:
        """Report a returned handler (if any), then take the next entry to run.

        Args:
            done: the entry whose handler returned, or None.
            outcome: its outcome (None when the run was cut short: decided elsewhere).
            block: wait for work (a handler thread) instead of returning None.

        Returns:
            The entry to run next (marked running); `Handoff.FETCH` (only when blocking):
            run the fetcher's loop; or None: no work (not blocking), or the executor is
            closing.
        """
        now = time.monotonic()
        with self.lock:
            if done is None or not self._finish(done, outcome, now):
                # The common case of _take, inline: this runs once per job.
                pending = self.pending
                if (
                    pending
                    and self.running < self.concurrency
                    and not self.stopping
                    and not self.closed
                ):
                    entry = pending.popleft()
                    if entry.lease_until - now >= entry.lease_ms / 3000:
                        entry.phase = _RUNNING
                        entry.started = now
                        if not self.running:
                            self.sizer.busy(now)
                        self.running += 1
                        if self._idle and pending:
                            self._wake_one()  # more work: let one more idle thread join in
                        if not self._nudged:
                            return entry
                        self._nudged = False
                        nudged: Entry | Handoff | None = entry
                        looks = self._looks
                    else:
                        self._stale(entry)
                        return self._take(block)
                else:
                    return self._take(block)
            else:
                nudged = None
        if nudged is not None:
            # This thread woke the fetcher: wait (without the GIL) until the fetcher is up and
            # has looked at the room, so that it sends its claim now, while the jobs still
            # pending keep the handlers busy until the claim comes back. Otherwise the fetcher
            # would wait for the interpreter's switch interval (5 ms) to get the GIL, in which
            # time a handler running quick jobs can empty the buffer, and claims and handlers
            # would take turns instead of overlapping. This happens once per claim, not per job.
            with self.lock:
                self.looked.wait_for(lambda: self._looks != looks or self.closed, _NUDGE_WAIT_S)
            return nudged
        # The outcome came too late: log it outside the lock.
        assert done is not None
        assert outcome is not None
        _log_late(done, outcome)
        with self.lock:
            return self._take(block)

    def _finish(self, entry: Entry, outcome: Settlement | None, now: float) -> bool:
        """A handler returned at `now` (lock held): decide its outcome; True if it came too
        late."""
        self.running -= 1
        self._held -= 1
        self.sizer.ran(now - entry.started, now)
        late = False
        if outcome is not None:
            if entry.phase is _DECIDED or entry.settled:
                late = True
            else:
                entry.phase = _DECIDED
                self._settle(outcome)
        if self._room_waiting and self._room():
            self._room_waiting = False
            self._nudged = True
            self.changed.notify_all()
        elif self._draining:
            self.changed.notify_all()
        return late

    # ------------------------------------------------------------------------ the buffer

    def buffered(self) -> bool:
        """Tell whether more entries wait than the free handlers can start (read without the
        lock: a hint)."""
        return len(self.pending) > self.concurrency - self.running

    def trim_at(self) -> float:
        """When `trim` has work to check next (monotonic; inf while nothing is pending or
        the buffer's size is fixed): once the oldest pending entry waited STALE_WAIT_S, then
        every half of that while it still waits."""
        with self.lock:
            if not self.pending or not self.sizer.adaptive:
                return float("inf")
            return max(self.pending[0].claimed_at + STALE_WAIT_S, self._trimmed + STALE_WAIT_S / 2)

    def trim(self, now: float) -> int:
        """Release what the buffer holds beyond its size, once its oldest entry waited
        `STALE_WAIT_S` while every handler was busy (the handlers became slower than the
        buffer was sized for): other workers may be idle. Returns how many were released
        (the newest; they go back to their place in the queue, the attempt not counted)."""
        with self.lock:
            pending = self.pending
            if (
                not pending
                or self.stopping
                or not self.sizer.adaptive
                or now - pending[0].claimed_at < STALE_WAIT_S
            ):
                return 0
            self._trimmed = now
            if self.running < self.concurrency:
                return 0
            excess = len(pending) - self.sizer.target(now, True)
            if excess <= 0:
                return 0
            released = [pending.pop() for _ in range(excess)]
            self._held -= excess
            for entry in reversed(released):
                entry.phase = Phase.DECIDED
                entry.released = True
                self._settle(Outcome(entry, "release", "release"))
        logger.info(
            "released %d claimed job(s) that waited for a handler: the handlers are slower"
            " than the buffer was sized for (other workers may take them)",
            excess,
        )
        return excess

    def lose(self, entry: Entry) -> Phase:
        """Note that the entry's lease is lost (the keeper's renewal was refused); a pending
        entry is dropped, never started. Returns its phase before."""
        with self.lock:
            entry.lost = True
            phase = entry.phase
            if phase is Phase.PENDING:
                with contextlib.suppress(ValueError):  # pending entries are all in there
                    self.pending.remove(entry)
                self._held -= 1
                entry.phase = Phase.DECIDED
                entry.settled = True
                self.entries.discard(entry)
                if self._room_waiting and self._room():
                    self._room_waiting = False
                    self.changed.notify_all()
                elif self._draining:
                    self.changed.notify_all()
        return phase

    def holding(self, leases: set[tuple[str, str, int]]) -> list[Entry]:
        """The entries holding any of these leases ((queue, id, token)); for cancels, which
        are rare: a scan of the jobs in flight."""
        with self.lock:
            return [e for e in self.entries if (e.job.queue, e.job.id, e.job.token) in leases]

    def cancel(self, entry: Entry) -> Phase | None:
        """Note that the entry's job was cancelled; return its phase before (None: already
        settled, nothing changed).

        A pending entry is dropped, never started. A running one is forgotten now (no
        outcome will be sent; its lease is not renewed) and its slot is freed when its
        handler returns, whatever it returns dropped quietly. A decided one keeps its
        outcome on the way (the store refuses it; the settler says so quietly).
        """
        with self.lock:
            if entry.settled:
                return None
            phase = entry.phase
            entry.cancelled = True
            entry.lost = True
            if phase is Phase.DECIDED:
                return phase
            if phase is Phase.PENDING:
                with contextlib.suppress(ValueError):  # pending entries are all in there
                    self.pending.remove(entry)
                self._held -= 1
                if self._room_waiting and self._room():
                    self._room_waiting = False
                    self.changed.notify_all()
            entry.phase = Phase.DECIDED
            entry.settled = True
            self.entries.discard(entry)
            if self._draining:
                self.changed.notify_all()
        return phase

    def decide(self, entry: Entry, outcome: Outcome) -> bool:
        """Record the first outcome of an entry and hand it to the settler; False if late."""
        with self.lock:
            if entry.phase is Phase.DECIDED or entry.settled:
                return False
            entry.phase = Phase.DECIDED
            self._settle(outcome)
        return True

    def settled(self, entries: Iterable[Entry]) -> None:
        """The store took these entries' outcomes (or they were given up): forget them."""
        with self.lock:
            discard = self.entries.discard
            for entry in entries:
                entry.settled = True
                discard(entry)
            if self._draining:
                self.changed.notify_all()

    def holds_nothing(self) -> bool:
        """Tell whether no entry is in flight: none pending, running or unsettled."""
        with self.lock:
            return not self.entries

    # ----------------------------------------------------------------------------- stop

    def begin_stop(self) -> list[Entry]:
        """Stop admitting work; take the prefetched entries (to release them)."""
        with self.lock:
            self.stopping = True
            self._draining = True
            pending = list(self.pending)
            self.pending.clear()
            self._held -= len(pending)
            for entry in pending:
                entry.phase = Phase.DECIDED
                entry.released = True
            self.changed.notify_all()
        return pending

    def close(self) -> None:
        """Let the handler threads waiting for work return (the executor shuts down)."""
        with self.lock:
            self.closed = True
            self._idle = 0
            self.work.notify_all()
            self.woken.notify_all()

    def _busy(self) -> bool:
        # Handlers whose outcome was decided (a timeout) may still run: not waited for.
        return any(e.phase is Phase.RUNNING for e in self.entries)

    def wait_idle(self, timeout: float, hurry: threading.Event) -> bool:
        """Wait until no handler without an outcome runs, `hurry` is set or `timeout` passes.

        Returns:
            True when no such handler runs.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while self._busy() and not hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 0.05))
            return not self._busy()

    def take_running(self) -> list[Entry]:
        """Take the entries whose handler still runs and has no outcome (to release them)."""
        with self.lock:
            taken = [e for e in self.entries if e.phase is Phase.RUNNING]
            for entry in taken:
                entry.phase = Phase.DECIDED
                entry.released = True
        return taken

    def wait_settled(self, timeout: float, hurry: threading.Event | None = None) -> bool:
        """Wait until every entry was settled (or the timeout); True when none is left."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.entries:
                left = deadline - time.monotonic()
                if left <= 0 or (hurry is not None and hurry.is_set()):
                    break
                self.changed.wait(min(left, 0.05))
            return not self.entries


def _log_late(entry: Entry, outcome: Settlement) -> None:
    if entry.cancelled:
        logger.debug(
            "job %s/%s: the handler returned after its job was cancelled; its %s is dropped",
            *entry.key,
            outcome_of(outcome).label,
        )
        return
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
        outcome_of(outcome).label,
    )
