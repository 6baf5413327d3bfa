"""The enqueue script's two paths agree: one job without a unique key takes a path of its own
(written out for speed), every other call the general one. Same arguments, same clock: the
same stored record, index entry, counters and reply, on every backend.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

import redisq
from redisq import JobState
from redisq._core.calls import queue_keys, script_call
from redisq._core.records import unpack_record
from redisq._core.status import ScriptStatus
from redisq.errors import SchemaVersionError, WrongKeyType

NOW = 1_700_000_000_000


def _key(prefix: str, queue: str, part: str) -> str:
    return f"{{{prefix}:{queue}}}:{part}"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"name": "task.x", "priority": -7, "max_attempts": 5, "lease_ms": 9_000},
        {"delay_ms": 5_000},
        {"run_at_ms": NOW + 60_000, "priority": 3},
        {"run_at_ms": NOW - 1},
    ],
    ids=["defaults", "options", "delay", "run_at", "run_at_past"],
)
def test_one_job_alone_is_stored_as_in_a_batch(url: str, prefix: str, options: Any) -> None:
    store = redisq.connect(url, prefix=prefix, clock=lambda: NOW)
    try:
        # The same job alone (its own path) and first of a batch of two (the general path),
        # each in a fresh queue, so both get sequence number 1 and the same counters.
        alone = store.enqueue("alone", {"n": [1, "x"]}, id="j1", **options)
        two = store.enqueue_many(
            "two", [redisq.Spec({"n": [1, "x"]}, id="j1", **options), redisq.Spec(0, id="j2")]
        )
        assert _same_but_queue(alone, two[0])
        expected = JobState.SCHEDULED if alone.run_at_ms > NOW else JobState.READY
        assert alone.state is expected
        assert alone.created_at_ms == NOW
        if url.startswith("memory://"):
            got = store.get("alone", "j1")
            assert got == alone
            return
        raw = redis.Redis.from_url(url)
        try:
            record = raw.hget(_key(prefix, "alone", "jobs"), "j1")
            general = raw.hget(_key(prefix, "two", "jobs"), "j1")
            assert record == general
            fields = unpack_record(record)
            assert fields["seq"] == b"1"
            set_name = "scheduled" if expected is JobState.SCHEDULED else "ready"
            assert raw.zscore(_key(prefix, "alone", set_name), "j1") == raw.zscore(
                _key(prefix, "two", set_name), "j1"
            )
            meta = raw.hgetall(_key(prefix, "alone", "meta"))
            assert meta[b"seq"] == b"1"
            assert meta[b"enqueued"] == b"1"
            assert meta[b"schema"] == raw.hget(_key(prefix, "two", "meta"), "schema")
            assert raw.zcard(_key(prefix, "alone", "wake")) == 1
        finally:
            raw.close()
    finally:
        store.close()


def test_one_job_alone_returns_the_stored_job_for_a_taken_id(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    try:
        first = store.enqueue("q", {"a": 1}, id="same", priority=4)
        again = store.enqueue("q", {"b": 2}, id="same", delay_ms=60_000)
        assert again == first
        assert store.counts("q")[JobState.READY] == 1
        assert store.counts("q")[JobState.SCHEDULED] == 0
    finally:
        store.close()


def test_one_job_alone_meets_a_wrong_typed_set_before_writing(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    try:
        store.enqueue("q", "first")
        raw = store.redis
        raw.delete(_key(prefix, "q", "ready"))
        raw.set(_key(prefix, "q", "ready"), "not a zset")
        with pytest.raises(WrongKeyType):
            store.enqueue("q", "second", id="j2")
        assert raw.hget(_key(prefix, "q", "jobs"), "j2") is None
        assert int(raw.hget(_key(prefix, "q", "meta"), "enqueued")) == 1
    finally:
        store.close()


def _same_but_queue(a: redisq.Job, b: redisq.Job) -> bool:
    return {k: v for k, v in _fields(a).items() if k != "queue"} == {
        k: v for k, v in _fields(b).items() if k != "queue"
    }


def _fields(job: redisq.Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in job.__dataclass_fields__}


def _set_wrong(raw: Any, key: str) -> None:
    raw.delete(key)
    raw.set(key, "not redisq's")


@pytest.mark.parametrize(
    ("part", "options", "error"),
    [
        ("jobs", {}, WrongKeyType),
        ("meta", {}, WrongKeyType),
        ("ready", {}, WrongKeyType),
        ("scheduled", {"delay_ms": 60_000}, WrongKeyType),
        ("schema", {}, SchemaVersionError),
    ],
)
def test_one_job_alone_refused_writes_nothing(
    url: str, prefix: str, part: str, options: Any, error: type[Exception]
) -> None:
    # Every refusal leaves the one-job path before its first write; the general path then
    # names it, as for any call.
    store = redisq.connect(url, prefix=prefix)
    try:
        store.enqueue("q", "first", id="j1")
        raw = store.redis
        if part == "schema":
            raw.hset(_key(prefix, "q", "meta"), "schema", "999")
        else:
            _set_wrong(raw, _key(prefix, "q", part))
        changed = {k: raw.dump(k) for k in sorted(raw.keys(f"{{{prefix}:q}}:*"))}
        with pytest.raises(error):
            store.enqueue("q", "second", id="j2", **options)
        after = {k: raw.dump(k) for k in sorted(raw.keys(f"{{{prefix}:q}}:*"))}
        assert after == changed
    finally:
        store.close()


def test_one_job_alone_with_a_bad_argument_is_refused_by_name(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    try:
        store.enqueue("q", "first")
        keys = queue_keys(prefix, "q")
        args = ["j2", b"\x01", "", "high", "", 0, 3, "", "", ""]
        call = script_call(
            "enqueue", keys, lambda r: r, now_ms="", lib_version="t", count=1, jobs=args
        )
        reply = store._transport.run(call)
        assert reply[0] == ScriptStatus.BAD_ARGUMENT
        assert reply[1] == b"jobs"
        assert store.redis.hget(_key(prefix, "q", "jobs"), "j2") is None
    finally:
        store.close()
