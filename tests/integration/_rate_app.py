"""An App with one rate-limited queue, for the test that runs four worker processes on it.

It reads its server and key prefix from REDISQ_PROC_URL and REDISQ_PROC_PREFIX. Each handler
appends its start time (wall clock, s: one machine) to a Redis list, the test's ledger.
Nothing here imports tests.support.
"""

from __future__ import annotations

import os
import time

import redisq

app = redisq.App(
    os.environ.get("REDISQ_PROC_URL", "memory://rate-app"),
    prefix=os.environ.get("REDISQ_PROC_PREFIX", "rate"),
)


@app.task(name="tick", queue="rq")
def tick(ledger: str) -> None:
    """Record when this handler started."""
    app.store.redis.rpush(ledger, repr(time.time()))
