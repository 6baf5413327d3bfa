"""An App with one grouped queue, for the tests that run worker processes on it.

It reads its server and key prefix from REDISQ_PROC_URL and REDISQ_PROC_PREFIX. Each handler
appends ``<group> <start> <end>`` (wall clock, s: one machine) to a Redis list, the test's
ledger of lease intervals; `hold` blocks until killed (the kill -9 test). Nothing here imports
tests.support.
"""

from __future__ import annotations

import os
import time

import redisq

app = redisq.App(
    os.environ.get("REDISQ_PROC_URL", "memory://groups-app"),
    prefix=os.environ.get("REDISQ_PROC_PREFIX", "groups"),
)

#: The limit per group the test checks against.
GROUP_LIMIT = 2


@app.task(name="work", queue="gq", group_concurrency=GROUP_LIMIT, lease_ms=60_000)
def work(ledger: str, group: str, ms: int) -> None:
    """Hold the group's slot for `ms`, then record the interval."""
    start = time.time()
    time.sleep(ms / 1000)
    app.store.redis.rpush(ledger, f"{group} {start!r} {time.time()!r}")


@app.task(name="hold", queue="hq", group_concurrency=1, lease_ms=1_000)
def hold(ledger: str) -> None:
    """Record the start, then block until the process is killed."""
    app.store.redis.rpush(ledger, f"{os.getpid()} {time.time()!r}")
    time.sleep(3600)


@app.task(name="tick", queue="kq")
def tick(ledger: str, key: str) -> None:
    """Record when this handler of rate key `key` started."""
    app.store.redis.rpush(ledger, f"{key} {time.time()!r}")
