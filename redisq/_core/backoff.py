"""Retry delays: pure functions of the attempt number (1 = the first run failed)."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["exponential", "fixed", "linear"]

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
    delay = min(base_ms * factor ** max(attempt - 1, 0), cap_ms)
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
