"""Managing jobs and queues: update, delete, cancel, retry_dead, pause, purge, locks, migrate."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from redisq._core.calls import (
    CHUNK,
    MAX_MIGRATE_BATCH,
    MAX_TIME_MS,
    Call,
    Op,
    Settings,
    check_reply,
    command,
    decoded,
    ok,
    queue_keys,
    registry,
    script_call,
)
from redisq._core.cancels import CANCEL_SIGNAL_CAP
from redisq._core.codec import round_trip
from redisq._core.records import parse_record
from redisq._core.status import ScriptStatus
from redisq._core.validate import (
    MAX_DELAY_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_id,
    check_int,
    check_name,
    check_state,
)
from redisq._version import __version__
from redisq.errors import InvalidArgument, ScriptReplyError
from redisq.models import Job, JobState, Migration

# --------------------------------------------------------------------------------------------
# management of waiting and finished jobs


def update(
    s: Settings,
    queue: str,
    job_id: str,
    priority: int | None,
    payload: Any,
    set_payload: bool,
    run_at_ms: int | None,
) -> Call[Job]:
    """Change a waiting job's priority, payload or due time."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    if priority is not None:
        check_int("priority", priority, PRIORITY_MIN, PRIORITY_MAX)
    if run_at_ms is not None:
        check_int("run_at_ms", run_at_ms, 0, MAX_TIME_MS)
    data = round_trip("payload", payload, s.payload_limit, job_id)[0] if set_payload else b""

    def parse(reply: Any) -> Job:
        check_reply(reply, queue, job_ids=[job_id], expected_state="ready or scheduled")
        return parse_record(queue, job_id, reply[1])

    return script_call(
        "update",
        keys,
        parse,
        now_ms=s.now_arg(),
        id=job_id,
        priority="" if priority is None else priority,
        set_payload=1 if set_payload else 0,
        payload=data,
        run_at_ms="" if run_at_ms is None else run_at_ms,
    )


def _flag(queue: str, not_found: bool | None = None) -> Callable[[Any], bool]:
    def parse(reply: Any) -> bool:
        if not_found is not None and reply[0] == ScriptStatus.NOT_FOUND:
            return not_found
        check_reply(reply, queue)
        return bool(reply[1])

    return parse


def delete(s: Settings, queue: str, job_id: str) -> Call[bool]:
    """Remove a job in any state; True when it existed."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    return script_call("delete", keys, _flag(queue), id=job_id)


def cancel(s: Settings, queue: str, job_id: str) -> Call[bool]:
    """Cancel a job that has not finished; True when it was cancelled by this call."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    r = s.retention
    return script_call(
        "cancel",
        keys,
        _flag(queue, not_found=False),
        now_ms=s.now_arg(),
        id=job_id,
        request_id=os.urandom(8).hex(),
        keep=r.cancelled,
        max_age_ms=r.cancelled_age_ms,
        batch=r.trim_batch,
        signal_cap=CANCEL_SIGNAL_CAP,
    )


def retry_dead(s: Settings, queue: str, ids: Iterable[str] | None, limit: int) -> Op[int]:
    """Replay dead jobs (the given ids, else the oldest `limit`) with a fresh attempt budget.

    Calls carry at most CHUNK ids; a call that stopped early for its read budget reports how
    many ids it examined, and the next one goes on from there.
    """
    keys = queue_keys(s.prefix, queue)
    check_int("limit", limit, 1, 1_000_000)
    chosen: list[str] = []
    if ids is not None:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidArgument("ids", "None or a list of job ids (not one str)", ids)
        chosen = [check_id(f"ids[{i}]", v) for i, v in enumerate(ids)][:limit]
    total = 0
    if ids is None:
        while total < limit:
            step = min(CHUNK, limit - total)
            reply = yield script_call(
                "retry_dead", keys, ok, now_ms=s.now_arg(), limit=step, count=0, ids=[]
            )
            check_reply(reply, queue)
            moved, more = int(reply[1]), int(reply[3])
            total += moved
            # Stop when the dead set ran out, or when the jobs at its head stay dead.
            if moved == 0 or (moved < step and not more):
                break
        return total
    at = 0
    while at < len(chosen):
        part = chosen[at : at + CHUNK]
        reply = yield script_call(
            "retry_dead", keys, ok, now_ms=s.now_arg(), limit=len(part), count=len(part), ids=part
        )
        check_reply(reply, queue)
        examined = int(reply[2])
        if not 0 < examined <= len(part):
            raise ScriptReplyError(f"retry_dead examined {examined} of {len(part)} ids")
        total += int(reply[1])
        at += examined
    return total


