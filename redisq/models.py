"""Jobs, job states and the option records of the public API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "DAY_MS",
    "CancelNotice",
    "Claimed",
    "Event",
    "Flow",
    "FlowNode",
    "FlowState",
    "Job",
    "JobState",
    "Migration",
    "RateState",
    "Retention",
    "Schedule",
    "ScheduleTicks",
    "Spec",
    "WorkerInfo",
]

DAY_MS = 24 * 60 * 60 * 1000


class JobState(StrEnum):
    """Where a job is in its lifecycle. The values are what Redis stores."""

    #: Claimable now.
    READY = "ready"
    #: Delayed, or waiting for a retry; becomes READY at its due time.
    SCHEDULED = "scheduled"
    #: Held by a worker under a lease with a deadline and a fencing token.
    LEASED = "leased"
    #: Acknowledged by its worker. Kept within the completed retention limits.
    COMPLETED = "completed"
    #: Dead-lettered: attempts used up, or failed for good. Kept within the dead limits.
    DEAD = "dead"
    #: Cancelled on purpose before it finished. Kept within the cancelled limits.
    CANCELLED = "cancelled"
    #: Held until its parents completed (``enqueue(..., depends_on=...)``), then READY.
    WAITING = "waiting"

    @property
    def is_final(self) -> bool:
        """Tell whether the job has finished (completed, dead or cancelled)."""
        return self in _FINAL


_FINAL = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job, as Redis held it when the call returned.

    A Job never changes; operations return a new snapshot. Times are Redis server
    milliseconds since the epoch.
    """

    #: Unique within its queue; chosen by the caller or generated (32 hex digits).
    id: str
    #: The queue the job lives in.
    queue: str
    #: Optional task name, for routing to a handler.
    name: str | None
    #: The job's data, as given to enqueue (msgpack round trip).
    payload: Any
    #: Lifecycle state when the snapshot was taken.
    state: JobState
    #: Higher runs first, in [-1000, 1000].
    priority: int
    #: Claims made so far (the attempt number while leased).
    attempts: int
    #: Claims allowed, counting the first run.
    max_attempts: int
    #: The fencing token of the latest claim; None before the first claim.
    token: int | None
    #: The worker of the latest claim.
    worker: str | None
    #: When the job was enqueued.
    created_at_ms: int
    #: When the job was (or becomes) claimable.
    run_at_ms: int
    #: The lease deadline while LEASED, else None.
    lease_deadline_ms: int | None
    #: The error text of the latest failure, if any.
    last_error: str | None
    #: The value given to ack, if any.
    result: Any = None
    #: The latest value given to progress, if any.
    progress: Any = None
    #: When the job completed, died or was cancelled.
    finished_at_ms: int | None = None
    #: The job's own lease length, overriding the claim's.
    lease_ms: int | None = None
    #: The dedupe key held while the job is live.
    unique_key: str | None = None
    #: The W3C trace context of its enqueue ({"traceparent": ..., "tracestate": ...}) when it
    #: was enqueued with one (redisq.tracing, docs/tracing.md), else None.
    trace_context: dict[str, str] | None = None


class Claimed(list[Job]):
    """What a claim returns: the leased jobs (a plain list of Jobs) and the queues that refused.

    A claim over several queues goes on past a queue that refuses it, so the jobs leased from
    the others are never lost: the refusal is reported here instead of raised. When every
    queue given refused (one queue alone included), claim raises the first one's error.

    Attributes:
        refused: queue name -> the exception that queue refused the claim with (for example
            `SchemaVersionError` while it migrates, `WrongKeyType`, a denied command, or on
            Redis Cluster the connection error of its master); empty when none refused.
        held_ms: when a queue's rate limit held ready jobs back (`Store.set_rate_limit`),
            the ms until the next may start (the least over such queues); else None.
    """

    __slots__ = ("held_ms", "refused")

    def __init__(
        self, jobs: Iterable[Job] = (), refused: dict[str, Exception] | None = None
    ) -> None:
        super().__init__(jobs)
        self.refused: dict[str, Exception] = {} if refused is None else refused
        self.held_ms: int | None = None

    def __repr__(self) -> str:
        if not self.refused:
            return super().__repr__()
        return f"Claimed({super().__repr__()}, refused={self.refused!r})"


