"""The server time of `ack_many` alone: jobs acked without a result, and with one.

A stored result is also written under a key of its own with a TTL (so that it outlives the
completed record's count retention); an ack without a result must cost nothing more. This
script drains a queue with claim(count) + ack_many, and resets and reads INFO commandstats
around each ack_many call only, so the claims do not blur the figure. Runs alternate between
acks without results and acks with a small result, round by round, so load moves both alike.

    python bench/bench_ack_results.py [--jobs 50000] [--count 100] [--kinds none,result]
                                      [--url redis://...]

``--kinds none`` measures acks without results alone (no result keys in the keyspace).

It uses only the public API of every redisq version, so the figure can be taken before and
after a change: ``PYTHONPATH=/path/to/older/checkout python bench/bench_ack_results.py``.
"""

from __future__ import annotations

import argparse
import sys

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
    step,
)
from _server import bench_server

import redisq

SCRIPT = "bench_ack_results.py"
JOBS, QUICK_JOBS = 50_000, 10_000
COUNT = 100
WORKER = "bench"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per kind ({JOBS:,})")
    p.add_argument("--count", type=int, default=COUNT, help=f"jobs per claim and ack ({COUNT})")
    p.add_argument(
        "--kinds",
        default="none,result",
        help="what to measure, comma-separated: none (acks without a result), result",
    )
    return p


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure ack_many's server time per job, without and with results."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    count = args.count
    kinds = [k.strip() for k in args.kinds.split(",")]
    if not kinds or not set(kinds) <= {"none", "result"}:
        raise SystemExit(f"--kinds takes none and/or result; got {args.kinds!r}")
    cmd = command_line(SCRIPT, {"jobs": jobs, "count": count, "kinds": args.kinds}, args.url)
    print(f"## ack_many server time, {jobs:,} jobs of each kind ({args.kinds})\n# {cmd}")
    usec = dict.fromkeys(kinds, 0)
    calls = dict.fromkeys(kinds, 0)
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("ack-results")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            with step(f"enqueue {2 * jobs:,} jobs"):
                for kind in usec:
                    for first in range(0, jobs, 1_000):
                        payloads = [{"n": i} for i in range(first, min(first + 1_000, jobs))]
                        store.enqueue_many(kind, payloads)
            done = 0
            while done < jobs:
                n = min(count, jobs - done)
                for kind in usec:
                    claimed = store.claim(kind, worker=WORKER, count=n)
                    results = None if kind == "none" else [j.payload["n"] for j in claimed]
                    reset_stats(admin)
                    store.ack_many(claimed, results, snapshots=False)
                    stats = command_stats(admin)
                    usec[kind] += stats.script_usec
                    calls[kind] += stats.script_calls
                done += n
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    figures = []
    for kind, label in (("none", "without a result"), ("result", "with a result (an int)")):
        if kind not in usec:
            continue
        per_call = usec[kind] / max(calls[kind], 1)
        print(
            f"  {label}: {per_call:,.0f} µs per ack_many of {count}, {usec[kind] / jobs:.2f} µs/job"
        )
        figures.append(
            Figure(
                f"ack_many server time, jobs {label}",
                f"{per_call:,.0f} µs per call of {count} ({usec[kind] / jobs:.2f} µs/job)",
                command=cmd,
            )
        )
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
