"""Periodic schedules: definitions, tick arithmetic (cron in a time zone) and their calls.

A schedule lives in its queue's slot: ``schedules`` (a hash: id -> packed schedule, see
lua/lib/sched_record.lua), ``schedule_due`` (a sorted set of the active schedules by pending
tick) and ``schedule_events`` (a one-entry stream every change signals, so that each driver
blocked on it wakes). Lua cannot read cron expressions or time zones, so the client computes
tick times here and the scripts check them against the Redis clock and compare-and-set the
pending tick: each tick is enqueued by exactly one call, as a job whose id is derived from the
schedule id and the tick time (``<id>@<tick ms>``).

Cron expressions are read by cronsim (the parser of Healthchecks.io; small, pure Python, with
documented DST behaviour), in an IANA time zone from zoneinfo:

- a local time that a DST change skips runs at the first instant after the gap (a daily
  02:30 in Europe/Paris runs at 03:00 on the last Sunday of March);
- a local time that a DST change repeats runs once, at its first occurrence, for expressions
  with a fixed hour; expressions whose hour field is a wildcard or a step (``*/30 * * * *``)
  run in both occurrences, since each is a distinct instant.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgpack
from cronsim import CronSim, CronSimError

from redisq._core.calls import (
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
from redisq._core.codec import decode, round_trip
from redisq._core.status import ScriptStatus
from redisq._core.validate import (
    MAX_ATTEMPTS,
    MAX_DELAY_MS,
    MAX_LEASE_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_int,
    check_name,
    check_optional_text,
)
from redisq._version import __version__
from redisq.errors import InvalidArgument, ScheduleNotFound, ScriptReplyError
from redisq.models import Schedule, ScheduleTicks

__all__ = [
    "CATCH_UP",
    "DEF_BYTES",
    "MAX_SCHEDULES",
    "MISSED",
    "MISSED_GRACE_MS",
    "Definition",
    "plan_ticks",
    "remove_schedule",
    "run_schedule_now",
    "schedules",
    "set_schedule_paused",
    "tick_schedules",
    "upsert_schedule",
    "wait_schedules",
]

# Mirrored by lua/lib/sched_caps.lua (a test checks parity).
#: Most schedules one queue holds.
MAX_SCHEDULES = 1000
#: Most ticks one call enqueues: missed="all" catches up at most this many (the latest ones).
CATCH_UP = 100
#: Largest encoded definition (payload included).
DEF_BYTES = 1024 * 1024

#: The missed-tick policies.
MISSED = ("skip", "once", "all")
#: A due tick more than this late when a driver reaches it (or more than half the interval to
#: the tick after it, when that is shorter) counts as missed: the drivers were down, or all
#: busy. A tick reached sooner is on time and always runs.
MISSED_GRACE_MS = 60_000
#: Longest interval (and jitter) accepted: about a year.
MAX_EVERY_MS = MAX_DELAY_MS
#: Schedules a due-schedules read returns at once, and the record bytes it returns (beyond
#: its first schedule).
_DUE_BATCH = 16
_DUE_BYTES = 1024 * 1024
#: Tries of an operation whose compare-and-set lost to a concurrent change.
_TRIES = 8
_OPTION_RANGES = {
    "priority": (PRIORITY_MIN, PRIORITY_MAX),
    "max_attempts": (1, MAX_ATTEMPTS),
    "lease_ms": (1, MAX_LEASE_MS),
}
_TIMING = ("cron", "every_ms", "tz", "start_at", "end_at")


# --------------------------------------------------------------------------------------------
# definitions


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated schedule definition: what `upsert_schedule` stores (its digest is its
    version: equal definitions encode to equal bytes)."""

    cron: str | None
    every_ms: int | None
    tz: str
    name: str
    payload: bytes
    options: dict[str, int]
    start_at: int | None
    end_at: int | None
    limit: int | None
    missed: str
    jitter_ms: int

    def encode(self) -> bytes:
        """Encode the definition (msgpack, fixed key order) as the scripts store it."""
        data: bytes = msgpack.packb(
            {
                "v": 1,
                "cron": self.cron,
                "every_ms": self.every_ms,
                "tz": self.tz,
                "name": self.name,
                "payload": self.payload,
                "options": dict(sorted(self.options.items())),
                "start_at": self.start_at,
                "end_at": self.end_at,
                "limit": self.limit,
                "missed": self.missed,
                "jitter_ms": self.jitter_ms,
            },
            use_bin_type=True,
        )
        return data

    @classmethod
    def decode(cls, data: bytes) -> Definition:
        """Read a stored definition back."""
        d = msgpack.unpackb(data, raw=False)
        return cls(
            d["cron"],
            d["every_ms"],
            d["tz"],
            d["name"],
            d["payload"],
            dict(d["options"]),
            d["start_at"],
            d["end_at"],
            d["limit"],
            d["missed"],
            d["jitter_ms"],
        )

    def same_timing(self, other: Definition) -> bool:
        """Tell whether `other` ticks at the same times (its pending tick stays valid)."""
        return all(getattr(self, f) == getattr(other, f) for f in _TIMING)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def digest_of(blob: bytes) -> str:
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


