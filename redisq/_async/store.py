"""The public API of the job store: one class for asyncio, and its generated sync twin.

redisq/_async/store.py (AsyncStore, on redis.asyncio) is the source; redisq/_sync/store.py
(Store) is generated from it by `python tools/gen_sync.py`, and a test runs the generator in
check mode. So the two clients have the same methods, signatures and docstrings, and no logic
is written twice. Every method is glue: it builds an operation in redisq._core and runs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import redis.exceptions

from redisq._async.transport import AsyncTransport
from redisq._core import deps, ops, queries, registry
from redisq._core import events as events_ops
from redisq._core.claim import Refusal
from redisq._core.enqueue import keywords_checked
from redisq._core.ops import NOT_SET, Call, Op, Settings
from redisq._core.validate import check_int
from redisq.errors import ConfigurationError, InvalidArgument, RedisqError
from redisq.models import (
    CancelNotice,
    Claimed,
    Event,
    Flow,
    Job,
    JobState,
    Migration,
    Schedule,
    ScheduleTicks,
    WorkerInfo,
)

__all__ = ["AsyncStore"]

T = TypeVar("T")
_Jobs = list[Job]
_Names = list[str]
_Outcomes = list[Job | Exception]
_Migrations = list[Migration]
_Events = list[Event]
_Schedules = list[Schedule]
_Notices = list[CancelNotice]
_Workers = list[WorkerInfo]
#: A claim held back by a rate limit returns at once when its next job is this near (ms).
_HELD_WAIT_MS = 250

#: Errors of one Redis Cluster node (its master down, failing over, a slot moving): on a
#: cluster they concern the queues of that node alone.
_NODE_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.RedisClusterException,
)


#: What an ACL denial inside a script (or in a pipeline) says, by server.
_DENIED = ("NOPERM", "ACL failure in script", "user executing the script can't run")


def queue_refusal(error: Exception, cluster: bool) -> bool:
    """Tell whether a call's error concerns its queue alone, so that an operation over
    several queues (claim) may go on without it: redisq's typed errors (a key of another
    type, a denied command; not a server configuration problem), a denied command or key
    (ACL), and on Redis Cluster the errors of one node. Anything else (a standalone server
    that cannot be reached refuses every queue) is raised unchanged."""
    if isinstance(error, RedisqError):
        return not isinstance(error, ConfigurationError)
    if isinstance(error, redis.exceptions.NoPermissionError):
        return True
    if isinstance(error, redis.exceptions.ResponseError):
        return any(text in str(error) for text in _DENIED)
    return cluster and isinstance(error, _NODE_ERRORS)


def _throw(op: Op[T], error: Exception) -> Any:
    """Throw a per-queue error into an operation as a `Refusal`; return what it yields next.

    An operation that does not handle it lets it out: then the error itself is raised,
    unchanged (and outside any except block, so it carries no misleading context).
    """
    try:
        return op.throw(Refusal(error))
    except Refusal as escaped:
        if escaped.error is not error:
            raise
    raise error


class AsyncStore:
    """A connection to redisq's job store; every method is one or a few round trips.

    Create it with `redisq.connect_async(url)`. Each state transition runs as one Lua script,
    atomically on the server. The store is safe to share between tasks.
    """

    def __init__(self, transport: AsyncTransport, settings: Settings) -> None:
        self._transport = transport
        self.settings = settings
        self._registered: set[str] = set()
        self._turn = 0
        # Per queue, the monotonic time when its earliest scheduled job is due, as the last
        # short claim reported it: `wait` wakes by then.
        self._due: dict[str, float] = {}
        # Queues whose last claim by this store came up short: claim(wait_ms=) waits first.
        self._short: set[str] = set()
        # Set by stop_waiting: waits return at once.
        self._no_waits = False
        self._wait_turn = 0
        # Per queue, the id of the latest schedule change a tick_schedules pass saw:
        # wait_schedules blocks for changes after it.
        self._schedule_events: dict[str, str] = {}
        # Per queue, the latest entry of its cancel stream that wait_cancels returned.
        self._cancel_positions: dict[str, str] = {}

    @property
    def prefix(self) -> str:
        """The key prefix all queues of this store live under."""
        return self.settings.prefix

    @property
    def redis(self) -> Any:
        """The underlying redis-py client, for what redisq does not wrap."""
        return self._transport.client

    async def close(self) -> None:
        """Close the connections of this store."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, op: Call[T] | Op[T]) -> T:
        if isinstance(op, Call):
            result: T = await self._transport.run(op)
            return result
        cluster = self.settings.cluster
        try:
            request = next(op)
            while True:
                failed: Exception | None = None
                try:
                    if isinstance(request, Call):
                        reply = await self._transport.run(request)
                    else:
                        reply = await self._transport.pipeline(request)
                except Exception as exc:
                    if not queue_refusal(exc, cluster):
                        raise
                    failed = exc
                # A refusal goes into the operation, which may go on with other queues.
                request = op.send(reply) if failed is None else _throw(op, failed)
        except StopIteration as stop:
            value: T = stop.value
            return value

    # ----------------------------------------------------------------------------------------
    # enqueue

    @keywords_checked
    async def enqueue(
        self,
        queue: str,
        payload: Any = None,
        *,
        id: str | None = None,
        name: str | None = None,
        priority: int = 0,
        delay_ms: int = 0,
        run_at_ms: int | None = None,
        max_attempts: int = 3,
        lease_ms: int | None = None,
        unique_key: str | None = None,
        depends_on: Sequence[Job | str] | None = None,
        on_parent_failure: str = "fail",
        group: str | None = None,
        expires_ms: int | None = None,
        throttle_ms: int | None = None,
        debounce_ms: int | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> Job:
        """Add a job to a queue, or return the existing one.

        Enqueue is idempotent on (queue, id) and, while the job is live, on `unique_key`: the
        stored job is returned unchanged, so a retried call never creates a second job.
        `throttle_ms` and `debounce_ms` widen the dedupe of `unique_key` (see
        docs/expiry_dedupe.md).

        Args:
            queue: queue name (1 to 200 characters, no braces or control characters).
            payload: the job's data; anything msgpack encodes (None, bool, int, float, str,
                bytes, lists and dicts), at most `payload_limit` bytes encoded.
            id: the job id; generated (32 hex digits) when None.
            name: a task name for routing, optional.
            priority: in [-1000, 1000]; higher is claimed first, FIFO within a priority.
            delay_ms: claimable only after this many ms (Redis clock).
            run_at_ms: claimable from this Redis time (ms); not with delay_ms.
            max_attempts: claims allowed, counting the first run (1 to 1000).
            lease_ms: the job's own lease length, overriding the claim's.
            unique_key: a dedupe key, held while the job is ready, scheduled or leased.
            depends_on: jobs that must complete first (Jobs, JobRefs, ids of this queue, or
                (queue, id) pairs): the job waits (JobState.WAITING) until the last of them
                completed, and is released by that transition, or for a parent in another
                queue by that queue's next reap (docs/workflows.md). Not with unique_key.
            on_parent_failure: what a parent that ends dead, cancelled or deleted does to
                the waiting job: "fail" cancels it (its last_error names the parent),
                "continue" lets it run anyway, "ignore" drops the parent from its list.
            group: the job's concurrency group (1 to 128 characters, no braces or control
                characters): a queue serves its groups round-robin and leases at most its
                `group_concurrency` jobs of one group at once (docs/groups.md).
            expires_ms: a job not started within this many ms (Redis clock) is cancelled
                instead of run, with last_error "expired" (1 ms to 366 days).
            throttle_ms: with unique_key: repeats within this many ms of this job's enqueue
                return this job, even after it finished.
            debounce_ms: with unique_key (not with delay_ms or run_at_ms): the job waits this
                long; a repeat while it waits unstarted gives it the repeat's payload and
                waits debounce_ms from then (a repeat once it started makes a new job).
            trace_context: the W3C trace context of the enqueue ({"traceparent": ...,
                "tracestate": ...}, at most 568 bytes), kept in the record for the job's
                consumer (`Job.trace_context`); redisq.tracing sets it (docs/tracing.md).

        Returns:
            The new job, or the job that already held the id or unique key (for a debounced
            repeat, that job with the new payload and due time). A throttled repeat whose
            job retention already trimmed gets a CANCELLED Job with that job's id and
            last_error "throttled".

        Raises:
            InvalidArgument: an argument is out of range, or a keyword is not one of the
                above (a misspelt option); nothing was written.
            SerializationError: msgpack cannot encode the payload.
            PayloadTooLarge: the encoded payload is over the limit.
            DependencyNotFound: a parent does not exist; nothing was written.
            DependencyCycle: the job would depend on itself; nothing was written.
        """
        options: dict[str, Any] = {
            "id": id,
            "name": name,
            "priority": priority,
            "delay_ms": delay_ms,
            "run_at_ms": run_at_ms,
            "max_attempts": max_attempts,
            "lease_ms": lease_ms,
            "unique_key": unique_key,
            "group": group,
            "expires_ms": expires_ms,
            "throttle_ms": throttle_ms,
            "debounce_ms": debounce_ms,
        }
        if trace_context is not None:
            options["trace_context"] = trace_context
        if depends_on is not None:
            return await self._run(
                deps.enqueue_deps(
                    self.settings,
                    queue,
                    payload,
                    options,
                    depends_on,
                    on_parent_failure,
                    self._registered,
                )
            )
        if on_parent_failure != "fail":
            deps.check_policy(on_parent_failure)
        return await self._run(
            ops.enqueue_one(self.settings, queue, payload, options, self._registered)
        )

    async def enqueue_many(self, queue: str, payloads: Sequence[Any], **options: Any) -> _Jobs:
        """Add many jobs to a queue, in script calls of up to 1,000 jobs and 1 MiB of payloads.

        Every job is validated and encoded before anything is sent, so bad input writes
        nothing; each call is then written atomically (a job larger than 1 MiB goes alone).
        The queue is added to the registry first (`queues`, `find`, `migrate` use it).

        Args:
            queue: queue name.
            payloads: payloads, or `redisq.Spec` items carrying per-job options.
            **options: defaults for every job: name, priority, delay_ms, run_at_ms,
                max_attempts, lease_ms, unique_key, group, expires_ms, throttle_ms,
                debounce_ms, trace_context (as for `enqueue`; not id). One call may not
                repeat a debounced unique key.

        Returns:
            One Job per item, in order (existing jobs for ids or unique keys already live).

        Raises:
            InvalidArgument: an item or option is invalid; nothing was written.
        """
        ops.check_options(options)
        return await self._run(
            ops.enqueue_many(self.settings, queue, payloads, options, self._registered)
        )

    # ----------------------------------------------------------------------------------------
    # reads

    async def get(self, queue: str, id: str) -> Job | None:
        """Read one job; None when it does not exist (never enqueued, deleted or trimmed).

        A completed job whose record retention trimmed is still returned while its stored
        result lives (see `ack`'s result_ttl_ms).
        """
        return await self._run(queries.get(self.settings, queue, id))

    async def flow(self, queue: str, id: str) -> Flow:
        """Read the dependency DAG around a job: its ancestors and descendants, each with
        its job (state, result) as stored now, at most 1,000 jobs.

        The edges are kept for 7 days after each child's enqueue; a job without any gives a
        flow of one node.
        """
        return await self._run(deps.flow(self.settings, queue, id))

    async def find(self, id: str) -> Job | None:
        """Look a job id up in every known queue with one pipelined round trip."""
        return await self._run(queries.find(self.settings, id))

    async def list(
        self,
        queue: str | None = None,
        *,
        state: JobState | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> _Jobs:
        """List jobs in a stable order: by queue name, then state, then the state's own order.

        Within a state the order is claim order (ready), due time (scheduled), lease deadline
        (leased), or the time finished (completed, dead, cancelled).

        Args:
            queue: one queue, or None for every queue.
            state: only jobs in this state.
            limit: most jobs returned (None = all, read in pages of 500).
            offset: jobs skipped first.
        """
        return await self._run(queries.list_jobs(self.settings, queue, state, limit, offset))

    async def counts(self, queue: str | None = None) -> dict[JobState, int]:
        """Count jobs per state, in one queue or summed over every queue (O(1) per state)."""
        return await self._run(queries.counts(self.settings, queue))

    async def queues(self) -> _Names:
        """Name the queues that hold at least one job, sorted."""
        return await self._run(queries.queues(self.settings))

    async def peek(self, queue: str, limit: int = 10) -> _Jobs:
        """List the jobs the next claims would take, in claim order; nothing is locked."""
        return await self._run(queries.peek(self.settings, queue, limit))

    # ----------------------------------------------------------------------------------------
    # claim and the lease transitions

    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        lease_ms: int | None = None,
        count: int = 1,
        wait_ms: int = 0,
    ) -> Claimed:
        """Lease up to `count` ready jobs, best first, each with a new fencing token.

        Before taking jobs, each queue's due scheduled jobs are promoted and its expired
        leases reaped (in bounded batches). With several queues the round starts at the next
        queue each call, so a busy queue does not starve the others. A paused queue gives
        nothing.

        A queue that refuses the claim does not stop the others: while a queue migrates
        (`SchemaVersionError`), holds a key of another type (`WrongKeyType`), is denied by an
        ACL, or on Redis Cluster while its master is down, the claim goes on with the other
        queues and reports the refusal in the result's `refused` (queue -> error), so the
        jobs it leased are never lost. When every queue given refused, it raises the first
        queue's error (as a claim of one queue does). Errors that are not about one queue
        (a standalone server that cannot be reached) are raised unchanged.

        One script call moves a bounded amount of job data (about 512 KiB of records, at
        least one job), so Redis never blocks long on large payloads: for the rest of `count`
        the queue is claimed again.

        With `wait_ms`, a claim that finds no job blocks until one may be there (see `wait`)
        and claims again, until it gets jobs or the time runs out. The claim after a wait is
        pipelined behind the blocking command on the same connection, so Redis runs it the
        moment the wait is woken: a woken worker gets its jobs in one round trip. When this
        store's last claim of the same queues came up short, the first claim is skipped and
        the call starts by waiting. When a queue's rate limit held ready jobs back and the
        next may start within 250 ms, the claim returns at once, empty, with `held_ms` set:
        Redis times blocking waits out too coarsely for that, so the caller waits that long.

        A job whose stored record does not parse (written by something else) is not
        returned: it goes to the dead set with its bytes kept, and the jobs claimed with it
        come back as usual (a poison record never blocks a queue).

        Args:
            queues: one queue name or a list of names.
            worker: the claiming worker's name (recorded on the job).
            lease_ms: lease length (default 30,000, at most 12 hours); a job's own lease_ms
                wins.
            count: most jobs to lease (1 to 1000).
            wait_ms: longest wait for jobs when none is ready, 0 (the default: return at
                once) to 86,400,000 (a day).

        Returns:
            The leased jobs (possibly none), as a `redisq.Claimed` list whose `refused` names
            the queues that refused. Each job carries `token` and `lease_deadline_ms`.

        Raises:
            SchemaVersionError, WrongKeyType, ...: every queue given refused (the first
                queue's error).
        """
        check_int("wait_ms", wait_ms, 0, 86_400_000)
        deadline = time.monotonic() + wait_ms / 1000
        names = ops.check_queues(queues)
        block_ms = self._block_ms(names, deadline) if wait_ms and self._short >= set(names) else 0
        if self.settings.cluster and len(names) > 1:
            block_ms = min(block_ms, max(50, block_ms // len(names)))
        refused: dict[str, Exception] = {}
        while True:
            self._turn += 1
            due_in: dict[str, int] = {}
            jobs = await self._run(
                ops.claim(
                    self.settings, names, worker, lease_ms, count, self._turn - 1, due_in, block_ms
                )
            )
            self._claimed(names, len(jobs) < count, due_in)
            if refused:
                jobs.refused = {**refused, **jobs.refused}
            if jobs or not wait_ms or self._no_waits:
                return jobs
            if jobs.held_ms is not None and jobs.held_ms < _HELD_WAIT_MS:
                # A rate limit's next job is near: Redis times blocking waits out in steps of
                # about 100 ms, so the caller waits on its own clock (the worker does).
                return jobs
            refused = jobs.refused
            block_ms = self._block_ms(names, deadline)
            if block_ms < 0:
                return jobs
            if self.settings.cluster and len(names) > 1:
                # The wait covers the round's first queue only (one slot): a share of the
                # time each, as the rounds rotate.
                block_ms = min(block_ms, max(50, block_ms // len(names)))

    def _claimed(self, names: Sequence[str], short: bool, due_in: dict[str, int]) -> None:
        """Note what a claim of `names` reported: whether it came up short, and due times."""
        if short:
            self._short.update(names)
        else:
            self._short.difference_update(names)
        now = time.monotonic()
        for queue, ms in due_in.items():
            if ms < 0:
                self._due.pop(queue, None)
            else:
                self._due[queue] = now + ms / 1000

    def _block_ms(self, names: Sequence[str], deadline: float) -> int:
        """How long a wait on `names` may block: 0 when a known scheduled job is due (claim
        now), -1 when `deadline` has passed, else up to the deadline or the next due time."""
        now = time.monotonic()
        # Due within a millisecond counts as due: Redis blocks in whole milliseconds.
        soon = now + 0.001
        due = min((self._due[q] for q in names if q in self._due), default=None)
        if due is not None and due <= soon:
            for q in names:
                if self._due.get(q, soon + 1) <= soon:
                    del self._due[q]
            return 0
        left = (deadline if due is None else min(deadline, due)) - now
        if left <= 0:
            return -1
        return min(math.ceil(left * 1000), self.settings.max_block_ms)

    async def wait(self, queues: str | Sequence[str], *, timeout_ms: int) -> bool:
        """Block until one of `queues` may have jobs to claim, or `timeout_ms` passes.

        Workers call this when a claim came up short, instead of polling (or claim with
        `wait_ms`, which waits and claims in one round trip). It blocks on Redis (BZPOPMIN on
        each queue's wake set), which enqueue and every transition that makes a job ready or
        scheduled signal; a claim that leaves ready jobs behind signals it for the next
        worker. It also returns when the earliest scheduled job that this store's last short
        claim of a queue saw is due. One signal wakes one waiting worker. Wake-ups can be
        spurious (a claim may then find nothing): always claim to find out.

        On Redis Cluster each queue lives in its own slot, so with several queues the wait
        blocks on one queue at a time, in turn, for a share of the timeout each.

        Args:
            queues: one queue name or a list of names.
            timeout_ms: longest wait, 0 to 86,400,000 (a day); 0 only checks due times.

        Returns:
            True when woken (by a signal or a due job), False when the time ran out.
        """
        names = ops.check_queues(queues)
        check_int("timeout_ms", timeout_ms, 0, 86_400_000)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            block_ms = self._block_ms(names, deadline)
            if block_ms <= 0 or self._no_waits:
                return block_ms == 0
            batch = names
            if self.settings.cluster and len(names) > 1:
                self._wait_turn += 1
                batch = [names[self._wait_turn % len(names)]]
                block_ms = min(block_ms, max(50, block_ms // len(names)))
            if await self._run(ops.wait(self.settings, batch, block_ms)) is not None:
                return True

    async def stop_waiting(self) -> None:
        """Make this store's blocking waits return, now and from now on: for shutting down.

        A `wait` returns False, and a `claim` with `wait_ms` stops waiting but still claims
        (returning what it leased, which the caller must handle: run it or release it). On a
        standalone server a wait under way is unblocked at once; on Redis Cluster it ends at
        its own timeout; an asyncio wait under way ends at its timeout, or when its task is
        cancelled. Waits to come return at once.
        """
        self._no_waits = True
        self._transport.stop_waiting()

    async def totals(self, queue: str) -> dict[str, int]:
        """Read a queue's monotonic counters: enqueued, completed, retried, dead and expired.

        Unlike `counts`, which is capped by retention, these only grow (jobs created by
        enqueue; acknowledged; failed attempts sent back to ready or scheduled, by nack or
        by an expired lease; dead-lettered; cancelled because their `expires_ms` passed before
        they started), so the change between two reads gives rates.
        """
        return await self._run(queries.totals(self.settings, queue))

    async def expires_at(self, queue: str, id: str) -> int | None:
        """Read when a waiting job expires (Redis time, ms), if it was enqueued with expires_ms.

        Returns:
            The expiry, while it still applies (the job waits unstarted); None when the job
            has none, has started or finished, or does not exist.
        """
        return await self._run(queries.expires_at(self.settings, queue, id))

    async def ack(self, job: Job, result: Any = None, *, result_ttl_ms: int | None = None) -> Job:
        """Complete a leased job, storing `result` (msgpack) if given.

        Re-sending a successful ack (same token) succeeds again without a second completion.
        A job acked with a result stays readable by `get` (completed, with its result) for
        `result_ttl_ms` even after retention trims its record from the done set.

        Args:
            job: the leased job, as claim returned it.
            result: the value to store (msgpack); None stores none.
            result_ttl_ms: how long the result stays readable (None: the store's
                ``Retention.result_ttl_ms``, one day; 0: only as long as the record).

        Raises:
            LeaseLost: the lease is no longer held (stale token, or expired); nothing changed.
            JobNotFound: the job is gone (deleted, or trimmed after an earlier ack).
        """
        ttls = ops.result_ttls(self.settings, 1, result_ttl_ms)
        jobs = await self._run(ops.ack_many(self.settings, [job], [result], True, True, ttls))
        return jobs[0]

    async def ack_many(
        self,
        jobs: Sequence[Job],
        results: Sequence[Any] | None = None,
        *,
        snapshots: bool = True,
        result_ttl_ms: int | Sequence[int | None] | None = None,
    ) -> _Jobs:
        """Complete many leased jobs: script calls per queue of up to 1,000 jobs, 1 MiB of
        results and about 1 MiB of stored records.

        Every job is checked before the first call (a bad one refuses the whole list). Each
        call is all or nothing: if one job's lease is lost, `LeaseLost` names it and no job of
        that call is completed (ack the others one by one).

        Args:
            jobs: the leased jobs, as claim returned them.
            results: one result per job (msgpack), or None for none.
            snapshots: False skips building the completed snapshots and returns an empty
                list: for callers that only need to know the acks went through (a worker),
                it saves a few microseconds per job.
            result_ttl_ms: how long stored results stay readable (see `ack`): one value, or
                one per job (None: the store's retention).

        Returns:
            The completed jobs, in the order given (empty with snapshots=False).
        """
        if not isinstance(jobs, (list, tuple)):
            raise InvalidArgument("jobs", "a list of Jobs returned by claim", jobs)
        if results is not None and not isinstance(results, (list, tuple)):
            raise InvalidArgument("results", "None or a list of values (one per job)", results)
        values = [None] * len(jobs) if results is None else results
        if len(values) != len(jobs):
            raise InvalidArgument("results", f"a list of {len(jobs)} values (one per job)", values)
        ttls = ops.result_ttls(self.settings, len(jobs), result_ttl_ms)
        return await self._run(
            ops.ack_many(self.settings, jobs, values, snapshots=snapshots, ttls=ttls)
        )

    async def nack(
        self, job: Job, *, error: str = "", delay_ms: int | None = None, dead: bool = False
    ) -> Job:
        """Fail the current attempt of a leased job.

        The job is retried after `delay_ms` (scheduled; ready at once for 0), or goes to the
        dead set when its attempts are used up or `dead` is True.

        Args:
            job: the Job returned by claim.
            error: error text kept as last_error (cut at 16 KiB); '' keeps the previous one.
            delay_ms: retry delay; None = exponential backoff (1 s, x2, cap 15 min, +-25%).
            dead: dead-letter now, whatever attempts remain.

        Raises:
            LeaseLost: the lease is no longer held; nothing changed.
        """
        return await self._run(ops.nack(self.settings, job, error, delay_ms, dead))

    async def renew(self, job: Job, lease_ms: int | None = None) -> Job:
        """Extend a lease to now + lease_ms (default: the job's or the store's lease length).

        Raises:
            LeaseLost: the lease is no longer held or has expired; nothing changed.
        """
        op = ops.renew_many(self.settings, [job], lease_ms, single=True)
        outcome = (await self._run(op))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def renew_many(self, jobs: Sequence[Job], lease_ms: int | None = None) -> _Outcomes:
        """Extend many leases in one call per queue; each job is judged on its own.

        Returns:
            Per job, its renewed snapshot or the exception (LeaseLost, JobNotFound) it earned.
        """
        return await self._run(ops.renew_many(self.settings, jobs, lease_ms))

    async def release(self, job: Job, *, delay_ms: int = 0) -> Job:
        """Give a lease back without counting the attempt (a graceful stop, a snooze).

        Args:
            job: the leased job, as claim returned it.
            delay_ms: 0 puts it back in its place in the ready set; more schedules it that
                many ms from now (at most a year).
        """
        return await self._run(ops.release(self.settings, job, delay_ms))

    async def progress(self, job: Job, value: Any) -> Job:
        """Record progress (msgpack) on a job whose lease the caller holds."""
        return await self._run(ops.progress(self.settings, job, value))

    async def claim_and_ack(self, queue: str, *, worker: str = "claim_and_ack") -> Job | None:
        """Take the best ready job and complete it in one script; None when there is none."""
        return await self._run(ops.claim_and_ack(self.settings, queue, worker))

    async def reap(self, queue: str, *, limit: int = 1000) -> int:
        """Return expired leases to ready (or dead), and promote due jobs; count the leases.

        Each script call handles at most 250 leases (and 250 due jobs) and about 512 KiB of
        job records, so Redis never blocks long; for a larger `limit` this loops over calls
        until no expired lease is left or `limit` leases were handled.

        Args:
            queue: the queue.
            limit: most leases returned (and most due jobs promoted), 1 to 100,000.
        """
        return await self._run(ops.reap(self.settings, queue, limit))

    # ----------------------------------------------------------------------------------------
    # management

    async def update(
        self,
        queue: str,
        id: str,
        *,
        priority: int | None = None,
        payload: Any = NOT_SET,
        run_at_ms: int | None = None,
    ) -> Job:
        """Change a waiting job's priority, payload or due time.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is leased or finished; nothing changed.
        """
        set_payload = payload is not NOT_SET
        value = payload if set_payload else None
        return await self._run(
            ops.update(self.settings, queue, id, priority, value, set_payload, run_at_ms)
        )

    async def delete(self, queue: str, id: str) -> bool:
        """Remove a job in any state with its index entries and stored result; True when it
        existed."""
        return await self._run(ops.delete(self.settings, queue, id))

    async def cancel(self, queue: str, id: str) -> bool:
        """Cancel a job that has not finished; True when this call cancelled it.

        A leased job gets a new token, so its holder's ack or renew is refused (LeaseLost).
        """
        return await self._run(ops.cancel(self.settings, queue, id))

    async def wait_cancels(self, queues: str | Sequence[str], *, timeout_ms: int) -> _Notices:
        """Block until leased jobs of `queues` are cancelled, or `timeout_ms` passes; return
        those cancels (queue, id and the token of the lease each ended), oldest first.

        Workers call this in a loop (a thread of their own) so that the holder of a cancelled
        job stops its handler at once, not at the lease's next renewal. It reads the queues'
        cancel streams (XREAD), which the cancel script appends to when it ends a lease, so
        every caller sees every cancel after its previous call. The first call for a queue
        notes where its stream is, and only later cancels count: call it with ``timeout_ms=0``
        to do only that (before the jobs of interest are claimed). `stop_waiting` cuts a wait
        short. On Redis Cluster each queue has its own slot, so with several queues the wait
        blocks on one queue at a time, in turn (workers there use one caller per queue).

        Args:
            queues: one queue name or a list of names.
            timeout_ms: longest wait, 0 to 86,400,000 (a day); 0 returns at once, after
                noting where the streams are.

        Returns:
            The cancels seen since this store's previous call (possibly none).
        """
        names = ops.check_queues(queues)
        check_int("timeout_ms", timeout_ms, 0, 86_400_000)
        if self._no_waits and timeout_ms:
            return []
        batch = names
        block_ms = min(timeout_ms, self.settings.max_block_ms)
        if block_ms and self.settings.cluster and len(names) > 1:
            self._wait_turn += 1
            batch = [names[self._wait_turn % len(names)]]
            block_ms = min(block_ms, max(50, block_ms // len(names)))
        return await self._run(
            ops.wait_cancels(self.settings, batch, self._cancel_positions, block_ms)
        )

    async def retry_dead(
        self, queue: str, ids: Iterable[str] | None = None, *, limit: int = 1000
    ) -> int:
        """Replay dead jobs (the given ids, else the oldest) with a fresh attempt budget."""
        return await self._run(ops.retry_dead(self.settings, queue, ids, limit))

    async def pause(self, queue: str) -> None:
        """Stop every worker from claiming from `queue` until `resume`.

        Any valid name is accepted: a queue without jobs yet is paused ahead of its first
        job (its meta hash is written; `queues()` lists it once it holds jobs). The
        `redisq pause` command refuses names it does not know unless given ``--create``.
        """
        await self._run(ops.set_paused(self.settings, queue, True))

    async def resume(self, queue: str) -> None:
        """Let workers claim from a paused queue again (any valid name, like `pause`)."""
        await self._run(ops.set_paused(self.settings, queue, False))

    async def set_events(
        self, queue: str, on: bool = True, *, maxlen: int = events_ops.DEFAULT_EVENTS_MAXLEN
    ) -> None:
        """Turn the queue's event stream on or off (off by default; docs/events.md).

        While on, the scripts append one entry per job event to the stream, capped at about
        `maxlen` entries (XADD MAXLEN ~); read it with `events`. While off they write nothing
        (turning it off keeps the entries written so far).

        Raises:
            InvalidArgument: maxlen is not an int in [1, 10,000,000].
        """
        await self._run(events_ops.set_events(self.settings, queue, on, maxlen))

    async def events(
        self, queue: str, *, since: str = "0", count: int = 100, block_ms: int | None = None
    ) -> _Events:
        """Read the queue's events that follow the entry `since`, oldest first.

        Args:
            queue: the queue.
            since: an entry id (`Event.id`): the events after it; '0' reads from the oldest
                kept, '$' only events that come after this call (with block_ms).
            count: most events returned (1 to 10,000).
            block_ms: wait up to this long for an event when none follows `since` (None:
                return at once).

        Returns:
            The events (empty when none came); pass the last one's id as the next `since`.
        """
        return await self._run(events_ops.events(self.settings, queue, since, count, block_ms))

    async def wait_final(self, queue: str, id: str, *, timeout_ms: int) -> bool:
        """Block until the job is final (completed, dead or cancelled) or gone, at most
        timeout_ms (1 to 3,600,000): True when it is, False when the time ran out.

        The script that makes the job final wakes the wait in the same step (no polling):
        at most three commands, however long it waits.
        """
        return await self._run(events_ops.wait_final(self.settings, queue, id, timeout_ms))

    async def set_rate_limit(
        self, queue: str, rate_limit: str | None, *, key: str | None = None
    ) -> None:
        """Limit how many jobs of `queue` start, across every worker: ``"100/s"`` (also
        ``"/m"``, ``"/h"``); None removes the limit. With `key`, the limit of the jobs of that
        concurrency group of the queue (their rate key, ``group=`` at enqueue; see
        docs/groups.md) instead: each group has its own bucket.

        The limit is a bucket on the Redis clock in the queue's meta hash: claims lease only
        what it allows, the jobs held back stay ready (in order), and a worker waits until the
        next may start. Any window of one period starts at most the limit plus one job (plus
        limit/200 beyond 200 per period). Any valid name is accepted, like `pause`.

        Raises:
            InvalidArgument: a malformed limit (nothing is written).
        """
        await self._run(ops.set_rate_limit(self.settings, queue, rate_limit, key))

    async def rate_limit(self, queue: str, *, key: str | None = None) -> ops.RateState:
        """Read `queue`'s rate limit (None: none) and, while claims are held back by it or by
        a handler's `RateLimited`, when the next job may start (Redis clock, ms); with `key`,
        those of that group's own limit."""
        return await self._run(ops.rate_state(self.settings, queue, key))

    async def hold(self, queue: str, ms: int) -> int:
        """Hold `queue`'s claims back for `ms`, for every worker (what a handler's
        `RateLimited` does); returns when they may lease again (Redis clock, ms; 0: the
        queue does not exist and nothing was written). A hold never shortens another.
        """
        return await self._run(ops.rate_hold(self.settings, queue, ms))

    async def set_concurrency(self, queue: str, concurrency: int | None) -> None:
        """Cap how many jobs of `queue` are leased at once, across every worker; None
        removes the cap.

        Claims count the queue's leases standing (its leased set), so a slot comes back as
        soon as a lease ends: ack, nack, release, cancel, or the reaping of a crashed
        worker's lease. Any valid name is accepted, like `pause`.

        Raises:
            InvalidArgument: not an int in [1, 1,000,000] or None (nothing is written).
        """
        await self._run(ops.set_concurrency(self.settings, queue, "concurrency", concurrency))

    async def set_group_concurrency(self, queue: str, group_concurrency: int | None) -> None:
        """Lease at most `group_concurrency` jobs of one concurrency group of `queue` at
        once, across every worker (1: strict FIFO per group); None removes the limit (the
        groups are still served round-robin).

        A lowered limit holds from the next claim; a raised one reaches a group at its old
        limit when one of its leases ends or a job joins it.

        Raises:
            InvalidArgument: not an int in [1, 1,000,000] or None (nothing is written).
        """
        await self._run(
            ops.set_concurrency(self.settings, queue, "group_concurrency", group_concurrency)
        )

    async def concurrency(self, queue: str, id: str | None = None) -> ops.FlowState:
        """Read `queue`'s concurrency limits and what they hold back; with `id`, also that
        job's group and whether its group may lease now (what `redisq show` prints)."""
        return await self._run(ops.flow_state(self.settings, queue, id))

    async def purge(self, queue: str, state: JobState | None = None) -> int:
        """Delete every job of `queue` in `state` (None = all states); count them."""
        return await self._run(ops.purge(self.settings, queue, state))

    async def lock(self, queue: str, id: str, worker: str, ttl_ms: int) -> bool:
        """Take the advisory lock of a job id; not re-entrant; expires after ttl_ms."""
        return await self._run(ops.lock(self.settings, queue, id, worker, ttl_ms))

    async def unlock(self, queue: str, id: str, worker: str) -> bool:
        """Release the advisory lock of a job id if `worker` holds it."""
        return await self._run(ops.unlock(self.settings, queue, id, worker))

    # ----------------------------------------------------------------------------------------
    # periodic schedules

    async def upsert_schedule(
        self,
        id: str,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        queue: str = "default",
        name: str | None = None,
        payload: Any = None,
        options: dict[str, int] | None = None,
        tz: str = "UTC",
        start_at: int | datetime | None = None,
        end_at: int | datetime | None = None,
        limit: int | None = None,
        missed: str = "once",
        jitter_ms: int = 0,
    ) -> Schedule:
        """Create or change a periodic schedule: its ticks become jobs of `queue`.

        Idempotent: storing the definition already stored writes nothing (a deploy that
        declares the same schedules changes nothing). A changed definition replaces the
        stored one and takes effect from its next tick: when its timing (cron, every_ms, tz,
        start_at, end_at) is unchanged the pending tick stays, else the next tick is the
        first of the new timing after now. Runs, last run and a pause are kept.

        Each tick is enqueued exactly once, however many workers or schedulers drive the
        queue, as a job with the id ``<id>@<tick ms>``.

        Args:
            id: the schedule id, unique within the queue (1 to 200 characters).
            cron: a cron expression (``"*/5 * * * *"``), read in `tz`; or give every_ms.
            every_ms: the interval between ticks in ms (ticks at start_at + k * every_ms,
                or from the schedule's creation); or give cron.
            queue: the queue its jobs go to.
            name: the jobs' name (a task name routes them to the task).
            payload: the jobs' payload (msgpack).
            options: the jobs' priority, max_attempts and lease_ms.
            tz: the IANA time zone of the cron expression (DST included: see docs/schedules.md).
            start_at: no tick before this time (ms since the epoch, or an aware datetime).
            end_at: no tick after this time.
            limit: most ticks enqueued in all; then the schedule has run its course.
            missed: ticks missed while no driver ran (more than a minute late): "skip"
                (dropped), "once" (one catch-up run: the default) or "all" (each, at most the
                latest 100).
            jitter_ms: each tick's job becomes due up to this many ms after its tick (the
                same spread for every driver).

        Returns:
            The stored schedule.

        Raises:
            InvalidArgument: an argument is invalid (bad cron, unknown tz, every_ms <= 0,
                end before start, unknown missed policy...); nothing was written.
        """
        defn = ops.build_definition(
            self.settings,
            cron=cron,
            every_ms=every_ms,
            tz=tz,
            name=name,
            payload=payload,
            options=options,
            start_at=start_at,
            end_at=end_at,
            limit=limit,
            missed=missed,
            jitter_ms=jitter_ms,
        )
        return await self._run(
            ops.upsert_schedule(self.settings, self._registered, id, queue, defn)
        )

    async def remove_schedule(self, id: str, *, queue: str = "default") -> bool:
        """Delete a schedule (jobs of earlier ticks stay); True when it existed."""
        return await self._run(ops.remove_schedule(self.settings, id, queue))

    async def pause_schedule(self, id: str, *, queue: str = "default") -> Schedule:
        """Stop enqueueing a schedule's ticks until `resume_schedule`.

        Raises:
            ScheduleNotFound: no such schedule in the queue.
        """
        return await self._run(ops.set_schedule_paused(self.settings, id, queue, True))

    async def resume_schedule(self, id: str, *, queue: str = "default") -> Schedule:
        """Resume a paused schedule from its first tick after now (ticks that fell in the
        pause are not run).

        Raises:
            ScheduleNotFound: no such schedule in the queue.
        """
        return await self._run(ops.set_schedule_paused(self.settings, id, queue, False))

    async def run_schedule_now(self, id: str, *, queue: str = "default") -> str:
        """Enqueue one run of a schedule now, outside its ticks; return the job id.

        Raises:
            ScheduleNotFound: no such schedule in the queue.
        """
        return await self._run(ops.run_schedule_now(self.settings, id, queue))

    async def schedules(self, queue: str | None = None) -> _Schedules:
        """List the schedules of a queue (None: of every queue), by queue then id."""
        return await self._run(ops.schedules(self.settings, queue))

    async def tick_schedules(self, queue: str) -> ScheduleTicks:
        """Enqueue the due ticks of a queue's schedules: one pass of a schedule driver.

        Workers and `redisq scheduler` call this for their queues, then `wait_schedules`.
        Any number of drivers may call it at once: each tick is enqueued exactly once.
        """
        return await self._run(ops.tick_schedules(self.settings, queue, self._schedule_events))

    async def wait_schedules(self, queues: str | Sequence[str], *, timeout_ms: int) -> bool:
        """Block until a schedule of `queues` changes, or `timeout_ms` passes; True on a change.

        Changes after this store's last `tick_schedules` pass of each queue count. On Redis
        Cluster each queue has its own slot, so with several queues the wait blocks on one
        queue at a time, in turn. `stop_waiting` cuts it short.
        """
        names = ops.check_queues(queues)
        check_int("timeout_ms", timeout_ms, 0, 86_400_000)
        if self._no_waits:
            return False
        batch = names
        block_ms = min(timeout_ms, self.settings.max_block_ms)
        if self.settings.cluster and len(names) > 1:
            self._wait_turn += 1
            batch = [names[self._wait_turn % len(names)]]
            block_ms = min(block_ms, max(50, block_ms // len(names)))
        return await self._run(
            ops.wait_schedules(self.settings, batch, self._schedule_events, block_ms)
        )

    # ----------------------------------------------------------------------------------------
    # upgrades

    async def migrate(self, queue: str | None = None, *, batch: int = 500) -> _Migrations:
        """Convert queues written by the previous redisq (schema 2) to this one's layout.

        Stop every worker and client of the old version first: while a queue migrates, every
        operation on it, old or new, raises `SchemaVersionError`. The records are converted
        in script calls of about `batch` records each, so Redis never blocks for long; an
        interrupted migration (a crash, Ctrl-C) resumes when this is called again. A queue
        already at this version, or without data, is left unwritten, so running it twice is
        harmless. `redisq migrate` on the command line does the same.

        Args:
            queue: one queue, or None for every queue of the registry (`<prefix>:queues`).
            batch: records converted per script call (1 to 10,000; a call converts at most
                1,000, and fewer when they pass about 1 MiB).

        Returns:
            One `Migration` per queue, in name order: records converted, skipped (already
            converted) and bad (in no known layout, left as they are).

        Raises:
            InvalidArgument: `batch` is out of range; nothing was written.
            SchemaVersionError: a queue is at a version this redisq cannot migrate from
                (older than the previous one, or newer than this one).
        """
        if queue is None:
            return await self._run(ops.migrate_all(self.settings, batch))
        return [await self._run(ops.migrate(self.settings, queue, batch))]

    # ----------------------------------------------------------------------------------------
    # the worker registry

    async def workers(self) -> _Workers:
        """List the running workers, by name, from their heartbeats in the worker registry.

        Each worker rewrites its record every third of its TTL (`Worker`'s registry_ttl_ms,
        30 s by default); a worker that stopped cleanly is gone at once, one that died (kill
        -9, a lost host) once its TTL passed. One script call per 500 workers, each pruning
        up to 100 expired names from the registry's index.
        """
        out: list[WorkerInfo] = []
        offset = 0
        while True:
            page, more = await self._run(registry.list_workers(self.settings, offset))
            out += page
            if not more:
                break
            offset += registry.PAGE
        return sorted({w.name: w for w in out}.values(), key=lambda w: w.name)

    async def _heartbeat(self, name: str, record: dict[str, Any], ttl_ms: int) -> int:
        """Write a worker's record in the registry for ttl_ms (0: remove it); return when it
        expires (ms, Redis clock). Workers call this; see `workers`."""
        return await self._run(registry.heartbeat(self.settings, name, record, ttl_ms))
