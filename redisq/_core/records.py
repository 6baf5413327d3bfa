"""Turn the packed job records that scripts return into Job snapshots."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import msgpack

from redisq._core.codec import decode
from redisq._core.tracectx import split_trace
from redisq.errors import BadRecord, ScriptReplyError, SerializationError
from redisq.models import Job, JobState

__all__ = [
    "RECORD_BLOBS",
    "RECORD_FIELDS",
    "build_job",
    "changer",
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
_values_of = operator.attrgetter(*_FIELDS)
#: codec.decode, inlined into parse_record (same options).
_unpackb = msgpack.unpackb


def _job_maker() -> Callable[..., Job]:
    """Compile a positional constructor of Jobs that skips the frozen dataclass's __init__.

    A frozen dataclass sets each field through object.__setattr__, which dominates the cost
    of parsing a claimed batch. Instead, a plain twin class with the very same slots, in the
    same order, takes the values with ordinary attribute stores, and the object then becomes
    a Job by __class__ assignment (allowed between classes of identical layout). The result
    is a genuine Job: frozen, equal and hashed as if built by Job(...), at a third of the cost.
    """
    # The fields after unique_key (trace_context) are None unless given: the hot paths that
    # build Jobs without them pass one argument fewer.
    tail = _FIELDS[_FIELDS.index("unique_key") + 1 :]
    names = ", ".join(_FIELDS[: len(_FIELDS) - len(tail)] + tuple(f"{n}=None" for n in tail))
    stores = "".join(f"        self.{name} = {name}\n" for name in _FIELDS)
    source = (
        "class JobTwin:\n"
        f"    __slots__ = {_FIELDS!r}\n"
        f"    def __init__(self, {names}):\n{stores}"
        f"def make({names}):\n"
        "    job = JobTwin(" + ", ".join(_FIELDS) + ")\n"
        "    job.__class__ = Job\n"
        "    return job\n"
    )
    scope: dict[str, Any] = {"Job": Job}
    exec(source, scope)  # the source is built above from Job's field names only
    maker: Callable[..., Job] = scope["make"]
    return maker


#: Build a Job from its field values, positionally in declaration order (no checks: hot paths).
build_job = _job_maker()


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


def changer(*names: str) -> Callable[..., Job]:
    """Compile a copier of Jobs that sets the fields `names` (positional, in that order).

    ``changer("state", "result")(job, state, result)`` is `with_changes` without the list of
    values and the keyword dict: one attribute load per field kept, and one positional build.
    For hot paths that change the same few fields of many jobs (ack_many's snapshots).
    """
    unknown = [n for n in names if n not in _INDEX]
    if unknown or len(set(names)) != len(names):
        raise TypeError(f"not distinct Job fields: {names!r}")
    values = ", ".join(name if name in names else f"job.{name}" for name in _FIELDS)
    source = f"def change(job, {', '.join(names)}):\n    return build_job({values})\n"
    scope: dict[str, Any] = {"build_job": build_job}
    exec(source, scope)  # the source is built above from Job's field names only
    change: Callable[..., Job] = scope["change"]
    return change


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
#: Blobs at the end of a packed record, in stored order (the payload takes the rest; a traced
#: job's payload blob starts with its trace context, see _core/tracectx).
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


def _blobs(queue: str, job_id: str, lengths: tuple[bytes, bytes, bytes], tail: bytes) -> Any:
    """Split the blob tail of a record with an error, a result or progress stored."""
    try:
        e = int(lengths[0])
        r = e + int(lengths[1])
        p = r + int(lengths[2])
        if min(e, r, p) < 0 or p > len(tail):
            raise ValueError("blob lengths do not fit the record")
    except ValueError as exc:
        raise BadRecord(queue, job_id, str(exc)) from exc
    error, result, progress = tail[:e], tail[e:r], tail[r:p]
    return (
        tail[p:],
        error.decode() if error else None,
        _value("result", result, job_id) if result else None,
        _value("progress", progress, job_id) if progress else None,
    )


def parse_record(queue: str, job_id: str, data: bytes) -> Job:
    """Build a Job from its packed record (see lua/lib/record.lua).

    This runs once per claimed job, so it is written for speed: one split, and no blob
    arithmetic for the usual record that holds no error, result or progress.
    """
    if not isinstance(data, bytes) or not data:
        raise ScriptReplyError(f"empty record for job {job_id!r} of queue {queue!r}")
    parts = data.split(b"\n", _PARTS - 1)
    if len(parts) != _PARTS or parts[0] != _TAG:
        raise BadRecord(queue, job_id, "not a layout-3 job record")
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
    try:
        state = _STATES[state_b]
        prio_i, attempts_i, max_i = int(prio), int(attempts), int(max_attempts)
        created_i, run_at_i = int(created), int(run_at)
        token_i = int(token) if token else None
        finished_i = int(finished) if finished else None
        lease_i = int(lease_ms) if lease_ms else None
        deadline_i = int(deadline) if state is JobState.LEASED else None
    except (ValueError, KeyError) as exc:
        raise BadRecord(queue, job_id, str(exc) or "unknown state") from exc
    if len_error == b"0" and len_result == b"0" and len_progress == b"0":
        payload_b, error, result, progress = tail, None, None, None
    else:
        payload_b, error, result, progress = _blobs(
            queue, job_id, (len_error, len_result, len_progress), tail
        )
    trace = None
    try:
        payload = _unpackb(payload_b, raw=False, strict_map_key=False)
    except (TypeError, ValueError) as exc:
        # A payload blob may carry the job's trace context in front (_core/tracectx).
        split = split_trace(payload_b)
        if split is None:
            raise SerializationError(
                "payload", f"the stored bytes do not decode: {exc}", job_id
            ) from exc
        trace, payload_b = split
        try:
            payload = _unpackb(payload_b, raw=False, strict_map_key=False)
        except (TypeError, ValueError) as exc2:
            raise SerializationError(
                "payload", f"the stored bytes do not decode: {exc2}", job_id
            ) from exc2
    # Positional, in the order of Job's fields.
    return build_job(
        job_id,
        queue,
        name.decode() if name else None,
        payload,
        state,
        prio_i,
        attempts_i,
        max_i,
        token_i,
        worker.decode() if worker else None,
        created_i,
        run_at_i,
        deadline_i,
        error,
        result,
        progress,
        finished_i,
        lease_i,
        ukey.decode() if ukey else None,
        trace,
    )


def parse_entries(queue: str, reply: list[Any], start: int) -> list[Job]:
    """Parse ``id, record, id, record, ...`` from `reply[start:]`.

    The loop of parse_record inlined for the usual records (a claim's: no error, result or
    progress stored), with every name local: a claim of 100 jobs spends most of its client
    time here. Any other record, or one that does not parse, goes through parse_record, which
    handles the blobs and raises the errors.
    """
    jobs: list[Job] = []
    append = jobs.append
    states, unpackb, build, parts_n, tag = _STATES, _unpackb, build_job, _PARTS - 1, _TAG
    leased = JobState.LEASED
    for i in range(start, len(reply), 2):
        data = reply[i + 1]
        try:
            (
                t,
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
            ) = data.split(b"\n", parts_n)
            if t != tag or len_error != b"0" or len_result != b"0" or len_progress != b"0":
                raise ValueError  # (parse_record below: blobs, or a bad record)
            state = states[state_b]
            append(
                build(
                    reply[i].decode(),
                    queue,
                    name.decode() if name else None,
                    unpackb(tail, raw=False, strict_map_key=False),
                    state,
                    int(prio),
                    int(attempts),
                    int(max_attempts),
                    int(token) if token else None,
                    worker.decode() if worker else None,
                    int(created),
                    int(run_at),
                    int(deadline) if state is leased else None,
                    None,
                    None,
                    None,
                    int(finished) if finished else None,
                    int(lease_ms) if lease_ms else None,
                    ukey.decode() if ukey else None,
                )
            )
        except Exception:  # any failure: parse_record parses it again and raises the error
            append(parse_record(queue, reply[i].decode(), data))
    return jobs
