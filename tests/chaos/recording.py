"""A Store that writes to the ledger what each transition was asked and what Redis answered.

Keyword options the wrapper does not name pass through to the store unchanged, so the
wrapper keeps working when a store method grows an option.

Workers of the harness run the real `redisq.Worker` on a `RecordingStore` (see
`tests.chaos.tasks`), so the ledger holds the Redis side of every lease without test-only
code in the scripts:

- ``CLAIM``: the lease granted, with its token, attempt and deadline from the claim's reply;
  ``granted`` (the Redis time of the claim) is the deadline less the lease length.
- ``RENEW_OK`` / ``RENEW_REFUSED``: the new deadline (so the Redis time of the renewal), or
  the refusal.
- ``ACK_SENT`` then ``ACK_OK`` / ``ACK_REFUSED``: acks ask for snapshots, whose
  ``finished_at_ms`` is the Redis time of the completion (a re-sent ack returns the first one).
- ``NACK_SENT`` then ``NACK_OK`` / ``NACK_REFUSED``, the same for ``RELEASE``: the Redis time
  of the end is read off the stored record where it is there (finished time, or run_at less
  the delay).
- ``*_ERR``: the call failed without an answer (connection errors, timeouts); the first
  call of that kind to go through again writes ``RESUMED`` with the time it was made.

A lease is named by (queue, id, token, granted): ``granted`` tells two leases apart even if a
broken claim handed out one token twice. Each line is written after the reply, so a process
killed between a reply and its line loses that line; the ``*_SENT`` lines let the checker
tell such an unconfirmed end from a missing one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from redisq import Store
from redisq.errors import JobNotFound, LeaseLost, RedisqError
from redisq.models import Job, JobState

from .ledger import Ledger

__all__ = ["RecordingStore", "lease_of"]


def lease_of(job: Job, default_ms: int) -> int:
    """The lease length a claim gave `job`: its own lease_ms, else the claim's."""
    return job.lease_ms if job.lease_ms else default_ms


