"""Five `redisq worker` processes drive one schedule: each of its 100 ticks is one job.

Every process stores the app's declaration when it starts (the first creates it, the others
find it unchanged) and drives the queue's schedules; the tick script lets one of them enqueue
each tick. Events are ordered by polling Redis with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import redisq
from redisq.keys import QueueKeys
from tests.integration import _sched_app
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration._sched_app:app"


@pytest.mark.slow
def test_five_worker_processes_enqueue_each_of_100_ticks_once(real_url: str, prefix: str) -> None:
    env = {**os.environ, "REDISQ_PROC_URL": real_url, "REDISQ_PROC_PREFIX": prefix}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "redisq", "worker", APP, "--concurrency", "2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(5)
    ]
    store = redisq.connect(real_url, prefix=prefix)
    try:

        def finished() -> redisq.Schedule | None:
            found = store.schedules("sq")
            return found[0] if found and found[0].next_run_ms is None else None

        s = wait_for(finished, 90, 0.05, message=lambda: f"schedules: {store.schedules('sq')}")
        assert s.runs == _sched_app.TICKS
        ids = sorted(k.decode() for k in store.redis.hkeys(QueueKeys.build(prefix, "sq").jobs))
        ticks = sorted(int(i.split("@")[1]) for i in ids)
        # Every tick of the grid, once: 100 jobs, 50 ms apart from the first.
        assert len(ids) == _sched_app.TICKS
        assert ticks == [ticks[0] + k * _sched_app.EVERY_MS for k in range(_sched_app.TICKS)]
        assert ticks[0] == s.created_at_ms + _sched_app.EVERY_MS
        wait_for(lambda: store.counts("sq")[redisq.JobState.COMPLETED] == _sched_app.TICKS, 30)
        assert store.totals("sq")["enqueued"] == _sched_app.TICKS
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        store.close()
    assert all(p.returncode == 0 for p in procs)
