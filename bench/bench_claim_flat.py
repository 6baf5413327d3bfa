"""Figure 5: claim cost stays flat as the ready set grows (1,000 vs 1,000,000 ready jobs).

For each size the queue is filled with enqueue_many (untimed), then a fixed number of jobs is
drained with claim(count=100) + ack_many; after each round the 100 claimed jobs are replaced
(untimed enqueue_many), so the ready set keeps its size. Only claim + ack_many are timed.
The two sizes run one after the other on an emptied server, each as several rounds, and the
best round of each is compared. Goal: the large case costs at most 1.5x the small one.

    python bench/bench_claim_flat.py [--small 1000] [--large 1000000] [--jobs 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import redis
from _common import (
    Figure,
    Meter,
    base_parser,
    best,
    command_line,
    delete_prefix,
    fmt_rate,
    new_prefix,
    print_environment,
    run_main,
    step,
)
from _server import BenchServer, bench_server
from bench_claim_ack import WORKER, fill

import redisq

SCRIPT = "bench_claim_flat.py"
GOAL_RATIO = 1.5
SMALL = 1_000
LARGE, QUICK_LARGE = 1_000_000, 100_000
JOBS, QUICK_JOBS = 20_000, 5_000
ROUNDS = 4
COUNT = 100


@dataclass(frozen=True, slots=True)
class Case:
    """The measured drain of one ready-set size."""

    size: int
    rates: list[float]
    claim_us: float
    ack_us: float
    cpu: str
    cpu_per_job_us: float

    @property
    def rate(self) -> float:
        """Best round, jobs per second."""
        return best(self.rates)


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--small", type=int, default=SMALL, help=f"small ready set ({SMALL:,})")
    p.add_argument("--large", type=int, default=None, help=f"large ready set ({LARGE:,})")
    p.add_argument("--jobs", type=int, default=None, help=f"jobs drained per size ({JOBS:,})")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per size ({ROUNDS})")
    p.add_argument("--count", type=int, default=COUNT, help=f"jobs per claim ({COUNT})")
    return p


def _measure(
    server: BenchServer, admin: redis.Redis, size: int, jobs: int, rounds: int, count: int
) -> Case:
    prefix = new_prefix("claim-flat")
    store = redisq.connect(server.url, prefix=prefix)
    try:
        with step(f"enqueue {size:,} jobs"):
            fill(store, "q", size)
        per_round = max(count, jobs // rounds)
        next_n = size
        rates: list[float] = []
        in_claim = in_ack = 0.0
        claims = 0
        meter = Meter(admin)
        clock = time.perf_counter
        for _ in range(rounds):
            spent = 0.0
            done = 0
            while done < per_round:
                with meter:
                    t0 = clock()
                    claimed = store.claim("q", worker=WORKER, count=count)
                    t1 = clock()
                    store.ack_many(claimed)
                    t2 = clock()
                if len(claimed) != count:
                    raise RuntimeError(f"claim returned {len(claimed)} jobs, not {count}")
                spent += t2 - t0
                in_claim += t1 - t0
                in_ack += t2 - t1
                claims += 1
                done += count
                store.enqueue_many("q", [{"n": i} for i in range(next_n, next_n + count)])
                next_n += count
            rates.append(done / spent)
        ready = int(admin.zcard(f"{{{prefix}:q}}:ready"))
        if ready != size:
            raise RuntimeError(f"the ready set holds {ready:,} jobs, not {size:,}")
    finally:
        store.close()
        with step("clean up"):
            delete_prefix(admin, prefix, server.private)
    line = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"  ready set {size:,}: rounds {line} jobs/s", flush=True)
    return Case(
        size,
        rates,
        1e6 * in_claim / claims,
        1e6 * in_ack / claims,
        meter.cpu_line(claims * count),
        1e6 * (meter.client_cpu + meter.server_cpu) / (claims * count),
    )


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure figure 5: the drain rate at a small and at a large ready set."""
    small = args.small
    large = args.large or (QUICK_LARGE if args.quick else LARGE)
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    rounds, count = args.rounds, args.count
    options = {"small": small, "large": large, "jobs": jobs, "rounds": rounds, "count": count}
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## claim cost vs ready-set size: {small:,} vs {large:,}\n# {cmd}", flush=True)
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        try:
            print_environment(admin)
            cases = [_measure(server, admin, n, jobs, rounds, count) for n in (small, large)]
        finally:
            admin.close()
    low, high = cases
    ratio = low.rate / high.rate
    figures = [
        Figure(
            f"claim(count={count}) + ack_many at {c.size:,} ready jobs (best of {rounds})",
            f"{fmt_rate(c.rate, 'jobs/s')} (claim {c.claim_us:,.0f} µs + ack_many"
            f" {c.ack_us:,.0f} µs per {count} jobs; {c.cpu})",
            command=cmd,
        )
        for c in cases
    ]
    cpu_ratio = high.cpu_per_job_us / low.cpu_per_job_us
    figures += [
        Figure(
            f"claim cost at {large:,} vs {small:,} ready jobs (wall time, best rounds)",
            f"{ratio:.2f}x",
            f"<= {GOAL_RATIO}x",
            ratio <= GOAL_RATIO,
            cmd,
        ),
        Figure(
            f"claim cost at {large:,} vs {small:,} ready jobs (client + server CPU per job)",
            f"{cpu_ratio:.2f}x ({high.cpu_per_job_us:,.1f} vs {low.cpu_per_job_us:,.1f} µs)",
            f"<= {GOAL_RATIO}x",
            cpu_ratio <= GOAL_RATIO,
            cmd,
        ),
    ]
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
