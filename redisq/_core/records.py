"""Turn the packed job records that scripts return into Job snapshots."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from redisq._core.codec import decode
from redisq.errors import BadRecord, ScriptReplyError, SerializationError
from redisq.models import Job, JobState

__all__ = [
    "RECORD_BLOBS",
    "RECORD_FIELDS",
    "build_job",
    "make_job",
    "pack_record",
    "parse_entries",
    "parse_record",
    "text",
    "unpack_record",
    "with_changes",
]

_STATES = {s.value.encode(): s for s in JobState}
_FIELDS = tuple(f.name for f in fields(Job))
_INDEX = {name: i for i, name in enumerate(_FIELDS)}
# The slot descriptors' setters: building a Job through them skips the frozen dataclass's
# per-field object.__setattr__ indirection, which dominates the cost of parsing a batch.
_SETTERS = tuple(getattr(Job, name).__set__ for name in _FIELDS)
_values_of = operator.attrgetter(*_FIELDS)
_new = object.__new__


def _unrolled_maker() -> Callable[..., Job]:
    """Compile a positional constructor that sets each slot in turn, with no loop."""
    names = [f"v{i}" for i in range(len(_FIELDS))]
    body = "".join(f"    s{i}(job, {n})\n" for i, n in enumerate(names))
    source = f"def make({', '.join(names)}):\n    job = new(Job)\n{body}    return job\n"
    scope: dict[str, Any] = {"new": _new, "Job": Job}
    scope.update({f"s{i}": setter for i, setter in enumerate(_SETTERS)})
    exec(source, scope)  # the source is built above from the field count only
    maker: Callable[..., Job] = scope["make"]
    return maker


#: Build a Job from its field values, positionally in declaration order (no checks: hot paths).
build_job = _unrolled_maker()


def make_job(values: Sequence[Any]) -> Job:
    """Build a Job from its field values in declaration order (a fast positional __init__)."""
    if len(values) != len(_FIELDS):
        raise TypeError(f"a Job has {len(_FIELDS)} fields; got {len(values)} values")
    return build_job(*values)


def with_changes(job: Job, **changes: Any) -> Job:
    """Copy a Job with some fields changed, like dataclasses.replace but a few times faster."""
    values = list(_values_of(job))
    for name, value in changes.items():
        values[_INDEX[name]] = value
    return make_job(values)


def text(value: bytes) -> str:
    """Decode a Redis bulk string that redisq wrote as UTF-8 text."""
    return value.decode()


def _value(field: str, data: bytes, job_id: str) -> Any:
    try:
        return decode(data)
    except (TypeError, ValueError) as exc:
        raise SerializationError(field, f"the stored bytes do not decode: {exc}", job_id) from exc


#: Text fields of a packed record (lua/lib/record.lua), in stored order, after the tag.
RECORD_FIELDS = (
    "state",
    "attempts",
    "token",
    "worker",
    "leased_at",
    "deadline",
    "finished",
    "ended",
    "lease_ms",
    "ukey",
    "prio",
    "max",
    "created",
    "run_at",
    "seq",
    "name",
)
#: Blobs at the end of a packed record, in stored order (the payload takes the rest).
RECORD_BLOBS = ("error", "result", "progress", "payload")
_TAG = b"j3"
_PARTS = 1 + len(RECORD_FIELDS) + 3 + 1


def unpack_record(data: bytes) -> dict[str, bytes]:
    """Split a packed record into its fields (text and blobs, as stored); ValueError if bad."""
    parts = data.split(b"\n", _PARTS - 1)
    if len(parts) != _PARTS or parts[0] != _TAG:
        raise ValueError("not a layout-3 job record")
    out = dict(zip(RECORD_FIELDS, parts[1:17], strict=True))
    tail = parts[20]
    e = int(parts[17])
    r = e + int(parts[18])
    p = r + int(parts[19])
    if min(e, r, p) < 0 or p > len(tail):
        raise ValueError("blob lengths do not fit the record")
    out["error"] = tail[:e]
    out["result"] = tail[e:r]
    out["progress"] = tail[r:p]
    out["payload"] = tail[p:]
    return out


def pack_record(values: dict[str, bytes]) -> bytes:
    """Build a packed record from its fields (missing ones are empty); the inverse of unpack."""
    text = [values.get(f, b"") for f in RECORD_FIELDS]
    blobs = [values.get(b, b"") for b in RECORD_BLOBS]
    lengths = [str(len(b)).encode() for b in blobs[:3]]
    return b"\n".join([_TAG, *text, *lengths, b"".join(blobs)])


def _opt_int(value: bytes) -> int | None:
    return int(value) if value else None


def parse_record(queue: str, job_id: str, data: bytes) -> Job:
    """Build a Job from its packed record (see lua/lib/record.lua)."""
    if not isinstance(data, bytes) or not data:
        raise ScriptReplyError(f"empty record for job {job_id!r} of queue {queue!r}")
    parts = data.split(b"\n", _PARTS - 1)
    try:
        if len(parts) != _PARTS or parts[0] != _TAG:
            raise ValueError("not a layout-3 job record")
        (
            _,
            state_b,
            attempts,
            token,
            worker,
            _leased_at,
            deadline,
            finished,
            _ended,
            lease_ms,
            ukey,
            prio,
            max_attempts,
            created,
            run_at,
            _seq,
            name,
            len_error,
            len_result,
            len_progress,
            tail,
        ) = parts
        e = int(len_error)
        r = e + int(len_result)
        p = r + int(len_progress)
        if min(e, r, p) < 0 or p > len(tail):
            raise ValueError("blob lengths do not fit the record")
        state = _STATES[state_b]
        prio_i, attempts_i, max_i = int(prio), int(attempts), int(max_attempts)
        created_i, run_at_i = int(created), int(run_at)
        token_i, finished_i, lease_i = _opt_int(token), _opt_int(finished), _opt_int(lease_ms)
        deadline_i = int(deadline) if state is JobState.LEASED else None
    except (ValueError, KeyError) as exc:
        raise BadRecord(queue, job_id, str(exc) or "unknown state") from exc
    error = tail[:e]
    result = tail[e:r]
    progress = tail[r:p]
    # Positional, in the order of Job's fields.
    return build_job(
        job_id,
        queue,
        name.decode() if name else None,
        _value("payload", tail[p:], job_id),
        state,
        prio_i,
        attempts_i,
        max_i,
        token_i,
        worker.decode() if worker else None,
        created_i,
        run_at_i,
        deadline_i,
        error.decode() if error else None,
        _value("result", result, job_id) if result else None,
        _value("progress", progress, job_id) if progress else None,
        finished_i,
        lease_i,
        ukey.decode() if ukey else None,
    )


def parse_entries(queue: str, reply: list[Any], start: int) -> list[Job]:
    """Parse ``id, record, id, record, ...`` from `reply[start:]`."""
    jobs = []
    for i in range(start, len(reply), 2):
        jobs.append(parse_record(queue, reply[i].decode(), reply[i + 1]))
    return jobs
