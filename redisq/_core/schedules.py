"""Periodic schedules: the script calls of the schedule operations and the driver's pass.

A schedule lives in its queue's slot: ``schedules`` (a hash: id -> packed schedule, see
lua/lib/sched_record.lua), ``schedule_due`` (a sorted set of the active schedules by pending
tick) and ``schedule_events`` (a one-entry stream every change signals, so that each driver
blocked on it wakes). Lua cannot read cron expressions or time zones, so the client computes
tick times (`redisq._core.schedule_times`) and the scripts check them against the Redis clock
and compare-and-set the pending tick: each tick is enqueued by exactly one call, as a job whose
id is derived from the schedule id and the tick time (``<id>@<tick ms>``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from redisq._core.calls import (
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
from redisq._core.codec import decode
from redisq._core.schedule_times import (
    CATCH_UP,
    DEF_BYTES,
    MAX_SCHEDULES,
    MISSED,
    MISSED_GRACE_MS,
    Definition,
    build_definition,
    digest_of,
    first_tick,
    jitter_of,
    next_after,
    plan_ticks,
)
from redisq._core.status import ScriptStatus
from redisq._core.validate import check_name
from redisq._version import __version__
from redisq.errors import ScheduleNotFound, ScriptReplyError
from redisq.models import Schedule, ScheduleTicks

#: Schedules a due-schedules read returns at once, and the record bytes it returns (beyond
#: its first schedule).
_DUE_BATCH = 16
_DUE_BYTES = 1024 * 1024
#: Tries of an operation whose compare-and-set lost to a concurrent change.
_TRIES = 8

__all__ = [
    "CATCH_UP",
    "DEF_BYTES",
    "MAX_SCHEDULES",
    "MISSED",
    "MISSED_GRACE_MS",
    "Definition",
    "build_definition",
    "digest_of",
    "first_tick",
    "jitter_of",
    "next_after",
    "plan_ticks",
    "remove_schedule",
    "run_schedule_now",
    "schedules",
    "set_schedule_paused",
    "tick_schedules",
    "upsert_schedule",
    "wait_schedules",
]

# --------------------------------------------------------------------------------------------
# stored schedules


@dataclass(frozen=True, slots=True)
class _Stored:
    digest: str
    paused: bool
    runs: int
    last: int | None
    next: int | None
    created: int
    defn: Definition


def _opt_int(value: bytes) -> int | None:
    return int(value) if value else None


def parse_stored(queue: str, schedule_id: str, record: bytes) -> _Stored:
    """Parse a packed schedule (lua/lib/sched_record.lua)."""
    parts = record.split(b"\n", 9)
    if len(parts) != 10 or parts[0] != b"s1":
        raise ScriptReplyError(f"schedule {schedule_id!r} of queue {queue!r} does not parse")
    return _Stored(
        parts[1].decode(),
        parts[2] == b"1",
        int(parts[3]),
        _opt_int(parts[4]),
        _opt_int(parts[5]),
        int(parts[6]),
        Definition.decode(parts[9]),
    )


def to_model(queue: str, schedule_id: str, st: _Stored) -> Schedule:
    d = st.defn
    return Schedule(
        id=schedule_id,
        queue=queue,
        cron=d.cron,
        every_ms=d.every_ms,
        tz=d.tz,
        name=d.name or None,
        payload=decode(d.payload),
        options=dict(d.options),
        start_at_ms=d.start_at,
        end_at_ms=d.end_at,
        limit=d.limit,
        missed=d.missed,
        jitter_ms=d.jitter_ms,
        paused=st.paused,
        runs=st.runs,
        last_run_ms=st.last,
        next_run_ms=st.next,
        created_at_ms=st.created,
        digest=st.digest,
    )


def _now(s: Settings) -> Call[int]:
    """The Redis time (or the test clock)."""

    def parse(reply: Any) -> int:
        if s.clock is not None:
            return s.clock()
        return int(reply[0]) * 1000 + int(reply[1]) // 1000

    return command(parse, "TIME")


def _hget(queue: str, schedule_id: str, key: str) -> Call[_Stored | None]:
    def parse(reply: Any) -> _Stored | None:
        return None if reply is None else parse_stored(queue, schedule_id, reply)

    return command(parse, "HGET", key, schedule_id)


def _check_id(schedule_id: Any) -> str:
    return check_name("id", schedule_id)


def _refused(reply: Any, queue: str, schedule_id: str) -> Any:
    if reply[0] == ScriptStatus.NOT_FOUND:
        raise ScheduleNotFound(queue, schedule_id)
    return check_reply(reply, queue)


# --------------------------------------------------------------------------------------------
# operations


def upsert_schedule(
    s: Settings, registered: set[str], schedule_id: str, queue: str, defn: Definition
) -> Op[Schedule]:
    """Store a schedule's definition; the same definition again writes nothing."""
    _check_id(schedule_id)
    keys = queue_keys(s.prefix, queue)
    blob = defn.encode()
    digest = digest_of(blob)
    if queue not in registered:
        yield command(ok, "SADD", registry(s), queue)
        registered.add(queue)
    for _ in range(_TRIES):
        stored = yield _hget(queue, schedule_id, keys.schedules)
        if stored is not None and stored.digest == digest:
            return to_model(queue, schedule_id, stored)
        now = yield _now(s)
        if stored is None:
            created, runs, expect, nxt = now, 0, "", first_tick(defn, now, 0, now)
        else:
            created, runs, expect = stored.created, stored.runs, stored.digest
            if stored.defn.same_timing(defn) and stored.next is not None:
                nxt = stored.next
                if defn.limit is not None and runs >= defn.limit:
                    nxt = None
            else:
                nxt = first_tick(defn, created, runs, now)
        reply = yield script_call(
            "upsert_schedule",
            keys,
            lambda r: _refused(r, queue, schedule_id),
            lib_version=__version__,
            id=schedule_id,
            digest=digest,
            expect=expect,
            next="" if nxt is None else nxt,
            created=created,
            limit="" if defn.limit is None else defn.limit,
            end_at="" if defn.end_at is None else defn.end_at,
            definition=blob,
        )
        if reply[1] != b"conflict":
            return to_model(queue, schedule_id, parse_stored(queue, schedule_id, reply[2]))
    raise ScriptReplyError(f"schedule {schedule_id!r} kept changing under upsert_schedule")


