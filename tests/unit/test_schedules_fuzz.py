"""Fuzz the schedule methods with hostile values (as tests/unit/test_fuzz_api.py does for the
rest of the store): each call succeeds or raises a RedisqError, and a refusal writes nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_fuzz_api import (
    FUZZ,
    World,
    call_both,
    ids,
    ints,
    maybe,
    names,
    world,
)

__all__ = ["world"]  # the fixture, imported for this module

UPSERT_KEYWORDS = [
    *("cron", "every_ms", "queue", "name", "payload", "options", "tz", "start_at", "end_at"),
    *("limit", "missed", "jitter_ms"),
]
valid = {
    "cron": st.sampled_from(["*/5 * * * *", "0 9 * * MON-FRI"]),
    "every_ms": st.integers(min_value=1, max_value=10**9),
    "tz": st.sampled_from(["UTC", "Europe/Paris"]),
    "missed": st.sampled_from(["skip", "once", "all"]),
    "options": st.fixed_dictionaries({"priority": st.integers(-1000, 1000)}),
}


@FUZZ
@given(data=st.data())
def test_upsert_schedule(world: World, data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.sampled_from(UPSERT_KEYWORDS), max_size=4, unique=True))
    keywords = {k: data.draw(maybe(valid.get(k, st.none()))) for k in chosen}
    if "queue" in keywords:
        keywords["queue"] = data.draw(names)
    call_both(world, "upsert_schedule", data.draw(ids), **keywords)


@FUZZ
@given(data=st.data())
def test_schedule_management(world: World, data: st.DataObject) -> None:
    method = data.draw(
        st.sampled_from(
            ["remove_schedule", "pause_schedule", "resume_schedule", "run_schedule_now"]
        )
    )
    call_both(world, method, data.draw(ids), queue=data.draw(names))
    call_both(world, "schedules", data.draw(st.one_of(st.none(), names)))
    call_both(world, "tick_schedules", data.draw(names))
    # A valid timeout becomes 1 ms, so that no example blocks for long.
    timeout = data.draw(maybe(ints))
    call_both(world, "wait_schedules", data.draw(names), timeout_ms=1 if timeout else timeout)
