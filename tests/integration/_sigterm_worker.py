"""A worker process for the SIGTERM test.

Run as ``python -m tests.integration._sigterm_worker URL PREFIX``.

Its one task records that it started, takes a while, and completes; the test sends SIGTERM
while it runs and expects the job completed and the process to exit 0.
"""

from __future__ import annotations

import sys
import time

import redisq

app = redisq.App(sys.argv[1] if len(sys.argv) > 1 else "memory://", prefix=sys.argv[-1])


@app.task(name="slow", queue="slow")
def slow(ctx: redisq.Context) -> None:
    ctx.progress("started")
    time.sleep(0.5)  # the work itself; SIGTERM arrives meanwhile


if __name__ == "__main__":
    redisq.Worker(app, concurrency=1, grace_ms=20_000, idle_wait_ms=100).run()
    sys.exit(0)
