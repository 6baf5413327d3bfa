"""A tiny App for the worker-process tests (imported by `redisq worker` subprocesses).

It reads its server and key prefix from REDISQ_PROC_URL and REDISQ_PROC_PREFIX, so each test
points the subprocesses at its own keys. Nothing here imports tests.support.
"""

from __future__ import annotations

import os
import time

import redisq

app = redisq.App(
    os.environ.get("REDISQ_PROC_URL", "memory://proc-app"),
    prefix=os.environ.get("REDISQ_PROC_PREFIX", "proc"),
)

#: Not an App, for the usage-error tests.
NOT_AN_APP = 42


@app.task(queue="q", store_result=True)
def add(a: int, b: int, ctx: redisq.Context) -> dict[str, object]:
    """Return the sum and the pid of the worker process that ran it."""
    return {"sum": a + b, "pid": os.getpid()}


@app.task(queue="q", lease_ms=600, max_attempts=5, store_result=True)
def gate(key: str, ctx: redisq.Context) -> int:
    """Say the handler runs (the key `key:started`), then wait until the Redis key `key`
    exists (the test opens the gate); return the pid."""
    client = app.store.redis
    client.set(f"{key}:started", os.getpid())
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and not ctx.cancelled:
        if client.exists(key):
            return os.getpid()
        time.sleep(0.01)
    raise TimeoutError(f"the gate {key} was never opened")


@app.task(queue="q", store_result=True)
def nap(ms: int, ctx: redisq.Context) -> dict[str, object]:
    """Sleep `ms`; return the pid, when the job was claimed (Redis clock, ms) and when the
    handler started (the same wall clock: one machine, ms)."""
    started_ms = time.time() * 1000
    time.sleep(ms / 1000)
    job = ctx.job
    assert job.lease_deadline_ms is not None
    claimed_ms = job.lease_deadline_ms - (job.lease_ms or app.store.settings.lease_ms)
    return {"pid": os.getpid(), "claimed_ms": claimed_ms, "started_ms": started_ms}
