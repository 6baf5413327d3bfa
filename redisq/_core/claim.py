"""Claiming: the claim and wait calls, claim_and_ack, and the reaper."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from redisq._core.calls import (
    MAX_CLAIM,
    MAX_ERROR_LENGTH,
    Call,
    Op,
    Settings,
    check_reply,
    decoded,
    ok,
    queue_keys,
    script_call,
)
from redisq._core.finish import error_text, nack_call
from redisq._core.records import parse_entries, parse_record
from redisq._core.status import ScriptStatus
from redisq._core.validate import (
    MAX_LEASE_MS,
    check_int,
    check_name,
)
from redisq.errors import BadRecord, InvalidArgument, RedisqError, SerializationError
from redisq.models import Claimed, Job

#: Store-side events worth an operator's eye (poison records met by claim).
_log = logging.getLogger("redisq.store")

#: Most expired leases one reap, claim or claim_and_ack script call reaps, and most due jobs
#: it promotes (MAX_BATCH in lua/lib/budget.lua, which refuses more): `reap` loops over
#: calls of at most this many.
MAX_REAP_BATCH = 250
#: Most expired leases one `reap` accepts to return.
MAX_REAP = 100_000
#: What a job record holds besides its payload, at most: the last error and the head.
_RECORD_EXTRA = MAX_ERROR_LENGTH + 1024


class Refusal(Exception):
    """Thrown into an operation by the client that runs it: a call failed with an error that
    concerns its queue alone (see the stores' `queue_refusal`), so an operation over several
    queues may go on without that queue. An operation that does not catch it lets it out,
    and the client raises `error` unchanged."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def size_hint(s: Settings) -> int:
    """The largest job record this client expects (its payload limit, plus the rest of a
    record): scripts size their reads by it (lua/lib/budget.lua)."""
    return s.payload_limit + _RECORD_EXTRA


# --------------------------------------------------------------------------------------------
# claim and the lease transitions


def check_queues(queues: str | Sequence[str]) -> list[str]:
    """Validate the queue argument of claim: one name or a non-empty list of names."""
    if isinstance(queues, str):
        return [check_name("queue", queues)]
    if not isinstance(queues, (list, tuple)) or not queues:
        raise InvalidArgument("queues", "a queue name or a non-empty list of names", queues)
    return [check_name(f"queues[{i}]", q) for i, q in enumerate(queues)]


def claim(
    s: Settings,
    queues: str | Sequence[str],
    worker: str,
    lease_ms: int | None,
    count: int,
    turn: int,
    due_in: dict[str, int] | None = None,
    block_ms: int = 0,
) -> Op[Claimed]:
    """Lease up to `count` jobs, starting the round at queue number `turn` (for fairness).

    For each queue that came up short, `due_in` receives the ms until its earliest scheduled
    job is due (-1: none; 0: its housekeeping left due jobs or expired leases behind: claim
    again at once), which `wait` uses to wake in time. With `block_ms`, the first claim is
    pipelined behind a blocking wait on the queues' wake sets (see `wait`): Redis runs it the
    moment the wait returns, so a woken worker gets its jobs in the same round trip. On Redis
    Cluster that wait covers the first queue only (one slot per command). When the wait times
    out with nothing found, the other queues are not claimed (idle cost).

    One script call moves a bounded amount of job data (lua/lib/budget.lua): when a call
    stops early with ready jobs left, the queue is claimed again for the rest of `count`.

    A queue that refuses (a refusal status, or a `Refusal` thrown in by the client) is
    recorded in the result's `refused` and the round goes on with the other queues; when
    every queue given refused, the first queue's error is raised.
    """
    names = check_queues(queues)
    check_name("worker", worker)
    lease = s.lease_ms if lease_ms is None else check_int("lease_ms", lease_ms, 1, MAX_LEASE_MS)
    check_int("count", count, 1, MAX_CLAIM)
    start = turn % len(names)
    order = names[start:] + names[:start]
    jobs = Claimed()
    refused = jobs.refused
    timed_out = False
    for queue in order:
        need = count - len(jobs)
        first = True
        while need > 0:
            call = _claim_call(s, queue, worker, need, lease)
            try:
                if first and block_ms > 0 and queue is order[0]:
                    waited = order[:1] if s.cluster else order
                    woken, reply = yield from _wait_then(s, waited, block_ms, call)
                    timed_out = woken is None
                else:
                    reply = yield call
            except Refusal as refusal:
                refused[queue] = refusal.error
                break
            first = False
            if reply[0] == ScriptStatus.PAUSED:
                break
            try:
                check_reply(reply, queue)
            except RedisqError as exc:  # a refusal of this queue: the others go on
                refused[queue] = exc
                break
            good, spoiled = _claimed_jobs(queue, reply)
            jobs.extend(good)
            if spoiled:
                # Refused: their leases run out, and the reaper sets them aside then.
                with contextlib.suppress(Refusal):
                    yield [_bury(s, queue, *bad) for bad in spoiled]
            if due_in is not None:
                due_in[queue] = int(reply[2])
            if reply[3] == _HELD:  # the queue's rate limit held ready jobs back
                held = int(reply[2])
                jobs.held_ms = held if jobs.held_ms is None else min(jobs.held_ms, held)
                break
            if not reply[3] or reply[3] == _CAPPED or len(good) >= need:
                break
            need = count - len(jobs)  # the call stopped early with ready jobs left
        # A wait that timed out signalled nothing: the claim behind it was a safety check of
        # its first queue (the round rotates, so each queue is checked in turn).
        if len(jobs) >= count or (timed_out and not jobs):
            break
    if refused and not jobs and len(refused) == len(set(names)):
        raise refused[names[0]]
    return jobs


#: claim's `more` when the queue's rate limit held ready jobs back (lua/lib/rate.lua).
_HELD = 2
#: claim's `more` when the queue's concurrency cap or its group limits held jobs back
#: (lua/lib/groups.lua): the end of a lease wakes a worker.
_CAPPED = 3


def _wait_then(s: Settings, queues: Sequence[str], block_ms: int, call: Call[Any]) -> Op[Any]:
    """Pipeline a claim behind a blocking wait; return (woken queue or None, claim reply).

    When the pair fails (a Refusal), which of the two failed is unknown: the claim is sent
    again alone, with the same request id, so a claim that did run returns its jobs from its
    memo instead of stranding them. A refusal of that call goes to the caller.
    """
    try:
        woken, reply = yield [wait(s, queues, block_ms), call]
    except Refusal:
        reply = yield call
        return "", reply  # not a timed-out wait: the other queues are claimed too
    return woken, reply


def _claim_call(s: Settings, queue: str, worker: str, count: int, lease: int) -> Call[Any]:
    return script_call(
        "claim",
        queue_keys(s.prefix, queue),
        ok,
        now_ms=s.now_arg(),
        worker=worker,
        count=count,
        lease_ms=lease,
        request_id=os.urandom(8).hex(),
        memo_ms=s.claim_memo_ms,
        batch=s.housekeeping_batch,
        dead_keep=s.retention.dead,
        dead_age_ms=s.retention.dead_age_ms,
        size_hint=size_hint(s),
        cancelled_keep=s.retention.cancelled,
        cancelled_age_ms=s.retention.cancelled_age_ms,
    )


def _claimed_jobs(queue: str, reply: list[Any]) -> tuple[list[Job], list[tuple[str, int, str]]]:
    """Parse a claim's ``id, record, ...`` (from reply[4]): the Jobs, and (id, token, why)
    for each leased record whose tail does not parse (the script checked only its head)."""
    try:
        return parse_entries(queue, reply, 4), []  # the usual case: every record parses
    except (BadRecord, SerializationError, ValueError):
        pass
    good: list[Job] = []
    spoiled: list[tuple[str, int, str]] = []
    for i in range(4, len(reply), 2):
        job_id, data = reply[i].decode(), reply[i + 1]
        try:
            good.append(parse_record(queue, job_id, data))
        except (BadRecord, SerializationError, ValueError) as exc:
            try:
                token = int(data.split(b"\n", 4)[3])  # the head parsed on the server
            except (ValueError, IndexError):
                continue  # cannot happen after the script's check; its lease runs out
            spoiled.append((job_id, token, str(exc)))
            _log.warning(
                "job %s of queue %s: its stored record does not parse (%s); it goes to the"
                " dead set as it is",
                job_id,
                queue,
                exc,
            )
    return good, spoiled


def _bury(s: Settings, queue: str, job_id: str, token: int, why: str) -> Call[Any]:
    """Dead-letter a job just claimed whose stored record does not parse (a poison record):
    no handler can run it, and it must not hold up the jobs claimed with it. The nack script
    rewrites only the record's head; the reply (the record) is not parsed."""
    text = error_text(f"dead-lettered by claim: its stored record does not parse ({why})")
    return nack_call(s, queue, job_id, token, text, 0, True, ok)


def wait(s: Settings, queues: Sequence[str], timeout_ms: int) -> Call[str | None]:
    """Block on the queues' wake sets (BZPOPMIN) for up to `timeout_ms` (at least 1 ms).

    The reply names the queue whose set was signalled, or None when the time ran out. The
    caller has validated the names and chosen queues that may share one command (standalone
    servers: any; Redis Cluster: one queue per call, since each queue has its own slot).
    """
    by_key = {queue_keys(s.prefix, q).wake: q for q in queues}

    def parse(reply: Any) -> str | None:
        if not reply:
            return None
        return by_key.get(decoded(reply[0]))

    seconds = f"{max(1, timeout_ms) / 1000:.3f}"
    return Call(None, [], ["BZPOPMIN", *by_key, seconds], parse, blocking=True)


def claim_and_ack(s: Settings, queue: str, worker: str) -> Call[Job | None]:
    """Take the best ready job and complete it in one script."""
    check_name("worker", worker)
    r = s.retention

    def parse(reply: Any) -> Job | None:
        if reply[0] == ScriptStatus.PAUSED:
            return None
        check_reply(reply, queue)
        jobs = parse_entries(queue, reply, 2)
        return jobs[0] if jobs else None

    return script_call(
        "claim_and_ack",
        queue_keys(s.prefix, queue),
        parse,
        now_ms=s.now_arg(),
        worker=worker,
        request_id=os.urandom(8).hex(),
        memo_ms=s.claim_memo_ms,
        batch=s.housekeeping_batch,
        done_keep=r.completed,
        done_age_ms=r.completed_age_ms,
        dead_keep=r.dead,
        dead_age_ms=r.dead_age_ms,
        size_hint=size_hint(s),
        cancelled_keep=r.cancelled,
        cancelled_age_ms=r.cancelled_age_ms,
    )


def reap(s: Settings, queue: str, limit: int) -> Op[int]:
    """Return up to `limit` expired leases (and promote up to `limit` due scheduled jobs) of
    one queue; count the leases.

    One script call handles at most MAX_REAP_BATCH of each and a bounded amount of job data
    (lua/lib/budget.lua), so Redis never blocks for long: this loops over calls while the
    last one reports work left and the limit allows.
    """
    check_int("limit", limit, 1, MAX_REAP)
    keys = queue_keys(s.prefix, queue)
    leases = promoted = 0
    while True:
        part = min(MAX_REAP_BATCH, limit - max(leases, promoted))
        reply = yield script_call(
            "reap",
            keys,
            ok,
            now_ms=s.now_arg(),
            limit=part,
            dead_keep=s.retention.dead,
            dead_age_ms=s.retention.dead_age_ms,
            size_hint=size_hint(s),
            cancelled_keep=s.retention.cancelled,
            cancelled_age_ms=s.retention.cancelled_age_ms,
        )
        check_reply(reply, queue)
        leases += int(reply[1]) + int(reply[2])
        promoted += int(reply[3])
        if not int(reply[4]) or max(leases, promoted) >= limit:
            return leases
