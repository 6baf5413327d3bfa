"""Poll a condition with a deadline instead of sleeping to order events (STYLE T7)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Deadline", "wait_for"]


class Deadline:
    """A point in monotonic time, for loops that must give up.

    Args:
        seconds: How long from now until the deadline passes.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Return the seconds left (never negative)."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """Return True once the deadline has passed."""
        return time.monotonic() >= self.at


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.005,
    *,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Polls every ``interval`` seconds (growing up to 10x while nothing changes, so long waits
    stay cheap) until ``timeout`` seconds have passed.

    Args:
        predicate: A function without arguments; its first truthy result is returned.
        timeout: Seconds before giving up.
        interval: Seconds between the first polls.
        message: What the failure message says was awaited (or a function building it, called
            only on timeout, so it can show the current state).

    Returns:
        The first truthy value ``predicate`` returned.

    Raises:
        AssertionError: When the timeout passes first; names the predicate, the timeout and
            the last value seen.
    """
    deadline = Deadline(timeout)
    delay = interval
    last: T = predicate()
    while not last:
        if deadline.expired():
            what = message() if callable(message) else message
            if what is None:
                what = getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last value: {last!r})"
            )
        time.sleep(min(delay, deadline.remaining()))
        delay = min(delay * 1.5, interval * 10)
        last = predicate()
    return last
