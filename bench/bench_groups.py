"""Concurrency groups: claim + ack time with 10 and with 10,000 active groups (issue 11).

The same number of jobs is enqueued (untimed) ungrouped, then spread over 10 groups, then
over 10,000 groups (group_concurrency=1, so every claim also checks its group's limit); one
client then drains each queue, claiming `count` at a time and acking them with ack_many. Claim
takes each grouped job from its group's head in O(log N), so the time per job should not
grow with the number of groups. Printed: jobs/s, client wall time per claim and per ack call,
and the server time per script call (commandstats).

    python bench/bench_groups.py [--jobs 20000] [--count 1] [--url redis://...]
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

SCRIPT = "bench_groups.py"
JOBS, QUICK_JOBS = 20_000, 4_000
COUNT = 1
WORKER = "bench"
#: (label, number of groups; 0 = ungrouped)
SCENARIOS = (("no groups", 0), ("10 groups", 10), ("10,000 groups", 10_000))


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs drained per scenario ({JOBS:,})")
    p.add_argument("--count", type=int, default=COUNT, help=f"jobs per claim ({COUNT})")
    return p


def fill(store: redisq.Store, queue: str, jobs: int, groups: int) -> None:
    """Enqueue `jobs` small jobs, round-robin over `groups` groups (none for 0)."""
    for first in range(0, jobs, 1_000):
        batch = range(first, min(first + 1_000, jobs))
        if groups:
            store.enqueue_many(
                queue, [redisq.Spec({"n": i}, group=f"tenant-{i % groups}") for i in batch]
            )
        else:
            store.enqueue_many(queue, [{"n": i} for i in batch])


def run(args: argparse.Namespace) -> list[Figure]:
    """Drain the same number of jobs ungrouped, over 10 groups and over 10,000 groups."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    count = args.count
    cmd = command_line(SCRIPT, {"jobs": jobs, "count": count}, args.url)
    print(f"## claim(count={count}) + ack, {jobs:,} jobs per scenario\n# {cmd}", flush=True)
    figures = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("groups")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            for label, groups in SCENARIOS:
                queue = f"q{groups}"
                if groups:
                    store.set_group_concurrency(queue, 1)
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