def _time_ms(field: str, value: Any) -> int | None:
    """Validate a time: None, int ms since the epoch, or a timezone-aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidArgument(
                field, "an int (ms since the epoch) or a timezone-aware datetime", value
            )
        return check_int(field, int(value.timestamp() * 1000), 0, MAX_TIME_MS)
    return check_int(field, value, 0, MAX_TIME_MS)


def check_cron(expr: Any) -> str:
    """Validate a cron expression (as cronsim reads it)."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidArgument("cron", "a cron expression, like '*/5 * * * *'", expr)
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))
    except CronSimError as exc:
        raise InvalidArgument(
            "cron", f"a valid cron expression, like '*/5 * * * *' ({exc})", expr
        ) from None
    return expr


def check_tz(tz: Any) -> str:
    """Validate an IANA time zone name."""
    if not isinstance(tz, str) or not tz:
        raise InvalidArgument("tz", "an IANA time zone name, like 'Europe/Paris'", tz)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            "tz",
            "a known IANA time zone name, like 'Europe/Paris' (on a system without time zone"
            " data, `pip install tzdata`)",
            tz,
        ) from None
    return tz


def build_definition(
    s: Settings,
    *,
    cron: Any,
    every_ms: Any,
    tz: Any,
    name: Any,
    payload: Any,
    options: Any,
    start_at: Any,
    end_at: Any,
    limit: Any,
    missed: Any,
    jitter_ms: Any,
) -> Definition:
    """Validate every argument of a schedule, raising InvalidArgument naming the field."""
    if (cron is None) == (every_ms is None):
        raise InvalidArgument("cron", "given, or every_ms given instead (exactly one)", cron)
    if cron is not None:
        check_cron(cron)
    else:
        check_int("every_ms", every_ms, 1, MAX_EVERY_MS)
    zone = check_tz(tz)
    text = check_optional_text("name", name)
    opts: dict[str, int] = {}
    if options is not None:
        if not isinstance(options, Mapping):
            raise InvalidArgument("options", "a dict of priority, max_attempts, lease_ms", options)
        for key, value in options.items():
            if key not in _OPTION_RANGES:
                valid = ", ".join(sorted(_OPTION_RANGES))
                raise InvalidArgument(f"options.{key}", f"one of {valid}", options)
            if value is not None:
                low, high = _OPTION_RANGES[key]
                opts[key] = check_int(f"options.{key}", value, low, high)
    data, _ = round_trip("payload", payload, s.payload_limit)
    start = _time_ms("start_at", start_at)
    end = _time_ms("end_at", end_at)
    if start is not None and end is not None and end < start:
        raise InvalidArgument("end_at", f"at or after start_at ({start})", end)
    if limit is not None:
        check_int("limit", limit, 1, 10**12)
    if missed not in MISSED:
        raise InvalidArgument("missed", f"one of {', '.join(MISSED)}", missed)
    check_int("jitter_ms", jitter_ms, 0, MAX_EVERY_MS)
    defn = Definition(cron, every_ms, zone, text, data, opts, start, end, limit, missed, jitter_ms)
    if len(defn.encode()) > DEF_BYTES:
        raise InvalidArgument("payload", f"a definition of at most {DEF_BYTES} bytes", None)
    return defn


