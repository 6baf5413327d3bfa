"""A pure-Python model of a store's job lifecycle, for the state-machine test.

It knows nothing of Redis: it replays the contract (DESIGN.md and the key semantics of the
store's docstrings) on plain objects, so test_state_machine.py can predict every reply and the
exact state of every job after each step. Time is the test clock's value, moved only by
`advance`. The model is deliberately written from the contract, not from the Lua scripts:

- every queue has an enqueue sequence and a token counter; a job keeps its sequence when it
  returns to READY (nack with delay 0, reaped lease, release, promotion of a due scheduled
  job) and gets a new one, at the back, from retry_dead;
- READY jobs are claimed by priority (high first), then sequence (FIFO); peek lists the READY
  and the due SCHEDULED jobs in that order;
- a claim first promotes due scheduled jobs and reaps expired leases of each queue it visits;
- a lease is valid while its token is the job's current one, the job is LEASED and the
  deadline is still ahead (deadline <= now has expired); the call that ended the latest lease
  (ack, nack or release), re-sent with the same token, succeeds again without changing
  anything, even after the job was claimed again (a client retry after a lost reply);
- enqueue_many behaves like its items enqueued one after another, atomically;
- a unique key is held by at most one live (ready, scheduled, leased) job of a queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from redisq.models import Job, JobState

__all__ = ["LIVE", "EnqueueArgs", "LifecycleModel", "ModelJob", "Refused"]

LIVE = frozenset({JobState.READY, JobState.SCHEDULED, JobState.LEASED})
_LIST_ORDER = list(JobState)


class EnqueueArgs(NamedTuple):
    """The options of one enqueued job (the payload travels separately)."""

    id: str
    priority: int = 0
    delay_ms: int = 0
    max_attempts: int = 3
    lease_ms: int | None = None
    unique_key: str | None = None


class Refused(Exception):
    """The model's LeaseLost: the call must be refused and change nothing."""

    def __init__(self, reason: str, state: str) -> None:
        super().__init__(f"{reason} (job {state})")
        self.reason = reason
        self.state = state


@dataclass
class ModelJob:
    """One job as the contract says it must be."""

    id: str
    queue: str
    payload: Any
    state: JobState
    priority: int
    seq: int
    max_attempts: int
    created: int
    run_at: int
    lease_ms: int | None
    unique_key: str | None
    attempts: int = 0
    token: int | None = None
    worker: str | None = None
    leased_at: int | None = None
    deadline: int | None = None
    finished: int | None = None
    last_error: str | None = None
    result: Any = None
    #: '<verb>/<token>' of the call that ended the latest lease; kept by later claims.
    ended: str = ""

    @property
    def claim_order(self) -> tuple[int, int]:
        """Sort key of the ready set: priority high first, then FIFO by sequence."""
        return (-self.priority, self.seq)

    def snapshot(self) -> Job:
        """The Job the store must return for this job now."""
        return Job(
            id=self.id,
            queue=self.queue,
            name=None,
            payload=self.payload,
            state=self.state,
            priority=self.priority,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            token=self.token,
            worker=self.worker,
            created_at_ms=self.created,
            run_at_ms=self.run_at,
            lease_deadline_ms=self.deadline if self.state is JobState.LEASED else None,
            last_error=self.last_error,
            result=self.result,
            progress=None,
            finished_at_ms=self.finished,
            lease_ms=self.lease_ms,
            unique_key=self.unique_key,
        )


@dataclass
class ModelQueue:
    """The jobs of one queue, with its enqueue sequence and token counter."""

    name: str
    jobs: dict[str, ModelJob] = field(default_factory=dict)
    seq: int = 0
    token: int = 0

    def in_state(self, state: JobState) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.state is state]

    def live_holder(self, unique_key: str) -> ModelJob | None:
        """The live job holding `unique_key`, if any."""
        holders = [j for j in self.jobs.values() if j.unique_key == unique_key and j.state in LIVE]
        assert len(holders) <= 1, f"model broke its own rule: {unique_key!r} held by {holders}"
        return holders[0] if holders else None


