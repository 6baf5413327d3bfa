"""An App with one periodic task, for the schedule tests that run worker processes.

It reads its server and key prefix from REDISQ_PROC_URL and REDISQ_PROC_PREFIX. Nothing here
imports tests.support.
"""

from __future__ import annotations

import os

import redisq

app = redisq.App(
    os.environ.get("REDISQ_PROC_URL", "memory://sched-app"),
    prefix=os.environ.get("REDISQ_PROC_PREFIX", "sched"),
)

#: Ticks of the schedule: 100, every 50 ms, each enqueued once (missed="all": a tick a
#: driver reaches late still runs).
TICKS = 100
EVERY_MS = 50


@app.periodic(every_ms=EVERY_MS, missed="all", limit=TICKS, id="beat")
@app.task(queue="sq")
def beat() -> int:
    """Return the pid of the worker process that ran it."""
    return os.getpid()
