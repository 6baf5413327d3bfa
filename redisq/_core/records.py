"""Turn the flat field lists that scripts and HGETALL return into Job snapshots."""

from __future__ import annotations

from typing import Any

from redisq._core.codec import decode
from redisq.errors import ScriptReplyError, SerializationError
from redisq.models import Job, JobState

__all__ = ["parse_entries", "parse_record", "text"]

_STATES = {s.value.encode(): s for s in JobState}


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
    return Job(
        id=job_id,
        queue=queue,
        name=name.decode() if name else None,
        payload=_value("payload", f[b"payload"], job_id),
        state=state,
        priority=int(f[b"prio"]),
        attempts=int(f[b"attempts"]),
        max_attempts=int(f[b"max"]),
        token=int(token) if token else None,
        worker=worker.decode() if worker else None,
        created_at_ms=int(f[b"created"]),
        run_at_ms=int(f[b"run_at"]),
        lease_deadline_ms=int(f[b"deadline"]) if state is JobState.LEASED else None,
        last_error=error.decode() if error else None,
        result=_value("result", result, job_id) if result else None,
        progress=_value("progress", progress, job_id) if progress else None,
        finished_at_ms=int(finished) if finished else None,
        lease_ms=int(lease_ms) if lease_ms else None,
        unique_key=ukey.decode() if ukey else None,
    )


def parse_entries(queue: str, reply: list[Any], start: int) -> list[Job]:
    """Parse ``id, record, id, record, ...`` from `reply[start:]`."""
    jobs = []
    for i in range(start, len(reply), 2):
        jobs.append(parse_record(queue, reply[i].decode(), reply[i + 1]))
    return jobs
