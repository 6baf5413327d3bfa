"""Figure 3: `claim(count=100)` + `ack_many` jobs per second, draining a queue, one sync client.

The jobs are enqueued first (untimed, with enqueue_many); then one client claims 100 at a time
and acks them with one ack_many until the queue is empty. Goal: >= 50,000 jobs/s. Also counts
the Redis commands per job (2 script calls per 100 jobs) and the server time of each script.

    python bench/bench_claim_ack.py [--jobs 100000] [--count 100] [--overlap] [--url redis://...]

With --overlap, the same drain runs a second time with each batch's ack_many overlapping the
next claim: a second thread of the same Store acks while the first claims (as a Worker's
settler and fetcher do), so the client's work on one call overlaps the server's on the other.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

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
    step,
)
from _server import bench_server

import redisq

SCRIPT = "bench_claim_ack.py"
GOAL = 50_000.0
JOBS, QUICK_JOBS = 100_000, 20_000
COUNT = 100
#: Jobs of the separate pass that counts the commands sent per job.
COUNTED_JOBS = 10_000
WORKER = "bench"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs drained ({JOBS:,})")
    p.add_argument("--count", type=int, default=COUNT, help=f"jobs per claim ({COUNT})")
    p.add_argument(
        "--overlap",
        action="store_true",
        help="also drain with each ack_many overlapping the next claim (two threads)",
    )
    return p


def fill(store: redisq.Store, queue: str, jobs: int, start: int = 0) -> None:
    """Enqueue `jobs` small jobs with enqueue_many, 1,000 per call."""
    end = start + jobs
    for first in range(start, end, 1_000):
        store.enqueue_many(queue, [{"n": i} for i in range(first, min(first + 1_000, end))])


def drain(store: redisq.Store, queue: str, jobs: int, count: int) -> tuple[float, float]:
    """Claim `count` at a time and ack_many them until `jobs` are done.

    Returns the seconds spent in claim and in ack_many.
    """
    done = 0
    in_claim = in_ack = 0.0
    clock = time.perf_counter
    while done < jobs:
        t0 = clock()
        claimed = store.claim(queue, worker=WORKER, count=min(count, jobs - done))
        t1 = clock()
        store.ack_many(claimed)
        t2 = clock()
        if not claimed:
            raise RuntimeError(f"queue {queue!r} ran dry after {done:,} of {jobs:,} jobs")
        in_claim += t1 - t0
        in_ack += t2 - t1
        done += len(claimed)
    return in_claim, in_ack


def drain_overlapped(store: redisq.Store, queue: str, jobs: int, count: int) -> None:
    """Drain as `drain` does, each batch acked in a second thread while the next is claimed.

    At most one ack_many is in flight, and it ends before the one after it starts.
    """
    done = 0
    with ThreadPoolExecutor(1, thread_name_prefix="ack") as pool:
        pending: Future[object] | None = None
        while done < jobs:
            claimed = store.claim(queue, worker=WORKER, count=min(count, jobs - done))
            if not claimed:
                raise RuntimeError(f"queue {queue!r} ran dry after {done:,} of {jobs:,} jobs")
            if pending is not None:
                pending.result()
            pending = pool.submit(store.ack_many, claimed, snapshots=True)
            done += len(claimed)
        if pending is not None:
            pending.result()


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure figure 3 and the commands per job of claim + ack_many."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    count = args.count
    cmd = command_line(SCRIPT, {"jobs": jobs, "count": count}, args.url)
    if args.overlap:
        cmd += " --overlap"
    print(f"## claim(count={count}) + ack_many draining {jobs:,} jobs\n# {cmd}", flush=True)
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("claim-ack")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            with step(f"enqueue {jobs:,} jobs"):
                fill(store, "q", jobs)
            reset_stats(admin)
            with Meter(admin) as meter:
                in_claim, in_ack = drain(store, "q", jobs, count)
            elapsed = meter.wall
            stats = command_stats(admin)
            overlapped: Meter | None = None
            if args.overlap:
                with step(f"enqueue {jobs:,} jobs again"):
                    fill(store, "o", jobs)
                with Meter(admin) as overlapped:
                    drain_overlapped(store, "o", jobs, count)
                left_o = int(admin.zcard(f"{{{prefix}:o}}:ready")) + int(
                    admin.zcard(f"{{{prefix}:o}}:leased")
                )
                if left_o:
                    raise RuntimeError(f"{left_o} jobs left ready or leased (overlapped)")
            left = int(admin.zcard(f"{{{prefix}:q}}:ready"))
            counted = min(jobs, COUNTED_JOBS)
            commands = count_commands(
                server.url,
                admin,
                prefix,
                counted,
                lambda s: fill(s, "counted", counted),
                lambda s: drain(s, "counted", counted, count),
            )
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    if left:
        raise RuntimeError(f"{left} jobs left in the ready set")
    rate = jobs / elapsed
    rounds = -(-jobs // count)
    print(
        f"  {rate:,.0f} jobs/s; per round of {count}: claim {1e6 * in_claim / rounds:,.0f} µs,"
        f" ack_many {1e6 * in_ack / rounds:,.0f} µs (client wall time)",
        flush=True,
    )
    extra: list[Figure] = []
    if overlapped is not None:
        rate_o = jobs / overlapped.wall
        print(f"  overlapped: {rate_o:,.0f} jobs/s", flush=True)
        extra = [
            Figure(
                "the same, each ack_many overlapping the next claim (2 threads, one Store)",
                f"{fmt_rate(rate_o, 'jobs/s')}; client"
                f" {1e6 * overlapped.client_cpu / jobs:.1f} µs, server"
                f" {1e6 * overlapped.server_cpu / jobs:.1f} µs CPU per job (overlapping: with"
                f" two free cores, the larger of the two bounds the rate:"
                f" {fmt_rate(jobs / max(overlapped.client_cpu, overlapped.server_cpu), 'jobs/s')})",
                f">= {GOAL:,.0f} jobs/s",
                rate_o >= GOAL,
                cmd,
            )
        ]
    return [
        *extra,
        Figure(
            f"claim(count={count}) + ack_many: drain {jobs:,} jobs",
            f"{fmt_rate(rate, 'jobs/s')} (claim {1e6 * in_claim / rounds:,.0f} µs +"
            f" ack_many {1e6 * in_ack / rounds:,.0f} µs per {count} jobs)",
            f">= {GOAL:,.0f} jobs/s",
            rate >= GOAL,
            cmd,
        ),
        Figure(
            f"commands per job: claim(count={count}) + ack_many",
            commands.per_job(),
            f"2 script calls per {count} jobs",
            commands.met(2 * -(-counted // count)),
            cmd,
        ),
        Figure(
            f"server time per claim/ack_many script call of {count} jobs (commandstats)",
            f"{stats.usec_per_script_call:,.0f} µs (mean of claim and ack,"
            f" {stats.script_usec / jobs:.1f} µs/job)",
            command=cmd,
        ),
        Figure("CPU per job: claim + ack_many", meter.cpu_line(jobs), command=cmd),
    ]


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
