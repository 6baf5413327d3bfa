"""Figure 2: `Store.enqueue_many` jobs per second, in calls of 1,000 jobs, one sync client.

Goal: >= 100,000 jobs/s. Also counts the Redis commands per job (1 script call per 1,000 jobs)
and the server time of one enqueue script call of 1,000 jobs.

    python bench/bench_enqueue_many.py [--jobs 100000] [--batch 1000] [--url redis://...]
"""

from __future__ import annotations

import argparse
import sys

import redis
from _common import (
    Figure,
    Meter,
    base_parser,
    command_line,
    command_stats,
    count_commands,
    delete_prefix,
    fmt_rate,
    new_prefix,
    print_environment,
    reset_stats,
    run_main,
)
from _server import bench_server

import redisq
from redisq._core.ops import CHUNK

SCRIPT = "bench_enqueue_many.py"
GOAL = 100_000.0
JOBS, QUICK_JOBS = 100_000, 20_000
BATCH = 1_000
#: Jobs of the separate pass that counts the commands sent per job.
COUNTED_JOBS = 10_000


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs enqueued ({JOBS:,})")
    p.add_argument("--batch", type=int, default=BATCH, help=f"jobs per call ({BATCH:,})")
    return p


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure figure 2 and the commands per job of enqueue_many."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    batch = args.batch
    cmd = command_line(SCRIPT, {"jobs": jobs, "batch": batch}, args.url)
    print(f"## enqueue_many: {jobs:,} jobs in calls of {batch:,}\n# {cmd}", flush=True)
    payloads = [{"n": i} for i in range(jobs)]
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("enqueue-many")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            store.enqueue("q", {"n": -1})  # first use: server check and queue registration
            reset_stats(admin)
            with Meter(admin) as meter:
                for start in range(0, jobs, batch):
                    store.enqueue_many("q", payloads[start : start + batch])
            elapsed = meter.wall
            stats = command_stats(admin)
            stored = int(admin.zcard(f"{{{prefix}:q}}:ready"))
            counted = min(jobs, COUNTED_JOBS)
            commands = count_commands(
                server.url,
                admin,
                prefix,
                counted,
                lambda s: s.enqueue("counted", {"n": -1}),
                lambda s: [
                    s.enqueue_many("counted", payloads[i : i + batch])
                    for i in range(0, counted, batch)
                ],
            )
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    if stored != jobs + 1:
        raise RuntimeError(f"expected {jobs + 1} ready jobs, found {stored}")
    rate = jobs / elapsed
    calls = -(-jobs // batch)
    per_call = 1e6 * elapsed / calls
    print(f"  {rate:,.0f} jobs/s, {per_call:,.0f} µs per call of {batch:,}", flush=True)
    # enqueue_many sends one script call per chunk of 1,000 jobs (ops.CHUNK).
    per_call_jobs = min(batch, CHUNK)
    return [
        Figure(
            f"enqueue_many: {jobs:,} jobs in calls of {batch:,}",
            f"{fmt_rate(rate, 'jobs/s')} ({per_call / 1000:.1f} ms/call)",
            f">= {GOAL:,.0f} jobs/s",
            rate >= GOAL,
            cmd,
        ),
        Figure(
            "commands per job: enqueue_many (steady state)",
            commands.per_job(),
            f"1 script call per {per_call_jobs:,} jobs",
            commands.met(-(-counted // per_call_jobs)),
            cmd,
        ),
        Figure(
            f"server time per enqueue script call of {per_call_jobs:,} jobs (commandstats)",
            f"{stats.usec_per_script_call / 1000:.2f} ms"
            f" ({stats.usec_per_script_call / per_call_jobs:.1f} µs/job)",
            command=cmd,
        ),
        Figure("CPU per job: enqueue_many", meter.cpu_line(jobs), command=cmd),
    ]


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