def set_paused(s: Settings, queue: str, paused: bool) -> Call[None]:
    """Pause or resume claiming from a queue, for every worker."""
    keys = queue_keys(s.prefix, queue)

    def parse(reply: Any) -> None:
        check_reply(reply, queue)

    return script_call(
        "set_paused", keys, parse, lib_version=__version__, paused=1 if paused else 0
    )


def purge(s: Settings, queue: str, state: JobState | None) -> Op[int]:
    """Delete every job of a queue in `state` (None = every state), CHUNK at most per call
    (fewer when their records pass the script's read budget)."""
    keys = queue_keys(s.prefix, queue)
    checked = check_state("state", state)
    name = "" if checked is None else checked.value
    total = 0
    while True:
        reply = yield script_call("purge", keys, ok, state=name, limit=CHUNK)
        check_reply(reply, queue)
        removed, more = int(reply[1]), int(reply[2])
        total += removed
        if removed == 0 or (removed < CHUNK and not more):
            return total


def lock(s: Settings, queue: str, job_id: str, worker: str, ttl_ms: int) -> Call[bool]:
    """Take a job's advisory lock (not re-entrant, expires after ttl_ms)."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    check_name("worker", worker)
    check_int("ttl_ms", ttl_ms, 1, MAX_DELAY_MS)
    return script_call("lock", keys, _flag(queue), id=job_id, owner=worker, ttl_ms=ttl_ms)


def unlock(s: Settings, queue: str, job_id: str, worker: str) -> Call[bool]:
    """Release a job's advisory lock if `worker` holds it."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    check_name("worker", worker)
    return script_call("unlock", keys, _flag(queue), id=job_id, owner=worker)


# --------------------------------------------------------------------------------------------
# schema migration


def migrate(s: Settings, queue: str, batch: int, max_calls: int | None = None) -> Op[Migration]:
    """Convert one queue's records to the current layout, about `batch` per script call.

    The script marks the queue as migrating on its first call (every other script refuses it
    until the last call), and each call resumes from the cursor the previous one returned, so
    the whole queue is never converted in one call. `max_calls` stops early (tests: a
    migration left half done, as a killed `redisq migrate` leaves it); the result then says
    done=False.
    """
    keys = queue_keys(s.prefix, queue)
    check_int("batch", batch, 1, MAX_MIGRATE_BATCH)
    cursor = "0"
    found: str | None = None
    converted = skipped = bad = pending = calls = 0
    while True:
        reply = yield script_call("migrate", keys, ok, cursor=cursor, batch=batch)
        check_reply(reply, queue)
        calls += 1
        if calls == 1:
            found = decoded(reply[1]) or None
        step_cursor, done = decoded(reply[2]), bool(reply[6])
        converted += int(reply[3])
        if done or step_cursor != cursor:
            # A finished step counts its records that were in layout 3 before that call,
            # which includes those the calls that scanned the step before converted.
            skipped += max(0, int(reply[4]) - pending)
            bad += int(reply[5])
            pending = 0
        else:
            pending += int(reply[3])
        cursor = step_cursor
        if done or (max_calls is not None and calls >= max_calls):
            return Migration(queue, found, converted, skipped, bad, done)


def migrate_all(s: Settings, batch: int) -> Op[list[Migration]]:
    """Migrate every queue of the registry in name order (see `migrate`)."""
    check_int("batch", batch, 1, MAX_MIGRATE_BATCH)
    names = yield command(_names, "SMEMBERS", registry(s))
    out: list[Migration] = []
    for name in names:
        out.append((yield from migrate(s, name, batch)))
    return out


def _names(reply: Any) -> list[str]:
    return sorted(decoded(v) for v in reply)
