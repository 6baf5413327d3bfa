"""Rate limits: a queue's limit ("100/s", "/m", "/h"), parsed and stored for claim, and holds.

A queue's limit is a bucket on the Redis clock (GCRA, lua/lib/rate.lua) in its meta hash:
`rate` holds the interval between jobs and a tolerance, `rate_at` the bucket's position. Claim
reads both with the meta fields it reads anyway, so a queue without a limit pays nothing; with
one, a claim leases only what the bucket allows, the rest stays ready, and the reply says when
the next job may start. A handler's `RateLimited` holds the queue back for a while
(`rate_hold`), for every worker.

Any window of one period starts at most `limit` jobs plus the tolerance's worth: one job at
limits up to 200 per period, `limit / 200` beyond (so that fast limits still lease in batches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redisq._core.calls import Call, Settings, check_reply, command, queue_keys, script_call
from redisq._core.validate import MAX_GROUP_LENGTH, check_id, check_optional_text
from redisq._version import __version__
from redisq.errors import InvalidArgument
from redisq.models import HeldKey, RateKeys, RateState

#: Longest hold of a RateLimited (about a year, as the store's longest delay).
MAX_HOLD_MS = 31_622_400_000
#: Most jobs a limit lets start per period.
MAX_RATE = 1_000_000

_PERIOD_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000}
_SPEC = re.compile(r"([1-9][0-9]{0,6})/([smh])")
_RULE = f'"<n>/s", "<n>/m" or "<n>/h" with n in [1, {MAX_RATE:,}], or None'


@dataclass(frozen=True)
class RateLimit:
    """A parsed limit: `limit` jobs per `period_ms`."""

    limit: int
    period_ms: int
    spec: str

    @property
    def interval_us(self) -> int:
        """Microseconds between two jobs (at least 1)."""
        return max(1, self.period_ms * 1000 // self.limit)

    @property
    def tolerance_us(self) -> int:
        """How late a claim may come without losing its turn (lua/lib/rate.lua)."""
        return max(self.interval_us // 2, self.period_ms * 1000 // 200)

    def stored(self) -> str:
        """The form kept in the queue's meta hash (`rate`)."""
        return f"{self.interval_us} {self.tolerance_us} {self.spec}"


def parse_rate(field: str, value: Any) -> RateLimit | None:
    """Validate a limit such as "100/s" (also "/m", "/h"); None means no limit."""
    if value is None:
        return None
    match = _SPEC.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match[1]) > MAX_RATE:
        raise InvalidArgument(field, _RULE, value)
    return RateLimit(int(match[1]), _PERIOD_MS[match[2]], value)


def stored_rate(value: Any) -> str | None:
    """The spec ("100/s") of a stored `rate` field, None when there is none."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.rsplit(" ", 1)[-1]


def set_rate_limit(s: Settings, queue: str, rate: Any, key: Any = None) -> Call[None]:
    """Set (or with None clear) a queue's rate limit, for every worker; with `key`, the limit
    of that concurrency group of the queue (its jobs' rate key; lua/lib/groups.lua)."""
    keys = queue_keys(s.prefix, queue)
    parsed = parse_rate("rate_limit", rate)
    group = check_optional_text("key", key, MAX_GROUP_LENGTH)

    def parse(reply: Any) -> None:
        check_reply(reply, queue)

    stored = "" if parsed is None else parsed.stored()
    return script_call(
        "set_rate_limit", keys, parse, lib_version=__version__, rate=stored, key=group
    )


def rate_key_group(rate_key: Any, group: str, where: str = "") -> str:
    """The group a job with `rate_key` waits in: a rate key is served by its group's
    structures (docs/rate_limits.md), so a job given both must give the same."""
    key = check_optional_text(f"{where}rate_key", rate_key, MAX_GROUP_LENGTH)
    if group and key != group:
        raise InvalidArgument(
            f"{where}rate_key",
            f"equal to {where}group ({group!r}) when both are given (a job's rate key is its"
            " concurrency group), or given alone",
            rate_key,
        )
    return key


def check_hold(field: str, ms: Any) -> int:
    """Validate a hold's length in ms."""
    if type(ms) is not int or not 1 <= ms <= MAX_HOLD_MS:
        raise InvalidArgument(field, f"an int in [1, {MAX_HOLD_MS}] (ms)", ms)
    return ms


def rate_hold(s: Settings, queue: str, ms: int, key: Any = None, id: Any = None) -> Call[int]:
    """Hold a queue's claims back for `ms`, for every worker; with `key`, or `id` of a job
    with a rate key (its group), only that key's jobs. Returns when they may lease again
    (Redis clock, ms; 0 when the queue does not exist: nothing written)."""
    keys = queue_keys(s.prefix, queue)
    check_hold("ms", ms)
    group = check_optional_text("key", key, MAX_GROUP_LENGTH)
    job = "" if id is None else check_id("id", id)

    def parse(reply: Any) -> int:
        check_reply(reply, queue)
        return int(reply[1])

    return script_call("rate_hold", keys, parse, now_ms=s.now_arg(), hold_ms=ms, key=group, id=job)


def rate_state(s: Settings, queue: str, key: Any = None) -> Call[RateState]:
    """Read a queue's limit and bucket (one HMGET of its meta hash), or with `key` those of
    that group (one HMGET of the groups' limits)."""
    keys = queue_keys(s.prefix, queue)
    group = check_optional_text("key", key, MAX_GROUP_LENGTH)

    def parse(reply: Any) -> RateState:
        spec, at = reply
        tolerance = 0
        if spec is not None:
            text = spec.decode() if isinstance(spec, bytes) else str(spec)
            tolerance = int(text.split(" ")[1])
        next_at = None if at is None else (int(at) - tolerance) // 1000
        return RateState(stored_rate(spec), next_at)

    if group:
        return command(parse, "HMGET", keys.grate, group, f"{group}\0at")
    return command(parse, "HMGET", keys.meta, "rate", "rate_at")


#: Most held keys one `rate_keys` read lists.
MAX_KEYS_LISTED = 100


def rate_keys(s: Settings, queue: str, limit: Any = 10) -> Call[RateKeys]:
    """Read the rate keys of `queue` held back now: how many, and the first `limit` (soonest
    due first) with when each may lease again, its ready jobs and its limit."""
    keys = queue_keys(s.prefix, queue)
    if type(limit) is not int or not 1 <= limit <= MAX_KEYS_LISTED:
        raise InvalidArgument("limit", f"an int in [1, {MAX_KEYS_LISTED}]", limit)

    def parse(reply: Any) -> RateKeys:
        check_reply(reply, queue)
        rows = reply[3:]
        held = tuple(
            HeldKey(
                _text(rows[i]),
                int(float(rows[i + 1])),
                int(rows[i + 2]),
                stored_rate(rows[i + 3]) if _text(rows[i + 3]) else None,
            )
            for i in range(0, len(rows), 4)
        )
        return RateKeys(int(reply[2]), held)

    return script_call("rate_keys", keys, parse, now_ms=s.now_arg(), limit=limit)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
