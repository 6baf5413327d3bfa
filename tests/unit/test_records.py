"""Parsing job records: the positional fast paths must agree with Job's declared fields."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from redisq import BadRecord, Job, JobState, SerializationError
from redisq._core.records import (
    changer,
    make_job,
    pack_record,
    parse_entries,
    parse_record,
    unpack_record,
    with_changes,
)


def test_parse_record_fills_every_field_by_name() -> None:
    fields = {
        "state": b"leased",
        "payload": msgpack.packb({"n": 1}),
        "prio": b"-3",
        "attempts": b"2",
        "max": b"5",
        "seq": b"7",
        "token": b"41",
        "worker": b"w1",
        "created": b"1000",
        "run_at": b"1500",
        "leased_at": b"1600",
        "deadline": b"9000",
        "error": b"boom",
        "result": msgpack.packb("r"),
        "progress": msgpack.packb(50),
        "finished": b"2000",
        "lease_ms": b"7000",
        "ukey": b"u",
        "name": b"task",
        "ended": b"",
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
    packed = pack_record(fields)
    assert parse_record("q", "j1", packed) == expected
    assert unpack_record(packed) == fields


def test_blobs_round_trip_byte_exact() -> None:
    # Payload, result, progress and error are opaque bytes: newlines and NULs included.
    blobs = {
        "error": b"line 1\nline 2",
        "result": b"\n\x00\n",
        "progress": b"",
        "payload": b"\n\nj2\n" + bytes(range(256)),
    }
    fields = {"state": b"ready", "prio": b"0", "attempts": b"0", "max": b"1"}
    fields |= {"created": b"1", "run_at": b"1", "seq": b"1"}
    packed = pack_record(fields | blobs)
    back = unpack_record(packed)
    assert {k: back[k] for k in blobs} == blobs


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"j1\nready\n0",
        pack_record({"state": b"nonsense", "prio": b"0", "attempts": b"0", "max": b"1"}),
        pack_record({"state": b"ready", "prio": b"x", "attempts": b"0", "max": b"1"}),
        pack_record({"state": b"ready", "prio": b"0", "created": b"1", "run_at": b"1"})[:-1]
        + b"\n5\n0\n0\n",
        pack_record(
            {"state": b"ready", "prio": b"0", "attempts": b"0", "max": b"1", "error": b"abc"}
        ).replace(b"\n3\n0\n0\n", b"\n9\n0\n0\n"),
    ],
)
def test_a_record_that_does_not_parse_is_a_bad_record(data: bytes) -> None:
    with pytest.raises(BadRecord) as info:
        parse_record("q", "j9", data)
    assert (info.value.queue, info.value.job_id) == ("q", "j9")


def test_make_job_and_with_changes_follow_the_declared_field_order() -> None:
    names = [f.name for f in dataclasses.fields(Job)]
    job = make_job(range(len(names)))
    assert [getattr(job, n) for n in names] == list(range(len(names)))
    changed = with_changes(job, state="x", result="y")
    assert dataclasses.replace(job, state="x", result="y") == changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.id = "other"  # type: ignore[misc]


def test_make_job_builds_a_genuine_job() -> None:
    # make_job skips Job.__init__ (see records._job_maker): what it builds must be a Job in
    # every respect, indistinguishable from one built the usual way.
    names = [f.name for f in dataclasses.fields(Job)]
    values = [f"v{i}" for i in range(len(names))]
    made = make_job(values)
    usual = Job(**dict(zip(names, values, strict=True)))
    assert type(made) is Job
    assert made == usual
    assert hash(made) == hash(usual)
    assert repr(made) == repr(usual)
    assert dataclasses.asdict(made) == dataclasses.asdict(usual)
    assert not hasattr(made, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.state = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del made.id  # type: ignore[misc]


def test_a_record_that_does_not_decode_is_a_serialization_error() -> None:
    fields = {"state": b"ready", "payload": b"\xc1", "prio": b"0", "attempts": b"0"}
    fields |= {"max": b"1", "created": b"1", "run_at": b"1", "seq": b"1"}
    with pytest.raises(SerializationError) as info:
        parse_record("q", "bad", pack_record(fields))
    assert (info.value.field, info.value.job_id) == ("payload", "bad")


def _leased(**extra: bytes) -> dict[str, bytes]:
    fields = {"state": b"leased", "prio": b"2", "attempts": b"1", "max": b"3", "token": b"9"}
    fields |= {"worker": b"w", "created": b"1", "run_at": b"2", "seq": b"1", "deadline": b"50"}
    return fields | {"payload": msgpack.packb([1, "x"])} | extra


@pytest.mark.parametrize(
    "fields",
    [
        _leased(),
        _leased(name=b"task", ukey=b"u", lease_ms=b"700", finished=b"5"),
        _leased(state=b"ready", token=b"", worker=b"", deadline=b""),
        _leased(error=b"boom", result=msgpack.packb("r"), progress=msgpack.packb(3)),
        _leased(result=msgpack.packb({"k": None})),
    ],
)
def test_parse_entries_agrees_with_parse_record(fields: dict[str, bytes]) -> None:
    # parse_entries inlines parse_record for records without blobs: both must build the
    # same Job from every record, with blobs or without.
    packed = pack_record(fields)
    reply = [0, 1, b"j1", packed, b"j2", packed]
    expected = parse_record("q", "j1", packed)
    assert parse_entries("q", reply, 2) == [expected, dataclasses.replace(expected, id="j2")]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"garbage", BadRecord),
        (pack_record(_leased(state=b"nonsense")), BadRecord),
        (pack_record(_leased(prio=b"x")), BadRecord),
        (pack_record(_leased(payload=b"\xc1")), SerializationError),
    ],
)
def test_parse_entries_raises_what_parse_record_raises(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_entries("q", [b"good", pack_record(_leased()), b"j9", data], 0)
    assert getattr(info.value, "job_id", None) == "j9"


def test_changer_is_with_changes() -> None:
    names = [f.name for f in dataclasses.fields(Job)]
    job = make_job(range(len(names)))
    change = changer("state", "finished_at_ms", "result")
    changed = change(job, "s", 7, "r")
    assert type(changed) is Job
    assert changed == with_changes(job, state="s", finished_at_ms=7, result="r")
    with pytest.raises(TypeError):
        changer("state", "nope")
    with pytest.raises(TypeError):
        changer("state", "state")
