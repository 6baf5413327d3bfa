"""Result latency: from the ack being sent to `JobRef.result()` returning in another thread.

A waiter thread (its own App, as a web request waiting for a job would have) calls
`ref.result()` on each job as soon as it is enqueued; after a random pause (5 to 50 ms, so the
ack falls anywhere in a polling interval) the main thread claims the job and acks it with a
result on its own store. The figure is the time from just before the ack to the moment
result() returned, p50 and p99, and the waiter's commands per job (its script calls and
BLPOPs, from INFO commandstats).

It uses only the public API, so the figure can be taken before and after a change (polling
before, the completion signal after):
``PYTHONPATH=/path/to/older/checkout python bench/bench_result_latency.py``.

    python bench/bench_result_latency.py [--jobs 300] [--url redis://...]
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import sys
import threading
import time
from typing import Any

import redis
from _common import (
    Figure,
    base_parser,
    command_line,
    command_stats,
    delete_prefix,
    new_prefix,
    print_environment,
    reset_stats,
    run_main,
)
from _server import bench_server

import redisq

SCRIPT = "bench_result_latency.py"
JOBS, QUICK_JOBS = 300, 50
QUEUE = "latency"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs measured ({JOBS:,})")
    return p


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure the time from ack to result() returning."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    cmd = command_line(SCRIPT, {"jobs": jobs}, args.url)
    print(f"## result latency, {jobs:,} jobs\n# {cmd}", flush=True)
    latencies: list[float] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("latency")
        waiter_app = redisq.App(server.url, prefix=prefix)
        task = waiter_app.task(name="bench.square", queue=QUEUE, store_result=True)(lambda n: n * n)
        store = redisq.connect(server.url, prefix=prefix)
        refs: queue.Queue[Any] = queue.Queue()
        returned: queue.Queue[float] = queue.Queue()

        def wait() -> None:
            while (ref := refs.get()) is not None:
                ref.result(timeout=30)
                returned.put(time.perf_counter())

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        try:
            reset_stats(admin)
            for n in range(jobs):
                ref = task.enqueue(n)
                refs.put(ref)
                time.sleep(random.uniform(0.005, 0.05))
                (job,) = store.claim(QUEUE, worker="bench")
                sent = time.perf_counter()
                store.ack(job, n * n)
                latencies.append(returned.get(timeout=30) - sent)
            stats = command_stats(admin)
        finally:
            refs.put(None)
            waiter.join(30)
            store.close()
            waiter_app.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    ms = [1000 * x for x in latencies]
    p50, p99 = statistics.median(ms), _percentile(ms, 99)
    # The waiter's round trips: script calls beyond each job's enqueue, claim and ack (3),
    # and its blocking pops.
    per_job = (stats.script_calls - 3 * jobs + stats.by_command.get("blpop", 0)) / jobs
    extra = f"; {per_job:.1f} waiter commands per job"
    print(f"  p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(ms):.2f} ms{extra}")
    return [
        Figure(
            "result latency, ack sent to result() returned",
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (max {max(ms):.2f} ms){extra}",
            command=cmd,
        )
    ]


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
