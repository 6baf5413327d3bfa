"""An App with one rate-limited queue, for the test that runs four worker processes on it.

It reads its server and key prefix from REDISQ_PROC_URL and REDISQ_PROC_PREFIX. Each handler
appends the time its lease was granted (on the Redis clock, in s: the claim that the limit
governs, free of the handler's own scheduling delay on a busy machine) to a Redis list, the
test's ledger. Nothing here imports tests.support.
"""

from __future__ import annotations

import os

import redisq

app = redisq.App(
    os.environ.get("REDISQ_PROC_URL", "memory://rate-app"),
    prefix=os.environ.get("REDISQ_PROC_PREFIX", "rate"),
)


@app.task(name="tick", queue="rq")
def tick(ledger: str) -> None:
    """Record when this job's lease was granted: its deadline less its lease."""
    job = redisq.current_context().job
    assert job.lease_deadline_ms is not None
    granted = job.lease_deadline_ms - (job.lease_ms or app.store.settings.lease_ms)
    app.store.redis.rpush(ledger, repr(granted / 1000))
