"""How many claimed jobs a worker keeps waiting for a handler: its buffer (prefetch).

A claim costs a round trip and a script call whatever its size, so many short jobs want big
claims; but a job that waits in one worker's memory cannot run on another worker with free
handlers, and its attempt already counts. So by default the buffer holds about what the
handlers finish within a short horizon (`HORIZON_S`, 5 ms), from what they have been doing:

    buffer = floor(concurrency / run_time * HORIZON_S), at most MAX_BUFFER

where run_time is a moving average (EWMA) of the handlers' run times. No-op jobs (microseconds
each) get the full 1,000 and are claimed hundreds at a time (half of it per claim at most, so
that the next claim overlaps the handlers: `State.wait_capacity`); 100 ms jobs on 10 handlers get
none: each claim takes what the free handlers can start at once, as with prefetch 0. Until a
handler has finished the buffer is empty; and while handlers run but none has finished for
`SLOW_AFTER_S` (20 ms) when the average says they should have (they started longer jobs),
the rate is taken to be at most one job per that time, so the buffer shrinks at once rather
than after the long jobs end. (Below 20 ms a pause says nothing: a garbage collection, or the
fetcher holding the GIL while it reads a large claim, stops quick handlers for milliseconds;
for the same reason one run counts for at most `SPIKE` times the average.)
A fixed `prefetch` replaces the estimate.

concurrency / run_time is the handlers' rate when they wait (I/O); handlers that compute in
Python share the GIL, so each one's run time stretches with the others' and the ratio still
comes out near the rate the process reaches.

What the buffer must not cost is checked elsewhere: the keeper renews the leases of the jobs
in it, releases what it holds beyond its size once the oldest waited `STALE_WAIT_S` (the
estimate was wrong), and a job whose lease was lost or could not be renewed is never started
(`State.trim`, `State.lose`, `State._stale`).

The sizer is plain arithmetic on the times it is given (no clock of its own), under the
worker state's lock.
"""

from __future__ import annotations

import math

__all__ = ["ALPHA", "HORIZON_S", "MAX_BUFFER", "SLOW_AFTER_S", "SPIKE", "STALE_WAIT_S", "Sizer"]

#: The buffer holds what the handlers finish within this long (s).
HORIZON_S = 0.005
#: The largest buffer (jobs); also the largest fixed prefetch.
MAX_BUFFER = 1_000
#: No handler finished for this long while they run, when the average says they should have:
#: the jobs take longer now (s).
SLOW_AFTER_S = 0.02
#: Weight of the latest run time in the moving average.
ALPHA = 0.05
#: One run time counts for at most this many times the average.
SPIKE = 100.0
#: A job that waited this long in the buffer means the estimate was wrong (the handlers became
#: slower): what the buffer holds beyond the new estimate is released for other workers (s).
STALE_WAIT_S = 0.1


class Sizer:
    """The buffer's size: fixed (`prefetch` given), or adapted to the handlers' run times.

    Args:
        concurrency: handlers running at once.
        prefetch: a fixed buffer, or None to adapt it.
        horizon_s: the buffer holds what the handlers finish within this long.
        cap: the largest adapted buffer.
    """

    __slots__ = ("_cap", "_concurrency", "_horizon", "_mark", "_run_s", "prefetch")

    def __init__(
        self,
        concurrency: int,
        prefetch: int | None,
        *,
        horizon_s: float = HORIZON_S,
        cap: int = MAX_BUFFER,
    ) -> None:
        self._concurrency = concurrency
        self.prefetch = prefetch
        self._horizon = horizon_s
        self._cap = cap
        #: Moving average of run times (s); None until a handler finished.
        self._run_s: float | None = None
        #: When a handler last finished, or the handlers last went from idle to busy,
        #: whichever came later (monotonic s).
        self._mark = -math.inf

    @property
    def adaptive(self) -> bool:
        """Tell whether the buffer adapts (no fixed prefetch)."""
        return self.prefetch is None

    @property
    def run_s(self) -> float | None:
        """The moving average of run times (s), None before the first one."""
        return self._run_s

    def ran(self, seconds: float, ended: float) -> None:
        """Note a handler that ran `seconds` and finished at monotonic time `ended`."""
        run = self._run_s
        if run is None:
            self._run_s = seconds
        else:
            # One run counts for at most SPIKE times the average: with quick jobs, the run
            # that the interpreter paused to let another thread have the GIL (5 ms, or tens
            # with many threads) would otherwise shrink the buffer for the next hundred jobs.
            # Jobs that really became slower still move the average by 6x per run (and the
            # SLOW_AFTER_S rule cuts the rate at once).
            self._run_s = run + ALPHA * (min(seconds, SPIKE * run) - run)
        self._mark = ended

    def busy(self, now: float) -> None:
        """Note that a handler started at monotonic time `now` while none was running."""
        self._mark = now

    def rate(self, now: float, running: bool) -> float:
        """The handlers' estimated completions per second at `now` (0 before any finished).

        Args:
            now: monotonic time.
            running: whether a handler runs now (otherwise the time since the last one
                finished says nothing about how long jobs take).
        """
        run = self._run_s
        if run is None:
            return 0.0
        rate = self._concurrency / max(run, 1e-6)
        if running:
            since = now - self._mark
            # Nothing finished for longer than the average allows: the jobs take longer now.
            if since > SLOW_AFTER_S and since * rate > 1.0:
                rate = 1.0 / since
        return rate

    def target(self, now: float, running: bool) -> int:
        """The buffer wanted at monotonic time `now` (jobs beyond the running ones)."""
        if self.prefetch is not None:
            return self.prefetch
        return min(self._cap, int(self.rate(now, running) * self._horizon))
