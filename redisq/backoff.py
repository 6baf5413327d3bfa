"""Backoff policies for task retries: how long to wait after attempt N failed.

A task's ``backoff`` is one of:

- None: the default, `exponential()`: 1 s, doubling, capped at 15 minutes, +-25% jitter;
- ``redisq.backoff.fixed(ms)``, ``linear(...)`` or ``exponential(...)``;
- any callable ``(attempt) -> delay_ms``, where attempt 1 is the first run.

Example::

    @app.task(backoff=redisq.backoff.linear(base_ms=500, step_ms=500))
    def sync_account(account_id: str) -> None: ...

The arithmetic lives in `redisq._core.backoff` as pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from redisq._core import backoff as _pure
from redisq._core.validate import MAX_DELAY_MS
from redisq.errors import InvalidArgument

__all__ = [
    "DEFAULT",
    "BackoffLike",
    "Exponential",
    "Fixed",
    "Linear",
    "delay_for",
    "exponential",
    "fixed",
    "linear",
    "resolve",
]

_MINUTES_15 = 15 * 60 * 1_000


def _ms(field: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_DELAY_MS:
        raise InvalidArgument(field, f"an int in [0, {MAX_DELAY_MS}] (ms)", value)
    return value


@dataclass(frozen=True, slots=True)
class Fixed:
    """Wait the same `delay_ms` after every failed attempt."""

    delay_ms: int

    def __call__(self, attempt: int) -> int:
        """Return the delay in ms after failed attempt number `attempt`."""
        return _pure.fixed(attempt, delay_ms=self.delay_ms)


@dataclass(frozen=True, slots=True)
class Linear:
    """Wait ``base_ms + step_ms * (attempt - 1)``, at most `cap_ms`."""

    base_ms: int = 1_000
    step_ms: int = 1_000
    cap_ms: int = _MINUTES_15

    def __call__(self, attempt: int) -> int:
        """Return the delay in ms after failed attempt number `attempt`."""
        return _pure.linear(attempt, base_ms=self.base_ms, step_ms=self.step_ms, cap_ms=self.cap_ms)


@dataclass(frozen=True, slots=True)
class Exponential:
    """Wait ``base_ms * factor ** (attempt - 1)``, at most `cap_ms`, spread by +-`jitter`."""

    base_ms: int = 1_000
    factor: float = 2.0
    cap_ms: int = _MINUTES_15
    jitter: float = 0.25

    def __call__(self, attempt: int) -> int:
        """Return the delay in ms after failed attempt number `attempt` (random within jitter)."""
        return _pure.exponential(
            attempt,
            base_ms=self.base_ms,
            factor=self.factor,
            cap_ms=self.cap_ms,
            jitter=self.jitter,
        )


#: What a task's ``backoff`` option accepts.
BackoffLike: TypeAlias = "Fixed | Linear | Exponential | Callable[[int], int] | None"

#: The policy used when a task gives none: 1 s, x2, capped at 15 minutes, +-25% jitter.
DEFAULT = Exponential()


def fixed(delay_ms: int) -> Fixed:
    """Make a policy that waits `delay_ms` after every failure.

    Raises:
        InvalidArgument: delay_ms is not an int in [0, about one year].
    """
    return Fixed(_ms("delay_ms", delay_ms))


def linear(base_ms: int = 1_000, step_ms: int = 1_000, cap_ms: int = _MINUTES_15) -> Linear:
    """Make a policy that waits base_ms, then step_ms more after each further failure.

    Raises:
        InvalidArgument: an argument is not an int in [0, about one year].
    """
    return Linear(_ms("base_ms", base_ms), _ms("step_ms", step_ms), _ms("cap_ms", cap_ms))


def exponential(
    base_ms: int = 1_000,
    *,
    factor: float = 2.0,
    cap_ms: int = _MINUTES_15,
    jitter: float = 0.25,
) -> Exponential:
    """Make a policy that multiplies the wait by `factor` after each failure.

    Args:
        base_ms: the wait after the first failure.
        factor: the growth per failure, >= 1.
        cap_ms: the longest wait.
        jitter: the random spread, as a fraction in [0, 1] (0.25 = +-25%).

    Raises:
        InvalidArgument: an argument is out of range.
    """
    _ms("base_ms", base_ms)
    _ms("cap_ms", cap_ms)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 <= factor <= 1e6:
        raise InvalidArgument("factor", "a number in [1, 1e6]", factor)
    if (
        isinstance(jitter, bool)
        or not isinstance(jitter, (int, float))
        or not math.isfinite(jitter)
        or not 0 <= jitter <= 1
    ):
        raise InvalidArgument("jitter", "a number in [0, 1]", jitter)
    return Exponential(base_ms, float(factor), cap_ms, float(jitter))


def resolve(backoff: BackoffLike, field: str = "backoff") -> Callable[[int], int]:
    """Return the callable for a task's ``backoff`` option (None gives `DEFAULT`).

    Raises:
        InvalidArgument: the value is neither None, a policy nor a callable.
    """
    if backoff is None:
        return DEFAULT
    if not callable(backoff):
        raise InvalidArgument(
            field,
            "None, redisq.backoff.fixed/linear/exponential(...), or a callable(attempt) -> ms",
            backoff,
        )
    return backoff


def delay_for(policy: Callable[[int], int], attempt: int) -> int:
    """Ask `policy` for the delay after failed attempt `attempt`, checked and rounded.

    Raises:
        InvalidArgument: the policy returned something that is not a delay >= 0; any
            exception the policy itself raises propagates.
    """
    return _pure.as_delay_ms(policy(attempt), "backoff(attempt)")
