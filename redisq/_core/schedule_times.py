"""Schedule definitions and their tick arithmetic: cron in a time zone, intervals, missed ticks.

Pure functions (no client, no clock): `redisq._core.schedules` builds the script calls from
them. Cron expressions are read by cronsim (the parser of Healthchecks.io; small, pure Python,
with documented DST behaviour), in an IANA time zone from zoneinfo:

- a local time that a DST change skips runs at the first instant after the gap (a daily
  02:30 in Europe/Paris runs at 03:00 on the last Sunday of March);
- a local time that a DST change repeats runs once, at its first occurrence, for expressions
  with a fixed hour; expressions whose hour field is a wildcard or a step (``*/30 * * * *``)
  run in both occurrences, since each is a distinct instant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgpack
from cronsim import CronSim, CronSimError

from redisq._core.calls import MAX_TIME_MS, Settings
from redisq._core.codec import round_trip
from redisq._core.validate import (
    MAX_ATTEMPTS,
    MAX_DELAY_MS,
    MAX_LEASE_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_int,
    check_optional_text,
)
from redisq.errors import InvalidArgument

__all__ = [
    "CATCH_UP",
    "DEF_BYTES",
    "MAX_SCHEDULES",
    "MISSED",
    "MISSED_GRACE_MS",
    "Definition",
    "TickPlan",
    "build_definition",
    "digest_of",
    "first_tick",
    "jitter_of",
    "next_after",
    "plan_ticks",
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
