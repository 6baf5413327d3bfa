"""Retry delays: pure functions of the attempt number (1 = the first run failed)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from redisq._core.validate import MAX_DELAY_MS
from redisq.errors import InvalidArgument

__all__ = ["as_delay_ms", "exponential", "fixed", "linear"]

#: A backoff policy maps the number of the attempt that failed to a delay in ms.
Backoff = Callable[[int], int]


def exponential(
    attempt: int,
    *,
    base_ms: int = 1_000,
    factor: float = 2.0,
    cap_ms: int = 15 * 60 * 1_000,
    jitter: float = 0.25,
    rand: Callable[[], float] = random.random,
) -> int:
    """Compute base * factor^(attempt-1), capped, then spread by +-jitter (qml's default)."""
    # Past the cap the power only grows: stop it before it overflows a float.
    steps = max(attempt - 1, 0)
    if factor > 1 and base_ms > 0 and steps > math.log(max(cap_ms, 1) / base_ms, factor) + 1:
        delay = float(cap_ms)
    else:
        delay = min(base_ms * factor**steps, cap_ms)
    spread = 1.0 + jitter * (2.0 * rand() - 1.0)
    return max(0, round(delay * spread))


def fixed(attempt: int, *, delay_ms: int = 1_000) -> int:
    """Wait the same time after every failure."""
    return delay_ms


def linear(
    attempt: int, *, base_ms: int = 1_000, step_ms: int = 1_000, cap_ms: int = 15 * 60 * 1_000
) -> int:
    """Compute base + step * (attempt-1), capped."""
    return min(base_ms + step_ms * max(attempt - 1, 0), cap_ms)


def as_delay_ms(value: object, field: str = "delay_ms") -> int:
    """Turn what a backoff callable returned into a delay the store accepts.

    Ints and finite floats (rounded) are accepted; a delay past the store's longest delay
    (about a year) is cut to it.

    Raises:
        InvalidArgument: a negative, non-finite or non-numeric value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(field, "an int number of ms >= 0", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(field, "a finite number of ms >= 0", value)
    if value < 0:
        raise InvalidArgument(field, "an int number of ms >= 0", value)
    return min(round(value), MAX_DELAY_MS)
