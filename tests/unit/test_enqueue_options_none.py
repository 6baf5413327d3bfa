"""An enqueue option given as None is the option left at its default (single and batch)."""

from __future__ import annotations

import redisq
from redisq import JobState


def test_none_options_are_the_defaults() -> None:
    store = redisq.connect("memory://options-none")
    try:
        for _ in range(2):  # the second call finds the validated options remembered
            job = store.enqueue(
                "q",
                1,
                priority=None,
                delay_ms=None,
                max_attempts=None,
                name=None,  # type: ignore[arg-type]
            )
            assert (job.priority, job.max_attempts, job.state) == (0, 3, JobState.READY)
        [many] = store.enqueue_many("q", [2], priority=None, max_attempts=None)
        assert (many.priority, many.max_attempts) == (0, 3)
    finally:
        store.close()
