"""A job's attempt history: the entries lua/lib/attempt_entry.lua writes next to its record."""

from __future__ import annotations

from typing import Any

from redisq._core.calls import Call, Settings, command, queue_keys
from redisq._core.validate import check_id
from redisq.models import Attempt

__all__ = ["ATTEMPT_CAPS", "attempt_fields", "attempts", "parse_attempt"]

#: Mirrored by lua/lib/attempt_caps.lua (a test checks parity): the last KEEP failed attempts
#: of a job are kept, each with at most TEXT_BYTES of error text (the first HEAD_BYTES and the
#: end, around a marker).
ATTEMPT_CAPS = {"KEEP": 10, "TEXT_BYTES": 4096, "HEAD_BYTES": 1024}


def attempt_fields(job_id: str) -> list[bytes]:
    """Name the jobs-hash fields of a job's attempt history (one per slot)."""
    base = job_id.encode() + b"\0a"
    return [base + b"%d" % slot for slot in range(ATTEMPT_CAPS["KEEP"])]


def parse_attempt(value: bytes) -> Attempt | None:
    """Parse one stored entry; None when it is not one (a newer layout, or damage)."""
    parts = value.split(b"\n", 7)
    if len(parts) != 8 or parts[0] != b"a1" or not parts[1].isdigit() or not parts[6].isdigit():
        return None
    text = parts[7].decode("utf-8", "replace")
    # The worker sends the summary line first, then a blank line and the traceback
    # (redisq._core.tasks.describe_exception); other error texts have no traceback.
    summary, sep, trace = text.partition("\n\n")
    if not sep or not trace.startswith("Traceback"):
        summary, trace = text, ""
    return Attempt(
        attempt=int(parts[1]),
        token=int(parts[2]) if parts[2].isdigit() else None,
        outcome=parts[3].decode(),
        cause=parts[4].decode(),
        worker=parts[5].decode() or None,
        at_ms=int(parts[6]),
        error=summary,
        traceback=trace,
    )


def attempts(s: Settings, queue: str, job_id: str) -> Call[list[Attempt]]:
    """Read a job's attempt history (one HMGET), oldest first."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)

    def parse(reply: Any) -> list[Attempt]:
        found = [a for a in (parse_attempt(v) for v in reply if v is not None) if a is not None]
        found.sort(key=lambda a: (a.at_ms, a.attempt))
        return found

    return command(parse, "HMGET", keys.jobs, *attempt_fields(job_id))