def remove_schedule(s: Settings, schedule_id: str, queue: str) -> Call[bool]:
    """Delete a schedule; True when it existed."""
    _check_id(schedule_id)
    return script_call(
        "remove_schedule",
        queue_keys(s.prefix, queue),
        lambda r: bool(_refused(r, queue, schedule_id)[1]),
        id=schedule_id,
    )


def set_schedule_paused(s: Settings, schedule_id: str, queue: str, paused: bool) -> Op[Schedule]:
    """Pause a schedule, or resume it from its first tick after now."""
    _check_id(schedule_id)
    keys = queue_keys(s.prefix, queue)
    for _ in range(_TRIES):
        digest, nxt = "", None
        if not paused:
            stored = yield _hget(queue, schedule_id, keys.schedules)
            if stored is None:
                raise ScheduleNotFound(queue, schedule_id)
            if not stored.paused:
                return to_model(queue, schedule_id, stored)
            now = yield _now(s)
            digest = stored.digest
            nxt = first_tick(stored.defn, stored.created, stored.runs, now)
        reply = yield script_call(
            "set_schedule_paused",
            keys,
            lambda r: _refused(r, queue, schedule_id),
            id=schedule_id,
            paused="1" if paused else "0",
            digest=digest,
            next="" if nxt is None else nxt,
        )
        if reply[1] != b"conflict":
            return to_model(queue, schedule_id, parse_stored(queue, schedule_id, reply[2]))
    raise ScriptReplyError(f"schedule {schedule_id!r} kept changing under resume_schedule")


def _job_fields(defn: Definition) -> tuple[int, int, int | str]:
    """The jobs' priority, max_attempts and lease_ms ('' = the claim's)."""
    o = defn.options
    return o.get("priority", 0), o.get("max_attempts", 3), o.get("lease_ms", "")


def run_schedule_now(s: Settings, schedule_id: str, queue: str) -> Op[str]:
    """Enqueue one run of a schedule now; return the job id."""
    _check_id(schedule_id)
    keys = queue_keys(s.prefix, queue)
    # One id per call: a re-sent script call (client retry) finds its job.
    job_id = f"{schedule_id}@now-{os.urandom(8).hex()}"
    for _ in range(_TRIES):
        stored = yield _hget(queue, schedule_id, keys.schedules)
        if stored is None:
            raise ScheduleNotFound(queue, schedule_id)
        priority, max_attempts, lease_ms = _job_fields(stored.defn)
        reply = yield script_call(
            "run_schedule_now",
            keys,
            lambda r: _refused(r, queue, schedule_id),
            now_ms=s.now_arg(),
            lib_version=__version__,
            id=schedule_id,
            digest=stored.digest,
            job_id=job_id,
            job_name=stored.defn.name,
            priority=priority,
            max_attempts=max_attempts,
            lease_ms=lease_ms,
            payload=stored.defn.payload,
        )
        if reply[1] != b"changed":
            return job_id
    raise ScriptReplyError(f"schedule {schedule_id!r} kept changing under run_schedule_now")


