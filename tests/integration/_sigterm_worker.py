"""A worker process for the SIGTERM test.

Run as ``python -m tests.integration._sigterm_worker URL PREFIX``.

Its one task records that it started, then waits until the test opens its gate (a Redis key)
and completes; the test sends SIGTERM while it waits, then opens the gate, and expects the job
completed and the process to exit 0.
"""

from __future__ import annotations

import logging
import sys
import time

import redisq

app = redisq.App(sys.argv[1] if len(sys.argv) > 1 else "memory://", prefix=sys.argv[-1])


#: The gate key; the test sets it after SIGTERM, so the job is surely in flight at the signal.
GATE = "gate"


@app.task(name="slow", queue="slow")
def slow(ctx: redisq.Context) -> None:
    ctx.progress("started")
    deadline = time.monotonic() + 20
    while not app.store.redis.exists(f"{{{app.prefix}:slow}}:{GATE}"):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)  # polling the gate, not ordering anything


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # the test reads the stop line
    redisq.Worker(app, concurrency=1, grace_ms=20_000, idle_wait_ms=100).run()
    sys.exit(0)
