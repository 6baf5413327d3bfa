"""The task call format and the pure decisions of the worker (sans-IO).

A task job's payload is the msgpack of ``{"args": [...], "kwargs": {...}}`` and its name is
the task name; other code (workers in other languages, dashboards) relies on this format.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from redisq.errors import InvalidArgument

__all__ = [
    "describe_exception",
    "is_retryable",
    "make_payload",
    "parse_payload",
]


def make_payload(args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Build the payload of a task call.

    Raises:
        InvalidArgument: a keyword name is not a str.
    """
    for key in kwargs:
        if not isinstance(key, str):
            raise InvalidArgument("kwargs", "a mapping with str keys", key)
    return {"args": list(args), "kwargs": dict(kwargs)}


def parse_payload(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """Split a stored payload into (args, kwargs).

    Raises:
        ValueError: the payload is not in the task call format.
    """
    if (
        not isinstance(payload, dict)
        or set(payload) != {"args", "kwargs"}
        or not isinstance(payload["args"], list)
        or not isinstance(payload["kwargs"], dict)
        or not all(isinstance(k, str) for k in payload["kwargs"])
    ):
        shown = repr(payload)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        raise ValueError(
            'the payload is not a task call {"args": [...], "kwargs": {...}}: '
            f"{shown}; enqueue task jobs with task.enqueue()"
        )
    return payload["args"], payload["kwargs"]


def describe_exception(exc: BaseException) -> str:
    """Format an exception for a job's last_error: its summary line first, then the traceback.

    The store keeps 16 KiB of an error text as last_error, and 4 KiB per attempt in the
    attempt history, each time the beginning and the end of a longer one: the summary comes
    first so that it survives, with the end of the traceback, when a deep traceback is cut.
    The blank line after it is where the attempt history splits error and traceback.
    """
    summary = "".join(traceback.format_exception_only(exc)).strip()
    trace = "".join(traceback.format_exception(exc)).rstrip()
    return f"{summary}\n\n{trace}"


def is_retryable(
    exc: BaseException,
    retry_for: tuple[type[BaseException], ...] | None,
    non_retryable: tuple[type[BaseException], ...],
) -> bool:
    """Tell whether a failure may be retried under a task's retry_for / non_retryable options."""
    if non_retryable and isinstance(exc, non_retryable):
        return False
    return retry_for is None or isinstance(exc, retry_for)
