"""Claiming: the claim and wait calls, claim_and_ack, and the reaper."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from redisq._core.calls import (
    MAX_CLAIM,
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
from redisq.errors import BadRecord, InvalidArgument, SerializationError
from redisq.models import Job

#: Store-side events worth an operator's eye (poison records met by claim).
_log = logging.getLogger("redisq.store")

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
) -> Op[list[Job]]:
    """Lease up to `count` jobs, starting the round at queue number `turn` (for fairness).

    For each queue that came up short, `due_in` receives the ms until its earliest scheduled
    job is due (-1: none), which `wait` uses to wake in time. With `block_ms`, the first
    claim is pipelined behind a blocking wait on the queues' wake sets (see `wait`): Redis
    runs it the moment the wait returns, so a woken worker gets its jobs in the same round
    trip. On Redis Cluster that wait covers the first queue only (one slot per command). When
    the wait times out with nothing found, the other queues are not claimed (idle cost).
    """
    names = check_queues(queues)
    check_name("worker", worker)
    lease = s.lease_ms if lease_ms is None else check_int("lease_ms", lease_ms, 1, MAX_LEASE_MS)
    check_int("count", count, 1, MAX_CLAIM)
    start = turn % len(names)
    order = names[start:] + names[:start]
    jobs: list[Job] = []
    for queue in order:
        call = script_call(
            "claim",
            queue_keys(s.prefix, queue),
            ok,
            now_ms=s.now_arg(),
            worker=worker,
            count=count - len(jobs),
            lease_ms=lease,
            request_id=os.urandom(8).hex(),
            memo_ms=s.claim_memo_ms,
            batch=s.housekeeping_batch,
            dead_keep=s.retention.dead,
            dead_age_ms=s.retention.dead_age_ms,
        )
        timed_out = False
        if block_ms > 0 and queue is order[0]:
            waited = order[:1] if s.cluster else order
            woken, reply = yield [wait(s, waited, block_ms), call]
            timed_out = woken is None
        else:
            reply = yield call
        if reply[0] != ScriptStatus.PAUSED:
            check_reply(reply, queue)
            good, spoiled = _claimed_jobs(queue, reply)
            jobs.extend(good)
            if spoiled:
                yield [_bury(s, queue, *bad) for bad in spoiled]
            if due_in is not None:
                due_in[queue] = int(reply[2])
        # A wait that timed out signalled nothing: the claim behind it was a safety check of
        # its first queue (the round rotates, so each queue is checked in turn).
        if len(jobs) >= count or (timed_out and not jobs):
            break
    return jobs


def _claimed_jobs(queue: str, reply: list[Any]) -> tuple[list[Job], list[tuple[str, int, str]]]:
    """Parse a claim's ``id, record, ...`` (from reply[3]): the Jobs, and (id, token, why)
    for each leased record whose tail does not parse (the script checked only its head)."""
    try:
        return parse_entries(queue, reply, 3), []  # the usual case: every record parses
    except (BadRecord, SerializationError, ValueError):
        pass
    good: list[Job] = []
    spoiled: list[tuple[str, int, str]] = []
    for i in range(3, len(reply), 2):
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
    )


def reap(s: Settings, queue: str, limit: int) -> Call[int]:
    """Return expired leases (and promote due scheduled jobs) of one queue."""
    check_int("limit", limit, 1, 100_000)

    def parse(reply: Any) -> int:
        check_reply(reply, queue)
        return int(reply[1]) + int(reply[2])

    return script_call(
        "reap",
        queue_keys(s.prefix, queue),
        parse,
        now_ms=s.now_arg(),
        limit=limit,
        dead_keep=s.retention.dead,
        dead_age_ms=s.retention.dead_age_ms,
    )
