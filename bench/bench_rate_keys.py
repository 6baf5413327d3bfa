"""Rate keys: claim + ack time with 10 and with 10,000 rate keys, each with its own limit.

The same number of jobs is enqueued (untimed) without a rate key, then spread over 10 rate
keys, then over 10,000 (`rate_key=`), each key given a limit of its own so high (1,000,000/s)
that it never holds a job back: every claim still reads and moves the key's bucket. One
client then drains each queue, claiming `count` at a time and acking them. Claim takes each
keyed job from its key's head in O(log N) and checks its bucket with one HMGET, so the time
per job should not grow with the number of keys. Printed: jobs/s, client wall time per claim
and per ack call, and the server time per script call (commandstats).

    python bench/bench_rate_keys.py [--jobs 20000] [--count 1] [--url redis://...]
"""

from __future__ import annotations

import argparse
import sys

import redis
from _common import (
    Figure,
    Meter,
    base_parser,
    claim_and_ack_all,
    command_line,
    command_stats,
    delete_prefix,
    fmt_rate,
    new_prefix,
    print_environment,
    reset_stats,
    run_main,
    step,
)
from _server import bench_server

import redisq

SCRIPT = "bench_rate_keys.py"
JOBS, QUICK_JOBS = 20_000, 4_000
COUNT = 1
WORKER = "bench"
#: (label, number of groups; 0 = ungrouped)
SCENARIOS = (("no rate keys", 0), ("10 rate keys", 10), ("10,000 rate keys", 10_000))
#: Each key's limit: never reached, so the bench measures the check, not the waits.
LIMIT = "1000000/s"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs drained per scenario ({JOBS:,})")
    p.add_argument("--count", type=int, default=COUNT, help=f"jobs per claim ({COUNT})")
    return p


def fill(store: redisq.Store, queue: str, jobs: int, groups: int) -> None:
    """Enqueue `jobs` small jobs, round-robin over `groups` rate keys (none for 0), and give
    each key its limit."""
    for first in range(0, jobs, 1_000):
        batch = range(first, min(first + 1_000, jobs))
        if groups:
            store.enqueue_many(
                queue, [redisq.Spec({"n": i}, rate_key=f"key-{i % groups}") for i in batch]
            )
        else:
            store.enqueue_many(queue, [{"n": i} for i in batch])
    for g in range(groups):
        store.set_rate_limit(queue, LIMIT, key=f"key-{g}")


def run(args: argparse.Namespace) -> list[Figure]:
    """Drain the same number of jobs without a key, over 10 keys and over 10,000 keys."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    count = args.count
    cmd = command_line(SCRIPT, {"jobs": jobs, "count": count}, args.url)
    print(f"## claim(count={count}) + ack, {jobs:,} jobs per scenario\n# {cmd}", flush=True)
    figures = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("ratekeys")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            for label, groups in SCENARIOS:
                queue = f"q{groups}"
                with step(f"enqueue {jobs:,} jobs ({label})"):
                    fill(store, queue, jobs, groups)
                reset_stats(admin)
                with Meter(admin) as meter:
                    in_claim, in_ack, rounds = claim_and_ack_all(store, queue, jobs, count, WORKER)
                stats = command_stats(admin)
                rate = jobs / meter.wall
                line = (
                    f"{fmt_rate(rate, 'jobs/s')}; per round: claim {1e6 * in_claim / rounds:,.0f}"
                    f" µs, ack {1e6 * in_ack / rounds:,.0f} µs (client wall);"
                    f" {stats.usec_per_script_call:,.1f} µs server time per script call"
                )
                print(f"  {label}: {line}", flush=True)
                figures.append(
                    Figure(f"claim(count={count}) + ack, {label}, {jobs:,} jobs", line, command=cmd)
                )
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
