"""Script status codes and the single table that turns a refusal into an exception.

`ScriptStatus` mirrors lua/lib/status.lua; a test checks that the two agree and that every
status has a meaning below.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NoReturn

from redisq.errors import (
    BadRecord,
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    SchemaVersionError,
    ScriptReplyError,
    WrongKeyType,
)

__all__ = ["ScriptStatus", "raise_for_status"]


class ScriptStatus(IntEnum):
    """The first element of every script reply."""

    #: Done (or already done by an identical earlier call).
    OK = 0
    #: No such job.
    NOT_FOUND = 1
    #: The token is not the job's current one, or the lease ended.
    LEASE_LOST = 2
    #: The token is current but the lease deadline has passed.
    LEASE_EXPIRED = 3
    #: The job is not in a state the operation accepts.
    INVALID_STATE = 4
    #: The queue was written with another schema version.
    SCHEMA_MISMATCH = 5
    #: A key holds a value of another type.
    WRONG_TYPE = 6
    #: An argument the client should have refused reached the script.
    BAD_ARGUMENT = 7
    #: The queue is paused; nothing was leased (claims return no job, not an error).
    PAUSED = 8
    #: A stored job record does not parse (detail: the jobs hash, the job id).
    BAD_RECORD = 9


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def raise_for_status(
    reply: Any,
    *,
    queue: str,
    job_ids: list[str] | None = None,
    tokens: list[int | None] | None = None,
    expected_state: str = "",
) -> NoReturn:
    """Raise the exception for a refusal reply ``{status, detail...}`` (never OK).

    Refusals about one job of a batch carry its 1-based index; `job_ids` and `tokens` give
    the values the call sent, so the exception can name them.
    """
    status = ScriptStatus(reply[0])
    detail = reply[1:]

    def job_of(index: Any) -> tuple[str, int | None]:
        if job_ids is None or not isinstance(index, int):
            return "?", None
        token = tokens[index - 1] if tokens else None
        return job_ids[index - 1], token

    if status is ScriptStatus.NOT_FOUND:
        job_id = job_of(detail[0])[0] if isinstance(detail[0], int) else _text(detail[0])
        raise JobNotFound(queue, job_id)
    if status is ScriptStatus.LEASE_LOST:
        job_id, token = job_of(detail[0])
        raise LeaseLost(job_id, token, "stale token", _text(detail[1]))
    if status is ScriptStatus.LEASE_EXPIRED:
        job_id, token = job_of(detail[0])
        raise LeaseLost(job_id, token, "lease expired", "leased")
    if status is ScriptStatus.INVALID_STATE:
        raise InvalidTransition(job_ids[0] if job_ids else "?", expected_state, _text(detail[0]))
    if status is ScriptStatus.SCHEMA_MISMATCH:
        raise SchemaVersionError(_text(detail[0]), _text(detail[1]))
    if status is ScriptStatus.WRONG_TYPE:
        raise WrongKeyType(_text(detail[0]), _text(detail[1]))
    if status is ScriptStatus.BAD_ARGUMENT:
        raise InvalidArgument(_text(detail[0]), "valid (the script refused it)", detail[1:])
    if status is ScriptStatus.BAD_RECORD:
        raise BadRecord(queue, _text(detail[1]), f"the record in {_text(detail[0])} does not parse")
    raise ScriptReplyError(f"unexpected script reply {reply!r}")
