"""Input validation: every check raises InvalidArgument naming the field and the limit.

Validation runs while an operation's Call is built, before any byte goes to Redis, so bad
input never writes anything.
"""

from __future__ import annotations

import re
from typing import Any

from redisq.errors import InvalidArgument
from redisq.models import JobState

__all__ = [
    "MAX_DELAY_MS",
    "MAX_GROUP_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_LEASE_MS",
    "MAX_NAME_LENGTH",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "check_id",
    "check_int",
    "check_name",
    "check_optional_text",
    "check_state",
]

MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 256
#: Concurrency groups (lua/lib/groups.lua): a name of 1 to 128 characters.
MAX_GROUP_LENGTH = 128
PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
#: 12 hours, the ceiling SQS puts on a visibility timeout.
MAX_LEASE_MS = 12 * 60 * 60 * 1000
#: About one year.
MAX_DELAY_MS = 366 * 24 * 60 * 60 * 1000
MAX_ATTEMPTS = 1000

# Control characters (C0, DEL, C1) and the hash-tag braces.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f{}]")


def _check_text(field: str, value: Any, max_length: int, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field, f"a str ({what})", value)
    if not value or value.isspace():
        raise InvalidArgument(field, f"a non-blank str ({what})", value)
    if len(value) > max_length:
        raise InvalidArgument(field, f"at most {max_length} characters ({what})", value)
    if value != value.strip():
        raise InvalidArgument(field, f"free of leading and trailing spaces ({what})", value)
    if _FORBIDDEN.search(value):
        raise InvalidArgument(field, f"free of '{{', '}}' and control characters ({what})", value)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(
            field, f"valid Unicode text, no lone surrogates ({what})", value
        ) from None
    return value


def check_name(field: str, value: Any) -> str:
    """Validate a queue name, key prefix or worker name."""
    return _check_text(field, value, MAX_NAME_LENGTH, f"1 to {MAX_NAME_LENGTH} characters")


def check_id(field: str, value: Any) -> str:
    """Validate a job id or unique key."""
    return _check_text(field, value, MAX_ID_LENGTH, f"1 to {MAX_ID_LENGTH} characters")


def check_optional_text(field: str, value: Any, max_length: int = MAX_NAME_LENGTH) -> str:
    """Validate an optional short text (a task name); None becomes ''."""
    if value is None:
        return ""
    return _check_text(field, value, max_length, f"1 to {max_length} characters")


def check_state(field: str, value: Any) -> JobState | None:
    """Validate an optional job state (a JobState or its value, like "dead")."""
    if value is None:
        return None
    if isinstance(value, str):  # (a JobState is a str; anything else is looked up by ==)
        try:
            return JobState(value)
        except ValueError:
            pass
    names = ", ".join(s.value for s in JobState)
    raise InvalidArgument(field, f"None or one of {names}", value)


def check_int(field: str, value: Any, low: int, high: int) -> int:
    """Validate an int in [low, high]; bools, floats and strings are refused."""
    if type(value) is not int:
        raise InvalidArgument(field, f"an int in [{low}, {high}]", value)
    if not low <= value <= high:
        raise InvalidArgument(field, f"an int in [{low}, {high}]", value)
    return value