class LifecycleModel:
    """Every queue of one store, on the test clock.

    Args:
        now_ms: the test clock's value at the start.
        queues: the queue names the test uses.
        lease_ms: the store's default lease length (`connect(lease_ms=...)`).
    """

    def __init__(self, now_ms: int, queues: list[str], lease_ms: int) -> None:
        self.now = now_ms
        self.lease_ms = lease_ms
        self.queues = {name: ModelQueue(name) for name in queues}

    def advance(self, ms: int) -> None:
        self.now += ms

    def job(self, queue: str, job_id: str) -> ModelJob | None:
        return self.queues[queue].jobs.get(job_id)

    # ------------------------------------------------------------------------------ enqueue

    def enqueue(self, queue: str, args: EnqueueArgs, payload: Any) -> ModelJob:
        """Create the job, or return the job that already has its id or live unique key."""
        q = self.queues[queue]
        existing = q.jobs.get(args.id)
        if existing is not None:
            return existing
        if args.unique_key is not None:
            holder = q.live_holder(args.unique_key)
            if holder is not None:
                return holder
        q.seq += 1
        run_at = self.now + args.delay_ms
        job = ModelJob(
            id=args.id,
            queue=queue,
            payload=payload,
            state=JobState.SCHEDULED if run_at > self.now else JobState.READY,
            priority=args.priority,
            seq=q.seq,
            max_attempts=args.max_attempts,
            created=self.now,
            run_at=run_at,
            lease_ms=args.lease_ms,
            unique_key=args.unique_key,
        )
        q.jobs[job.id] = job
        return job

    def enqueue_many(self, queue: str, items: list[tuple[EnqueueArgs, Any]]) -> list[ModelJob]:
        return [self.enqueue(queue, args, payload) for args, payload in items]

    # ------------------------------------------------------------------------- housekeeping

    def _promote_due(self, q: ModelQueue) -> int:
        due = [j for j in q.in_state(JobState.SCHEDULED) if j.run_at <= self.now]
        for job in due:
            job.state = JobState.READY
        return len(due)

    def _reap_expired(self, q: ModelQueue) -> int:
        expired = [
            j
            for j in q.in_state(JobState.LEASED)
            if j.deadline is not None and j.deadline <= self.now
        ]
        for job in expired:
            job.ended = f"reap/{job.token}"
            if job.attempts >= job.max_attempts:
                job.state = JobState.DEAD
                job.finished = self.now
                job.last_error = f"lease expired on attempt {job.attempts} of {job.max_attempts}"
            else:
                job.state = JobState.READY
        return len(expired)

    def reap(self, queue: str) -> int:
        """Expired leases back to READY (or DEAD), due jobs promoted; returns the leases."""
        q = self.queues[queue]
        reaped = self._reap_expired(q)
        self._promote_due(q)
        return reaped

    # -------------------------------------------------------------------------------- claim

    def claim(
        self, names: list[str], count: int, lease_ms: int | None, worker: str, turn: int
    ) -> list[ModelJob]:
        """Lease up to `count` jobs; the round over `names` starts at `turn` modulo their number."""
        start = turn % len(names)
        out: list[ModelJob] = []
        for name in names[start:] + names[:start]:
            q = self.queues[name]
            self._promote_due(q)
            self._reap_expired(q)
            ready = sorted(q.in_state(JobState.READY), key=lambda j: j.claim_order)
            for job in ready[: count - len(out)]:
                q.token += 1
                job.state = JobState.LEASED
                job.token = q.token
                job.worker = worker
                job.attempts += 1
                job.leased_at = self.now
                job.deadline = self.now + (job.lease_ms or lease_ms or self.lease_ms)
                out.append(job)
            if len(out) >= count:
                break
        return out

    # --------------------------------------------------------------------- lease transitions

    def check_lease(self, queue: str, job_id: str, token: int | None, verb: str) -> bool:
        """Raise Refused unless the caller holds the lease; True for a re-sent successful call."""
        job = self.queues[queue].jobs[job_id]
        if job.token != token or job.state is not JobState.LEASED:
            if job.ended == f"{verb}/{token}":
                return True
            raise Refused("stale token", job.state.value)
        assert job.deadline is not None
        if job.deadline <= self.now:
            raise Refused("lease expired", JobState.LEASED.value)
        return False

    def ack(self, queue: str, job_id: str, token: int | None, result: Any) -> ModelJob:
        job = self.queues[queue].jobs[job_id]
        if self.check_lease(queue, job_id, token, "ack"):
            return job
        job.state = JobState.COMPLETED
        job.finished = self.now
        job.ended = f"ack/{token}"
        job.result = result
        return job

    def nack(
        self, queue: str, job_id: str, token: int | None, error: str, delay_ms: int, dead: bool
    ) -> ModelJob:
        job = self.queues[queue].jobs[job_id]
        if self.check_lease(queue, job_id, token, "nack"):
            return job
        job.ended = f"nack/{token}"
        if error:
            job.last_error = error
        if dead or job.attempts >= job.max_attempts:
            job.state = JobState.DEAD
            job.finished = self.now
        elif delay_ms > 0:
            job.state = JobState.SCHEDULED
            job.run_at = self.now + delay_ms
        else:
            job.state = JobState.READY
            job.run_at = self.now
        return job

    def nack_goes_dead(self, queue: str, job_id: str, dead: bool) -> bool:
        """Tell whether a valid nack of the job dead-letters it."""
        job = self.queues[queue].jobs[job_id]
        return dead or job.attempts >= job.max_attempts

    def renew(self, queue: str, job_id: str, token: int | None, lease_ms: int | None) -> ModelJob:
        job = self.queues[queue].jobs[job_id]
        again = self.check_lease(queue, job_id, token, "renew")
        assert not again, "renew never ends a lease"
        job.deadline = self.now + (lease_ms or job.lease_ms or self.lease_ms)
        return job

    def release(self, queue: str, job_id: str, token: int | None) -> ModelJob:
        job = self.queues[queue].jobs[job_id]
        if self.check_lease(queue, job_id, token, "release"):
            return job
        job.state = JobState.READY
        job.attempts = max(job.attempts - 1, 0)
        job.ended = f"release/{token}"
        return job

    # --------------------------------------------------------------------------- management

    def cancel(self, queue: str, job_id: str) -> bool:
        q = self.queues[queue]
        job = q.jobs.get(job_id)
        if job is None or job.state not in LIVE:
            return False
        if job.state is JobState.LEASED:
            q.token += 1
            job.token = q.token
        job.state = JobState.CANCELLED
        job.finished = self.now
        job.ended = "cancel"
        return True

    def retry_dead(self, queue: str, ids: list[str] | None, limit: int) -> int:
        """Replay dead jobs in order; one whose unique key a live job holds stays dead."""
        q = self.queues[queue]
        if ids is None:
            chosen = [j.id for j in self._finished_order(q, JobState.DEAD)][:limit]
        else:
            chosen = ids[:limit]
        replayed = 0
        for job_id in chosen:
            job = q.jobs.get(job_id)
            if job is None or job.state is not JobState.DEAD:
                continue
            if job.unique_key is not None and q.live_holder(job.unique_key) is not None:
                continue
            q.seq += 1
            job.state = JobState.READY
            job.seq = q.seq
            job.attempts = 0
            job.run_at = self.now
            job.finished = None
            job.ended = "retry"
            replayed += 1
        return replayed

    # -------------------------------------------------------------------------------- reads

    def peek(self, queue: str, limit: int) -> list[ModelJob]:
        """What the next claims take, best first: READY jobs and due SCHEDULED ones."""
        q = self.queues[queue]
        due = [j for j in q.in_state(JobState.SCHEDULED) if j.run_at <= self.now]
        return sorted(q.in_state(JobState.READY) + due, key=lambda j: j.claim_order)[:limit]

    def counts(self, queue: str) -> dict[JobState, int]:
        q = self.queues[queue]
        return {state: len(q.in_state(state)) for state in _LIST_ORDER}

    @staticmethod
    def _finished_order(q: ModelQueue, state: JobState) -> list[ModelJob]:
        return sorted(q.in_state(state), key=lambda j: (j.finished, j.id))

    def listing(self, queue: str) -> list[ModelJob]:
        """Every job of the queue in `Store.list` order: by state, then each set's order."""
        q = self.queues[queue]
        return [
            *sorted(q.in_state(JobState.READY), key=lambda j: j.claim_order),
            *sorted(q.in_state(JobState.SCHEDULED), key=lambda j: (j.run_at, j.id)),
            *sorted(q.in_state(JobState.LEASED), key=lambda j: (j.deadline, j.id)),
            *self._finished_order(q, JobState.COMPLETED),
            *self._finished_order(q, JobState.DEAD),
            *self._finished_order(q, JobState.CANCELLED),
        ]