# --------------------------------------------------------------------------------------------
# tick arithmetic (pure)


def _cron_iter(defn: Definition, after_ms: int, reverse: bool = False) -> Iterator[int]:
    """Cron ticks strictly after (or, reversed, strictly before) `after_ms`, in ms."""
    assert defn.cron is not None
    start = datetime.fromtimestamp(after_ms / 1000, defn.zone)
    for dt in CronSim(defn.cron, start, reverse=reverse):
        yield int(dt.timestamp() * 1000)


def next_after(defn: Definition, created_ms: int, t: int) -> int | None:
    """The first tick strictly after `t` (within start_at and end_at), or None."""
    if defn.start_at is not None and t < defn.start_at - 1:
        t = defn.start_at - 1
    if defn.every_ms is not None:
        every = defn.every_ms
        base = defn.start_at if defn.start_at is not None else created_ms + every
        tick = base if t < base else base + ((t - base) // every + 1) * every
    else:
        tick = next(_cron_iter(defn, t))
    if defn.end_at is not None and tick > defn.end_at:
        return None
    return tick if tick <= MAX_TIME_MS else None


def _latest_due(defn: Definition, created_ms: int, expect: int, now: int, n: int) -> list[int]:
    """The latest `n` ticks in [expect, now] (expect is one), in ascending order."""
    if defn.every_ms is not None:
        every = defn.every_ms
        last = expect + (now - expect) // every * every
        first = max(expect, last - (n - 1) * every)
        return list(range(first, last + 1, every))
    out: list[int] = []
    for tick in _cron_iter(defn, now + 1, reverse=True):
        if tick < expect or len(out) == n:
            break
        out.append(tick)
    if len(out) < n and (not out or out[-1] != expect):
        out.append(expect)
    out.reverse()
    return out


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What a driver asks the tick script to do: the ticks to enqueue (tick, due) and the
    pending tick after them (None: the schedule has run its course)."""

    ticks: list[tuple[int, int]]
    next: int | None


def jitter_of(schedule_id: str, tick: int, jitter_ms: int) -> int:
    """A tick's jitter: spread by a hash of (schedule, tick), so every driver (and a re-sent
    call) computes the same due time."""
    if not jitter_ms:
        return 0
    h = hashlib.sha1(f"{schedule_id}@{tick}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(h[:8], "big") % (jitter_ms + 1)


def plan_ticks(
    schedule_id: str, defn: Definition, created_ms: int, runs: int, expect: int, now: int
) -> TickPlan:
    """Decide which due ticks of a schedule to enqueue at `now`, by its missed policy.

    The due ticks are those in [expect, now]. The latest is on time when it is at most
    MISSED_GRACE_MS late (and at most half the interval to its following tick), and the
    others are missed: "skip" enqueues only an on-time tick,
    "once" the latest tick (one catch-up run), "all" every due tick, at most CATCH_UP (the
    latest ones). A limit keeps the earliest of them.
    """
    if defn.missed == "all":
        due = _latest_due(defn, created_ms, expect, now, CATCH_UP)
    else:
        due = _latest_due(defn, created_ms, expect, now, 1)
        if defn.missed == "skip":
            following = next_after(defn, created_ms, due[-1])
            grace = MISSED_GRACE_MS
            if following is not None:
                grace = min(grace, (following - due[-1]) // 2)
            if now - due[-1] > grace:
                due = []
    if defn.end_at is not None:
        due = [t for t in due if t <= defn.end_at]
    left = None if defn.limit is None else max(0, defn.limit - runs)
    if left is not None:
        due = due[:left]
    following = next_after(defn, created_ms, now)
    if left is not None and left - len(due) <= 0:
        following = None
    ticks = [(t, t + jitter_of(schedule_id, t, defn.jitter_ms)) for t in due]
    return TickPlan(ticks, following)


def first_tick(defn: Definition, created_ms: int, runs: int, now: int) -> int | None:
    """The pending tick of a schedule stored (or resumed) at `now`."""
    if defn.limit is not None and runs >= defn.limit:
        return None
    return next_after(defn, created_ms, now)


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