class RecordingStore:
    """Wraps a sync `Store`; the methods a worker uses write ledger lines, the rest pass through.

    Args:
        store: the store to wrap (closed by `close`).
        ledger: where the lines go.
    """

    def __init__(self, store: Store, ledger: Ledger) -> None:
        self._store = store
        self._ledger = ledger
        self._lock = threading.Lock()
        #: Operations whose last call failed: the next success writes RESUMED.
        self._failing: set[str] = set()
        #: (queue, id, token) -> the Redis time the lease was granted (from its CLAIM); kept
        #: after the lease ends, for re-sent or late calls (a few dozen bytes per lease).
        self._granted: dict[tuple[str, str, int], int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def store(self) -> Store:
        """The wrapped store."""
        return self._store

    @property
    def ledger(self) -> Ledger:
        """Where the lines go (closed by its owner, not by `close`)."""
        return self._ledger

    # ------------------------------------------------------------------------ lease names

    def _failed(self, op: str) -> None:
        with self._lock:
            self._failing.add(op)

    def _succeeded(self, op: str, started: float) -> None:
        """After failures, note when the first call that went through again was made."""
        if op in self._failing:
            with self._lock:
                self._failing.discard(op)
            self._ledger.write("RESUMED", op=op, started=round(started * 1000, 3))

    def _default_lease(self) -> int:
        return self._store.settings.lease_ms

    def lease(self, job: Job) -> dict[str, Any]:
        """The fields naming `job`'s lease in ledger lines."""
        token = job.token or 0
        with self._lock:
            granted = self._granted.get((job.queue, job.id, token))
        if granted is None and job.lease_deadline_ms is not None:
            granted = job.lease_deadline_ms - lease_of(job, self._default_lease())
        return {"q": job.queue, "id": job.id, "token": token, "granted": granted}

    # ----------------------------------------------------------------------------- claim

    def claim(self, queues: str | Sequence[str], **options: Any) -> list[Job]:
        """`Store.claim`, writing one CLAIM line per leased job."""
        started = time.time()
        try:
            jobs = self._store.claim(queues, **options)
        except Exception as exc:
            self._ledger.write("CLAIM_ERR", err=_describe(exc))
            self._failed("claim")
            raise
        self._succeeded("claim", started)
        default = options.get("lease_ms") or self._default_lease()
        for job in jobs:
            deadline = job.lease_deadline_ms or 0
            lease = lease_of(job, default)
            with self._lock:
                self._granted[(job.queue, job.id, job.token or 0)] = deadline - lease
            self._ledger.write(
                "CLAIM",
                q=job.queue,
                id=job.id,
                token=job.token,
                granted=deadline - lease,
                deadline=deadline,
                lease=lease,
                attempt=job.attempts,
                worker=job.worker,
            )
        return jobs

    # ----------------------------------------------------------------------------- renew

    def renew_many(
        self, jobs: Sequence[Job], lease_ms: int | None = None, **options: Any
    ) -> list[Job | Exception]:
        """`Store.renew_many`, writing RENEW_OK or RENEW_REFUSED per job."""
        started = time.time()
        try:
            outcomes = self._store.renew_many(jobs, lease_ms, **options)
        except Exception as exc:
            # Some of these renewals may have gone through (one call per queue, or a reply
            # lost after the script ran): the checker allows for them.
            leases = [_short(self.lease(job)) for job in jobs]
            self._ledger.write(
                "RENEW_ERR", leases=leases, sent=round(started * 1000, 3), err=_describe(exc)
            )
            self._failed("renew")
            raise
        self._succeeded("renew", started)
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._renewed(job, outcome, lease_ms)
        return outcomes

    def renew(self, job: Job, lease_ms: int | None = None, **options: Any) -> Job:
        """`Store.renew`, writing RENEW_OK or RENEW_REFUSED."""
        try:
            renewed = self._store.renew(job, lease_ms, **options)
        except (LeaseLost, JobNotFound) as exc:
            self._renewed(job, exc, lease_ms)
            raise
        except Exception as exc:
            self._ledger.write("RENEW_ERR", leases=[_short(self.lease(job))], err=_describe(exc))
            raise
        self._renewed(job, renewed, lease_ms)
        return renewed

    def _renewed(self, job: Job, outcome: Job | Exception, lease_ms: int | None) -> None:
        if isinstance(outcome, Job):
            deadline = outcome.lease_deadline_ms or 0
            lease = lease_ms or lease_of(outcome, self._default_lease())
            self._ledger.write(
                "RENEW_OK", **self.lease(job), deadline=deadline, at=deadline - lease
            )
        else:
            self._ledger.write("RENEW_REFUSED", **self.lease(job), err=_describe(outcome))

    # ------------------------------------------------------------------------------- ack

    def ack_many(
        self,
        jobs: Sequence[Job],
        results: Sequence[Any] | None = None,
        *,
        snapshots: bool = True,
        **options: Any,
    ) -> list[Job]:
        """`Store.ack_many` with snapshots (their finished time is the Redis time of the ack).

        Options the wrapper does not know (added to the store later) pass through.
        """
        self._ledger.write("ACK_SENT", leases=[_short(self.lease(job)) for job in jobs])
        started = time.time()
        try:
            done = self._store.ack_many(jobs, results, snapshots=True, **options)
        except (LeaseLost, JobNotFound) as exc:
            refused = next((j for j in jobs if j.id == exc.job_id), None)
            if refused is not None:
                self._ledger.write("ACK_REFUSED", **self.lease(refused), err=_describe(exc))
            raise
        except Exception as exc:
            self._ledger.write("ACK_ERR", n=len(jobs), err=_describe(exc))
            self._failed("ack")
            raise
        self._succeeded("ack", started)
        for job, stored in zip(jobs, done, strict=True):
            self._acked(job, stored)
        return done if snapshots else []

    def ack(self, job: Job, result: Any = None, **options: Any) -> Job:
        """`Store.ack`, writing ACK_SENT, then ACK_OK or ACK_REFUSED."""
        self._ledger.write("ACK_SENT", leases=[_short(self.lease(job))])
        try:
            stored = self._store.ack(job, result, **options)
        except (LeaseLost, JobNotFound) as exc:
            self._ledger.write("ACK_REFUSED", **self.lease(job), err=_describe(exc))
            raise
        except Exception as exc:
            self._ledger.write("ACK_ERR", n=1, err=_describe(exc))
            raise
        self._acked(job, stored)
        return stored

    def _acked(self, job: Job, stored: Job) -> None:
        self._ledger.write(
            "ACK_OK",
            **self.lease(job),
            at=stored.finished_at_ms,
            state=str(stored.state),
            rtoken=stored.token,
        )

    # ----------------------------------------------------------------------- nack, release

    def nack(
        self,
        job: Job,
        *,
        error: str = "",
        delay_ms: int | None = None,
        dead: bool = False,
        **options: Any,
    ) -> Job:
        """`Store.nack`, writing NACK_SENT, then NACK_OK (with its Redis time) or NACK_REFUSED."""
        self._ledger.write("NACK_SENT", **self.lease(job), delay=delay_ms, dead=dead)
        try:
            stored = self._store.nack(job, error=error, delay_ms=delay_ms, dead=dead, **options)
        except (LeaseLost, JobNotFound) as exc:
            self._ledger.write("NACK_REFUSED", **self.lease(job), err=_describe(exc))
            raise
        except Exception as exc:
            self._ledger.write("NACK_ERR", **self.lease(job), err=_describe(exc))
            raise
        self._ended("NACK_OK", job, stored, delay_ms)
        return stored

    def release(self, job: Job, *, delay_ms: int = 0, **options: Any) -> Job:
        """`Store.release`, writing RELEASE_SENT, then RELEASE_OK or RELEASE_REFUSED."""
        self._ledger.write("RELEASE_SENT", **self.lease(job), delay=delay_ms)
        try:
            stored = self._store.release(job, delay_ms=delay_ms, **options)
        except (LeaseLost, JobNotFound) as exc:
            self._ledger.write("RELEASE_REFUSED", **self.lease(job), err=_describe(exc))
            raise
        except Exception as exc:
            self._ledger.write("RELEASE_ERR", **self.lease(job), err=_describe(exc))
            raise
        self._ended("RELEASE_OK", job, stored, delay_ms or None)
        return stored

    def _ended(self, ev: str, job: Job, stored: Job, delay_ms: int | None) -> None:
        """Write the end of a lease, with its Redis time when the stored record tells it."""
        at: int | None = None
        if stored.token == job.token:  # else a re-sent call, answered with a later record
            if stored.state is JobState.DEAD and stored.finished_at_ms is not None:
                at = stored.finished_at_ms
            elif stored.state is JobState.SCHEDULED and delay_ms:
                at = stored.run_at_ms - delay_ms
            elif stored.state is JobState.READY and ev == "NACK_OK" and not delay_ms:
                at = stored.run_at_ms  # nack puts run_at = now on a job ready at once
        self._ledger.write(
            ev, **self.lease(job), at=at, state=str(stored.state), rtoken=stored.token
        )

    # ---------------------------------------------------------------------------- reaper

    def reap(self, queue: str, *, limit: int = 1000, **options: Any) -> int:
        """`Store.reap`, writing REAP when it moved something."""
        started = time.time()
        try:
            count = self._store.reap(queue, limit=limit, **options)
        except Exception as exc:
            self._ledger.write("REAP_ERR", q=queue, err=_describe(exc))
            self._failed("reap")
            raise
        self._succeeded("reap", started)
        if count:
            self._ledger.write("REAP", q=queue, n=count)
        return count


def _short(lease: dict[str, Any]) -> list[Any]:
    return [lease["q"], lease["id"], lease["token"], lease["granted"]]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RedisqError):
        return f"{type(exc).__name__}: {exc}"[:300]
    return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:300]
