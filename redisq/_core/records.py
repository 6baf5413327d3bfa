"""Turn the flat field lists that scripts and HGETALL return into Job snapshots."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from redisq._core.codec import decode
from redisq.errors import ScriptReplyError, SerializationError
from redisq.models import Job, JobState

__all__ = ["make_job", "parse_entries", "parse_record", "text", "with_changes"]

_STATES = {s.value.encode(): s for s in JobState}
_FIELDS = tuple(f.name for f in fields(Job))
_INDEX = {name: i for i, name in enumerate(_FIELDS)}
# The slot descriptors' setters: building a Job through them skips the frozen dataclass's
# per-field object.__setattr__ indirection, which dominates the cost of parsing a batch.
_SETTERS = tuple(getattr(Job, name).__set__ for name in _FIELDS)
_values_of = operator.attrgetter(*_FIELDS)
_new = object.__new__


def make_job(values: Iterable[Any]) -> Job:
    """Build a Job from its field values in declaration order (a fast positional __init__)."""
    job: Job = _new(Job)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(job, value)
    return job


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


def parse_record(queue: str, job_id: str, flat: list[bytes] | dict[bytes, bytes]) -> Job:
    """Build a Job from a job hash: ``[field, value, ...]`` from scripts, a dict from HGETALL."""
    if not flat:
        raise ScriptReplyError(f"empty record for job {job_id!r} of queue {queue!r}")
    f: dict[bytes, bytes]
    if isinstance(flat, dict):
        f = flat
    else:
        it = iter(flat)
        f = dict(zip(it, it, strict=True))
    state = _STATES[f[b"state"]]
    token = f.get(b"token")
    worker = f.get(b"worker")
    name = f.get(b"name")
    error = f.get(b"error")
    result = f.get(b"result")
    progress = f.get(b"progress")
    finished = f.get(b"finished")
    lease_ms = f.get(b"lease_ms")
    ukey = f.get(b"ukey")
    # Positional, in the order of Job's fields.
    return make_job(
        (
            job_id,
            queue,
            name.decode() if name else None,
            _value("payload", f[b"payload"], job_id),
            state,
            int(f[b"prio"]),
            int(f[b"attempts"]),
            int(f[b"max"]),
            int(token) if token else None,
            worker.decode() if worker else None,
            int(f[b"created"]),
            int(f[b"run_at"]),
            int(f[b"deadline"]) if state is JobState.LEASED else None,
            error.decode() if error else None,
            _value("result", result, job_id) if result else None,
            _value("progress", progress, job_id) if progress else None,
            int(finished) if finished else None,
            int(lease_ms) if lease_ms else None,
            ukey.decode() if ukey else None,
        )
    )


def parse_entries(queue: str, reply: list[Any], start: int) -> list[Job]:
    """Parse ``id, record, id, record, ...`` from `reply[start:]`."""
    jobs = []
    for i in range(start, len(reply), 2):
        jobs.append(parse_record(queue, reply[i].decode(), reply[i + 1]))
    return jobs