def schedules(s: Settings, queue: str | None) -> Op[list[Schedule]]:
    """Read the schedules of one queue (or of every registered queue), by queue then id."""
    if queue is None:
        names = sorted(decoded(n) for n in (yield command(ok, "SMEMBERS", registry(s))))
    else:
        names = [queue]
    out: list[Schedule] = []
    for name in names:
        keys = queue_keys(s.prefix, name)
        found = yield command(ok, "HGETALL", keys.schedules)
        for sid in sorted(found, key=decoded):
            schedule_id = decoded(sid)
            out.append(to_model(name, schedule_id, parse_stored(name, schedule_id, found[sid])))
    return out


@dataclass(frozen=True, slots=True)
class _Due:
    now: int
    event_id: str
    earliest: int | None
    items: list[tuple[str, _Stored]]


def _due_call(s: Settings, queue: str) -> Call[_Due]:
    def parse(reply: Any) -> _Due:
        check_reply(reply, queue)
        items = []
        flat = reply[4]
        for i in range(0, len(flat), 2):
            sid = decoded(flat[i])
            items.append((sid, parse_stored(queue, sid, flat[i + 1])))
        earliest = int(reply[3]) if reply[3] not in (b"", "") else None
        return _Due(int(reply[1]), decoded(reply[2]), earliest, items)

    return script_call(
        "due_schedules",
        queue_keys(s.prefix, queue),
        parse,
        now_ms=s.now_arg(),
        limit=_DUE_BATCH,
        max_bytes=_DUE_BYTES,
    )


def tick_schedules(s: Settings, queue: str, events: dict[str, str]) -> Op[ScheduleTicks]:
    """Enqueue the due ticks of a queue's schedules, each exactly once across all drivers.

    Records in `events` the id of the latest change this pass has seen (for
    `wait_schedules`).
    """
    keys = queue_keys(s.prefix, queue)
    enqueued: list[str] = []
    due = yield _due_call(s, queue)
    events[queue] = due.event_id
    now, earliest = due.now, due.earliest
    for _ in range(_TRIES * 4):
        if not due.items:
            break
        for schedule_id, stored in due.items:
            st: _Stored | None = stored
            for _ in range(_TRIES):
                if st is None or st.paused or st.next is None or st.next > now:
                    break
                plan = plan_ticks(schedule_id, st.defn, st.created, st.runs, st.next, now)
                flat: list[int] = [v for pair in plan.ticks for v in pair]
                priority, max_attempts, lease_ms = _job_fields(st.defn)
                reply = yield script_call(
                    "tick_schedule",
                    keys,
                    lambda r: check_reply(r, queue),
                    now_ms=s.now_arg(),
                    lib_version=__version__,
                    id=schedule_id,
                    digest=st.digest,
                    expect=st.next,
                    next="" if plan.next is None else plan.next,
                    count=len(plan.ticks),
                    ticks=flat,
                    job_name=st.defn.name,
                    priority=priority,
                    max_attempts=max_attempts,
                    lease_ms=lease_ms,
                    payload=st.defn.payload,
                )
                outcome = decoded(reply[1])
                now = int(reply[2])
                earliest = int(reply[3]) if reply[3] not in (b"", "") else None
                if outcome == "ticked":
                    enqueued.extend(decoded(j) for j in reply[4])
                    break
                if outcome in ("behind", "changed"):
                    # The clock passed the next tick, or the definition changed: read again.
                    st = yield _hget(queue, schedule_id, keys.schedules)
                    continue
                break  # moved (another driver ticked it), not_due, paused or gone
        due = yield _due_call(s, queue)
        events[queue] = due.event_id
        now, earliest = due.now, due.earliest
    return ScheduleTicks(queue, enqueued, earliest, now)


def wait_schedules(
    s: Settings, queues: list[str], events: dict[str, str], timeout_ms: int
) -> Call[bool]:
    """Block until a schedule of `queues` changes (XREAD on their change streams) or the time
    runs out; True when one changed. `events` holds the latest change each queue's driver
    has seen ("$" = none yet: only changes from now on count)."""
    names = {queue_keys(s.prefix, q).schedule_events: q for q in queues}

    def parse(reply: Any) -> bool:
        if not reply:
            return False
        entries = reply.items() if isinstance(reply, dict) else reply
        for key, items in entries:
            queue = names.get(decoded(key))
            if queue is not None and items:
                events[queue] = decoded(items[-1][0])
        return True

    ids = [events.get(q, "$") for q in queues]
    return Call(
        None,
        [],
        ["XREAD", "BLOCK", max(1, timeout_ms), "STREAMS", *names, *ids],
        parse,
        blocking=True,
    )
