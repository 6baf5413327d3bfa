"""A test clock for the scripts' now_ms override (STYLE L8): time moves only when told."""

from __future__ import annotations

__all__ = ["TestClock"]


class TestClock:
    """A settable clock in milliseconds, passed to ``redisq.connect(..., clock=clock)``.

    Scripts then use its value instead of the Redis server's TIME, so tests can expire
    leases and bring scheduled jobs due without sleeping.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> int:
        """Move the clock forward by `ms` and return the new time."""
        self.now_ms += ms
        return self.now_ms
