"""Schedules without a server: validation, tick arithmetic, DST, missed policies, caps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from redisq._core import schedules as sched
from redisq._core.calls import Settings
from redisq._core.scripts import lua_dir
from redisq.errors import InvalidArgument, RedisqError

PARIS = ZoneInfo("Europe/Paris")
MIN = 60_000


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def defn(**kw: Any) -> sched.Definition:
    args: dict[str, Any] = {
        "cron": None,
        "every_ms": None,
        "tz": "UTC",
        "name": None,
        "payload": None,
        "options": None,
        "start_at": None,
        "end_at": None,
        "limit": None,
        "missed": "once",
        "jitter_ms": 0,
    }
    args.update(kw)
    return sched.build_definition(Settings(), **args)


def test_caps_match_lua() -> None:
    text = (lua_dir() / "lib" / "sched_caps.lua").read_text()
    found = {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+) = (\d+),", text)}
    assert found == {
        "SCHEDULES": sched.MAX_SCHEDULES,
        "CATCH_UP": sched.CATCH_UP,
        "DEF_BYTES": sched.DEF_BYTES,
    }


@pytest.mark.parametrize(
    ("kw", "field", "limit"),
    [
        ({}, "cron", "exactly one"),
        ({"cron": "* * * * *", "every_ms": 5}, "cron", "exactly one"),
        ({"cron": "61 * * * *"}, "cron", "valid cron expression"),
        ({"cron": "not cron"}, "cron", "valid cron expression"),
        ({"cron": 5}, "cron", "cron expression"),
        ({"every_ms": 0}, "every_ms", "[1, "),
        ({"every_ms": -5}, "every_ms", "[1, "),
        ({"every_ms": 1.5}, "every_ms", "an int"),
        ({"every_ms": 10, "tz": "Mars/Olympus"}, "tz", "IANA"),
        ({"every_ms": 10, "start_at": 10, "end_at": 5}, "end_at", "at or after start_at"),
        ({"every_ms": 10, "start_at": datetime(2030, 1, 1)}, "start_at", "timezone-aware"),
        ({"every_ms": 10, "missed": "never"}, "missed", "skip, once, all"),
        ({"every_ms": 10, "limit": 0}, "limit", "[1, "),
        ({"every_ms": 10, "jitter_ms": -1}, "jitter_ms", "[0, "),
        ({"every_ms": 10, "options": {"delay_ms": 5}}, "options.delay_ms", "one of"),
        ({"every_ms": 10, "options": {"priority": 5000}}, "options.priority", "[-1000, 1000]"),
        ({"every_ms": 10, "payload": {1, 2}}, "payload", ""),
    ],
)
def test_bad_input_names_the_field_and_the_limit(
    kw: dict[str, Any], field: str, limit: str
) -> None:
    with pytest.raises(RedisqError) as info:
        defn(**kw)
    if field == "payload":
        assert "payload" in str(info.value)
        return
    assert isinstance(info.value, InvalidArgument)
    assert info.value.field == field
    assert limit in str(info.value)


def test_equal_definitions_encode_to_equal_bytes() -> None:
    a = defn(cron="*/5 * * * *", payload={"b": 1, "a": 2}, options={"priority": 3})
    b = defn(cron="*/5 * * * *", payload={"b": 1, "a": 2}, options={"priority": 3})
    assert a.encode() == b.encode()
    assert sched.Definition.decode(a.encode()) == a
    assert defn(cron="*/5 * * * *", payload={"a": 2, "b": 1}).encode() != a.encode()


def test_every_ms_ticks_on_a_grid_from_creation_or_start() -> None:
    d = defn(every_ms=1000)
    assert sched.next_after(d, 5_000, 5_000) == 6_000
    assert sched.next_after(d, 5_000, 6_000) == 7_000
    assert sched.next_after(d, 5_000, 7_500) == 8_000
    s = defn(every_ms=1000, start_at=10_000, end_at=12_000)
    assert sched.next_after(s, 5_000, 5_000) == 10_000
    assert sched.next_after(s, 5_000, 11_000) == 12_000
    assert sched.next_after(s, 5_000, 12_000) is None


def test_cron_reads_the_time_zone() -> None:
    d = defn(cron="0 9 * * *", tz="Europe/Paris")
    now = ms(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    assert sched.next_after(d, now, now) == ms(datetime(2026, 1, 11, 8, 0, tzinfo=UTC))


def test_dst_gap_runs_at_the_first_instant_after_it() -> None:
    # Europe/Paris skips 02:00-03:00 on 2026-03-29: a daily 02:30 runs at 03:00 local.
    d = defn(cron="30 2 * * *", tz="Europe/Paris")
    before = ms(datetime(2026, 3, 28, 12, 0, tzinfo=PARIS))
    tick = sched.next_after(d, before, before)
    assert tick == ms(datetime(2026, 3, 29, 3, 0, tzinfo=PARIS))
    assert tick is not None
    after = sched.next_after(d, before, tick)
    assert after == ms(datetime(2026, 3, 30, 2, 30, tzinfo=PARIS))


def test_dst_repeat_runs_a_fixed_hour_once_and_a_wildcard_hour_twice() -> None:
    # Europe/Paris repeats 02:00-03:00 on 2026-10-25.
    start = ms(datetime(2026, 10, 24, 12, 0, tzinfo=PARIS))
    end = ms(datetime(2026, 10, 25, 12, 0, tzinfo=PARIS))

    def ticks(expr: str) -> list[int]:
        d = defn(cron=expr, tz="Europe/Paris")
        out, t = [], start
        while (n := sched.next_after(d, start, t)) is not None and n < end:
            out.append(n)
            t = n
        return out

    daily = ticks("30 2 * * *")
    assert daily == [ms(datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=0))]
    half_hourly = [t for t in ticks("*/30 * * * *") if t >= ms(datetime(2026, 10, 25, 0, 0))]
    in_repeat = [t for t in half_hourly if datetime.fromtimestamp(t / 1000, PARIS).hour == 2]
    assert len(in_repeat) == 4  # 02:00 and 02:30, each in both occurrences
    assert in_repeat[1] - in_repeat[0] == 30 * MIN
    assert in_repeat[2] - in_repeat[0] == 60 * MIN


@pytest.mark.parametrize(
    ("missed", "expected"),
    [("skip", []), ("once", [11]), ("all", list(range(1, 12)))],
)
def test_missed_policies_after_a_ten_minute_outage(missed: str, expected: list[int]) -> None:
    d = defn(every_ms=MIN, missed=missed)
    created = 0
    # The pending tick was at 1 min; the drivers come back 10 min 45 s later, when the
    # latest due tick (11 min) is 45 s late, over half its interval: missed, as are the ten
    # before it.
    now = 11 * MIN + 45_000
    plan = sched.plan_ticks("s", d, created, 0, MIN, now)
    assert [t // MIN for t, _ in plan.ticks] == expected
    assert plan.next == 12 * MIN


def test_skip_keeps_an_on_time_tick() -> None:
    d = defn(every_ms=MIN, missed="skip")
    plan = sched.plan_ticks("s", d, 0, 0, MIN, MIN + 29_000)
    assert [t for t, _ in plan.ticks] == [MIN]
    daily = defn(cron="0 9 * * *", missed="skip")
    nine = ms(datetime(2026, 1, 10, 9, 0, tzinfo=UTC))
    assert sched.plan_ticks("s", daily, 0, 0, nine, nine + 59_000).ticks
    assert not sched.plan_ticks("s", daily, 0, 0, nine, nine + 61_000).ticks


def test_all_catches_up_at_most_the_latest_cap_ticks_and_the_limit() -> None:
    d = defn(every_ms=1000, missed="all")
    plan = sched.plan_ticks("s", d, 0, 0, 1000, 1_000_000)
    assert len(plan.ticks) == sched.CATCH_UP
    assert plan.ticks[-1][0] == 1_000_000
    limited = defn(every_ms=1000, missed="all", limit=5)
    plan = sched.plan_ticks("s", limited, 0, 2, 1000, 1_000_000)
    assert len(plan.ticks) == 3
    assert plan.next is None


def test_cron_catch_up_walks_back_from_now() -> None:
    d = defn(cron="*/5 * * * *", missed="all")
    base = ms(datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    plan = sched.plan_ticks("s", d, base, 0, base + 5 * MIN, base + 22 * MIN)
    assert [(t - base) // MIN for t, _ in plan.ticks] == [5, 10, 15, 20]
    assert plan.next == base + 25 * MIN


def test_jitter_is_the_same_for_every_driver_and_within_bounds() -> None:
    d = defn(every_ms=MIN, jitter_ms=5000)
    a = sched.plan_ticks("s", d, 0, 0, MIN, MIN)
    b = sched.plan_ticks("s", d, 0, 0, MIN, MIN)
    assert a == b
    tick, due = a.ticks[0]
    assert tick <= due <= tick + 5000
