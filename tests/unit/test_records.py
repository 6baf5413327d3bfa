"""Parsing job records: the positional fast paths must agree with Job's declared fields."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from redisq import Job, JobState, SerializationError
from redisq._core.records import make_job, parse_record, with_changes


def test_parse_record_fills_every_field_by_name() -> None:
    flat = {
        b"state": b"leased",
        b"payload": msgpack.packb({"n": 1}),
        b"prio": b"-3",
        b"attempts": b"2",
        b"max": b"5",
        b"token": b"41",
        b"worker": b"w1",
        b"created": b"1000",
        b"run_at": b"1500",
        b"deadline": b"9000",
        b"error": b"boom",
        b"result": msgpack.packb("r"),
        b"progress": msgpack.packb(50),
        b"finished": b"2000",
        b"lease_ms": b"7000",
        b"ukey": b"u",
        b"name": b"task",
    }
    expected = Job(
        id="j1",
        queue="q",
        name="task",
        payload={"n": 1},
        state=JobState.LEASED,
        priority=-3,
        attempts=2,
        max_attempts=5,
        token=41,
        worker="w1",
        created_at_ms=1000,
        run_at_ms=1500,
        lease_deadline_ms=9000,
        last_error="boom",
        result="r",
        progress=50,
        finished_at_ms=2000,
        lease_ms=7000,
        unique_key="u",
    )
    assert parse_record("q", "j1", flat) == expected
    flat_list = [item for pair in flat.items() for item in pair]
    assert parse_record("q", "j1", flat_list) == expected


def test_make_job_and_with_changes_follow_the_declared_field_order() -> None:
    names = [f.name for f in dataclasses.fields(Job)]
    job = make_job(range(len(names)))
    assert [getattr(job, n) for n in names] == list(range(len(names)))
    changed = with_changes(job, state="x", result="y")
    assert dataclasses.replace(job, state="x", result="y") == changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.id = "other"  # type: ignore[misc]


def test_a_record_that_does_not_decode_is_a_serialization_error() -> None:
    flat = {b"state": b"ready", b"payload": b"\xc1", b"prio": b"0", b"attempts": b"0"}
    flat |= {b"max": b"1", b"created": b"1", b"run_at": b"1"}
    with pytest.raises(SerializationError) as info:
        parse_record("q", "bad", flat)
    assert (info.value.field, info.value.job_id) == ("payload", "bad")
