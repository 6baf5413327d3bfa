"""An App with rate keys, for the test that runs worker processes on them.

It reads its server and key prefix from REDISQ_PROC_URL and REDISQ_PROC_PREFIX. Each handler
appends ``<key> <grant>`` to a Redis list, the test's ledger: the time its lease was granted
(its deadline less its lease, on the Redis clock, in s: the claim the limit governs, free of
the handler's own scheduling delay on a busy machine). The first run of a job of key "c"
meets a 429: it records ``hold <Redis time>`` and raises RateLimited(HOLD_MS), which holds key
"c" for every worker. Nothing here imports tests.support.
"""

from __future__ import annotations

import os

import redisq

app = redisq.App(
    os.environ.get("REDISQ_PROC_URL", "memory://rate-key-app"),
    prefix=os.environ.get("REDISQ_PROC_PREFIX", "ratekey"),
)

#: How long the 429 holds key "c".
HOLD_MS = 1_500


# Key "a" gets its limit from the task (workers store it when they start); "b" and "c" from
# the test (`set_rate_limit(..., key=...)`), their jobs through task.options(rate_key=...).
@app.task(name="call", queue="rk", rate_limit="10/s", rate_key="a")
def call(ledger: str, key: str) -> None:
    job = redisq.current_context().job
    assert job.lease_deadline_ms is not None
    granted = (job.lease_deadline_ms - (job.lease_ms or app.store.settings.lease_ms)) / 1000
    redis = app.store.redis
    if key == "c" and redis.set(f"{ledger}:429", 1, nx=True):
        seconds, micros = redis.time()
        redis.rpush(ledger, f"hold {int(seconds) + int(micros) / 1e6!r} {granted!r}")
        raise redisq.RateLimited(HOLD_MS)
    redis.rpush(ledger, f"{key} {granted!r}")