@dataclass(frozen=True, slots=True)
class Spec:
    """One job of an `enqueue_many` call with options of its own.

    Options left as None take the value given to `enqueue_many` (or its default).
    """

    payload: Any = None
    id: str | None = None
    name: str | None = None
    priority: int | None = None
    delay_ms: int | None = None
    run_at_ms: int | None = None
    max_attempts: int | None = None
    lease_ms: int | None = None
    unique_key: str | None = None
    group: str | None = None
    expires_ms: int | None = None
    throttle_ms: int | None = None
    debounce_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    """How many finished jobs are kept, and for how long.

    Finishing scripts trim the oldest records beyond these limits, at most `trim_batch` per
    call (and never more than 1,100 records or about 4 MiB, so a call stays short), so memory
    stays bounded under any steady load. An age of 0 means no age limit.

    A job acked with a result also keeps its completed record under a key of its own (its
    stored result) for `result_ttl_ms`, whatever the count limits trim: `get` and
    `JobRef.result` read it there once the record is trimmed. 0 keeps results only as long as
    the completed record.
    """

    completed: int = 1_000
    completed_age_ms: int = 7 * DAY_MS
    dead: int = 10_000
    dead_age_ms: int = 7 * DAY_MS
    cancelled: int = 1_000
    cancelled_age_ms: int = 7 * DAY_MS
    trim_batch: int = 100
    #: How long a stored result stays readable after its ack (ms; a task may set its own).
    result_ttl_ms: int = DAY_MS


@dataclass(frozen=True, slots=True)
class Migration:
    """What `migrate` did to one queue's stored data (see `Store.migrate`)."""

    #: The queue.
    queue: str
    #: The schema version its meta hash recorded when the migration started: "2" (now
    #: converted), "migrating:3" (an interrupted migration, now finished), "3" (nothing to
    #: do), or None (the queue has no data).
    found: str | None
    #: Job records converted to the current layout.
    converted: int
    #: Records that were already in the current layout.
    skipped: int
    #: Records in no known layout, left as they are (`BadRecord` when a script meets them).
    bad: int
    #: Whether the queue is at the current schema version now, open to every operation.
    done: bool


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic schedule as Redis held it when the call returned (see `upsert_schedule`).

    Times are Redis server milliseconds since the epoch.
    """

    #: Unique within its queue.
    id: str
    #: The queue its jobs go to (the schedule lives in that queue's slot).
    queue: str
    #: A cron expression (5 fields, or 6 with seconds first), or None with `every_ms`.
    cron: str | None
    #: The interval in ms, or None with `cron`.
    every_ms: int | None
    #: The IANA time zone the cron expression is read in ("UTC" by default).
    tz: str
    #: The jobs' name (for tasks: the task name), or None.
    name: str | None
    #: The jobs' payload.
    payload: Any
    #: The jobs' options: priority, max_attempts, lease_ms (only those given).
    options: dict[str, int]
    #: No tick before this time (None: from its creation).
    start_at_ms: int | None
    #: No tick after this time (None: no end).
    end_at_ms: int | None
    #: Most ticks enqueued in all (None: no limit).
    limit: int | None
    #: What happens to ticks missed while no driver ran: "skip", "once" or "all".
    missed: str
    #: Each tick's job becomes due up to this many ms after the tick (0: at the tick).
    jitter_ms: int
    #: Whether it is paused (no tick is enqueued until it is resumed).
    paused: bool
    #: Ticks enqueued so far.
    runs: int
    #: The time of the latest tick enqueued (or of the latest `run_schedule_now`), if any.
    last_run_ms: int | None
    #: The pending tick; None once the schedule ran its course (its end or its limit).
    next_run_ms: int | None
    #: When the schedule was first stored (the anchor of every_ms ticks without start_at).
    created_at_ms: int
    #: The SHA-1 of the stored definition: equal digests mean equal definitions.
    digest: str


@dataclass(frozen=True, slots=True)
class ScheduleTicks:
    """What one pass over a queue's due schedules did (see `tick_schedules`)."""

    #: The queue.
    queue: str
    #: Ids of the jobs this pass enqueued (<schedule id>@<tick ms>).
    enqueued: list[str]
    #: The queue's next pending tick after the pass (ms); None when it has none.
    next_due_ms: int | None
    #: The Redis time of the pass (ms).
    now_ms: int


@dataclass(frozen=True, slots=True)
class CancelNotice:
    """A leased job was cancelled (`Store.wait_cancels`): the holder of `token` should stop."""

    #: The job's queue.
    queue: str
    #: The job id.
    id: str
    #: The fencing token of the lease the cancel ended (the holder's `Job.token`).
    token: int


@dataclass(frozen=True)
class FlowState:
    """A queue's concurrency limits and what they hold back (`Store.concurrency`).

    Attributes:
        concurrency: the most jobs of the queue leased at once; None: no cap.
        group_concurrency: the most jobs of one group leased at once; None: no limit.
        ready: ready jobs, those waiting in groups included.
        leased: jobs leased now.
        grouped_ready: ready jobs waiting in concurrency groups.
        groups_ready: groups that may lease now (jobs waiting, fewer leased than the limit).
        grouped_leased: leased jobs of groups.
        held_by_cap: ready jobs the concurrency cap holds back (all of them while the
            leases reach the cap, else 0).
        group: the group of the job asked about (`Store.concurrency(queue, id=...)`).
        group_leased: that group's leased jobs.
        group_turn: whether that group may lease now.
    """

    concurrency: int | None
    group_concurrency: int | None
    ready: int
    leased: int
    grouped_ready: int
    groups_ready: int
    grouped_leased: int
    held_by_cap: int
    group: str | None = None
    group_leased: int = 0
    group_turn: bool = False


@dataclass(frozen=True)
class RateState:
    """A queue's rate limit as stored (`Store.rate_limit`).

    Attributes:
        limit: its spec (``"100/s"``), None when the queue has no limit.
        next_at_ms: while claims are held back (by the limit or by a handler's
            `RateLimited`), when the next job may start (Redis clock, ms); None: now or
            never held.
    """

    limit: str | None
    next_at_ms: int | None


@dataclass(frozen=True, slots=True)
class FlowNode:
    """One job of a flow (`Store.flow`) with its edges."""

    #: The job id.
    id: str
    #: The job as stored now; None when it is gone (deleted, or trimmed by retention).
    job: Job | None
    #: The ids of the jobs it depends on (within the flow read).
    parents: tuple[str, ...]
    #: The ids of the jobs that depend on it (within the flow read).
    children: tuple[str, ...]

    @property
    def state(self) -> JobState | None:
        """The job's state; None when it is gone."""
        return None if self.job is None else self.job.state

    @property
    def result(self) -> Any:
        """The job's stored result (None when it has none, or is gone)."""
        return None if self.job is None else self.job.result


@dataclass(frozen=True, slots=True)
class Flow:
    """The dependency DAG around a job: its ancestors and descendants (`Store.flow`)."""

    #: The queue of the jobs.
    queue: str
    #: The job the flow was read from.
    id: str
    #: Every job of the flow by id.
    nodes: dict[str, FlowNode]

    @property
    def roots(self) -> list[str]:
        """The ids of the jobs without parents, sorted."""
        return sorted(i for i, n in self.nodes.items() if not n.parents)

    def render(self) -> str:
        """Draw the DAG as an indented tree from its roots (a job with several parents is
        drawn under each, its subtree once)."""
        lines: list[str] = []
        drawn: set[str] = set()

        def label(jid: str) -> str:
            node = self.nodes[jid]
            state = "gone" if node.job is None else node.job.state.value
            name = "" if node.job is None or not node.job.name else f" {node.job.name}"
            result = "" if node.result is None else f" -> {node.result!r}"
            mark = " *" if jid == self.id else ""
            return f"{jid}{name} [{state}]{result}{mark}"

        def walk(jid: str, indent: str, last: bool, top: bool) -> None:
            branch = "" if top else ("`-- " if last else "|-- ")
            again = jid in drawn
            lines.append(indent + branch + label(jid) + (" (see above)" if again else ""))
            if again:
                return
            drawn.add(jid)
            kids = [c for c in self.nodes[jid].children if c in self.nodes]
            deeper = indent if top else indent + ("    " if last else "|   ")
            for i, kid in enumerate(kids):
                walk(kid, deeper, i == len(kids) - 1, False)

        for root in self.roots:
            walk(root, "", True, True)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A running worker, as its latest heartbeat in the worker registry describes it
    (`Store.workers`, ``redisq workers``).

    Attributes:
        name: the worker's name (host-pid-random by default).
        host: the host name it runs on.
        pid: its process id.
        version: the redisq version it runs.
        queues: the queues it works.
        concurrency: its handler slots.
        pool: ``"thread"`` or ``"async"``.
        started_at_ms: when it started (ms since the epoch, Redis clock).
        seen_at_ms: when its latest heartbeat was written (ms, Redis clock).
        expires_at_ms: when its record expires unless it beats again (ms, Redis clock).
        in_flight: how many jobs it holds (running or claimed ahead).
        jobs: ``"queue/id"`` of the jobs it holds (the first 100).
        counters: its counters (completed, retried, dead, ...; see `WorkerMetrics`).
    """

    name: str
    host: str
    pid: int
    version: str
    queues: tuple[str, ...]
    concurrency: int
    pool: str
    started_at_ms: int
    seen_at_ms: int
    expires_at_ms: int
    in_flight: int
    jobs: tuple[str, ...]
    counters: dict[str, int]


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's event stream (docs/events.md; `Store.set_events` turns it on).

    Attributes:
        id: the stream entry id (``"<ms>-<n>"``): pass it as ``since=`` to read what follows.
        queue: the queue.
        event: what happened: ``"enqueued"``, ``"started"``, ``"progress"``, ``"completed"``,
            ``"retried"``, ``"dead"``, ``"cancelled"``, ``"lease-lost"`` or ``"reaped"``.
        job_id: the job's id.
        name: the job's task name ('' when it has none).
        attempt: the job's attempts so far (the attempt that started, ended or lost its lease).
        worker: the worker that holds or last held the job ('' before its first claim).
        at_ms: when it happened (ms since the epoch, Redis clock).
    """

    id: str
    queue: str
    event: str
    job_id: str
    name: str
    attempt: int
    worker: str
    at_ms: int
