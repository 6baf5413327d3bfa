"""Figure 2: `Store.enqueue_many` jobs per second, in calls of 1,000 jobs, one sync client.

Goal: >= 100,000 jobs/s (issue 10: >= 75,000). Beside it, in interleaved rounds: the task API's
`task.enqueue_many([task.call(i) ...])`, what users call (goal: >= 70% of the store's figure),
and `AsyncStore.enqueue_many`. Also counts the Redis commands per job (1 script call per 1,000
jobs) and the server time of one enqueue script call of 1,000 jobs.

    python bench/bench_enqueue_many.py [--jobs 100000] [--batch 1000] [--rounds 3] [--url ...]

Each figure is the median of its rounds, with the range.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

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
#: The task API's share of the store's figure (issue 10).
TASK_SHARE = 0.70
JOBS, QUICK_JOBS = 100_000, 20_000
ROUNDS, QUICK_ROUNDS = 3, 2
BATCH = 1_000
#: Jobs of the separate pass that counts the commands sent per job.
COUNTED_JOBS = 10_000


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs enqueued ({JOBS:,})")
    p.add_argument("--batch", type=int, default=BATCH, help=f"jobs per call ({BATCH:,})")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds ({ROUNDS})")
    return p


def _task_round(app: redisq.App, jobs: int, batch: int) -> float:
    """Enqueue `jobs` task calls through the task API, `batch` per call; return jobs/s."""
    task = app.get_task("bench.noop")
    assert task is not None
    begin = time.perf_counter()
    for start in range(0, jobs, batch):
        task.enqueue_many([task.call(i) for i in range(start, min(start + batch, jobs))])
    return jobs / (time.perf_counter() - begin)


def _async_round(url: str, prefix: str, payloads: list[dict[str, int]], batch: int) -> float:
    """Enqueue the payloads through an AsyncStore, `batch` per call; return jobs/s."""

    async def main() -> float:
        store = redisq.connect_async(url, prefix=prefix)
        try:
            await store.enqueue("aq", {"n": -1})  # first use: server check and registration
            begin = time.perf_counter()
            for start in range(0, len(payloads), batch):
                await store.enqueue_many("aq", payloads[start : start + batch])
            return len(payloads) / (time.perf_counter() - begin)
        finally:
            await store.close()

    return asyncio.run(main())


def _median_range(rates: list[float]) -> str:
    return (
        f"{fmt_rate(statistics.median(rates), 'jobs/s')} median"
        f" (rounds {min(rates):,.0f}-{max(rates):,.0f})"
    )


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure figure 2, the task API and asyncio beside it, and the commands per job."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    batch = args.batch
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    cmd = command_line(SCRIPT, {"jobs": jobs, "batch": batch, "rounds": rounds}, args.url)
    print(
        f"## enqueue_many: {jobs:,} jobs in calls of {batch:,}, {rounds} rounds\n# {cmd}",
        flush=True,
    )
    payloads = [{"n": i} for i in range(jobs)]
    store_rates: list[float] = []
    task_rates: list[float] = []
    async_rates: list[float] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("enqueue-many")
        store = redisq.connect(server.url, prefix=prefix)
        app = redisq.App(server.url, prefix=prefix)
        app.task(name="bench.noop", queue="tq")(_noop)
        meter = Meter(admin)
        script_calls = script_usec = 0
        try:
            store.enqueue("q", {"n": -1})  # first use: server check and queue registration
            app.store.enqueue("tq", {"n": -1})
            for r in range(rounds):
                reset_stats(admin)
                with meter:
                    begin = time.perf_counter()
                    for start in range(0, jobs, batch):
                        store.enqueue_many("q", payloads[start : start + batch])
                    store_rates.append(jobs / (time.perf_counter() - begin))
                stats = command_stats(admin)
                script_calls += stats.script_calls
                script_usec += stats.script_usec
                task_rates.append(_task_round(app, jobs, batch))
                async_rates.append(_async_round(server.url, prefix, payloads, batch))
                print(
                    f"  round {r + 1}: store {store_rates[-1]:,.0f}, task API"
                    f" {task_rates[-1]:,.0f}, asyncio {async_rates[-1]:,.0f} jobs/s",
                    flush=True,
                )
                for queue in ("q", "tq", "aq"):
                    stored = int(admin.zcard(f"{{{prefix}:{queue}}}:ready"))
                    if stored < jobs:
                        raise RuntimeError(f"{queue}: expected {jobs} ready jobs, found {stored}")
                    # Each round starts from the same empty sets.
                    admin.delete(f"{{{prefix}:{queue}}}:ready", f"{{{prefix}:{queue}}}:jobs")
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
            app.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    rate = statistics.median(store_rates)
    task_rate = statistics.median(task_rates)
    calls = -(-jobs // batch)
    per_call = 1e6 / rate * jobs / calls
    # enqueue_many sends one script call per chunk of 1,000 jobs (ops.CHUNK).
    per_call_jobs = min(batch, CHUNK)
    usec_per_call = script_usec / max(script_calls, 1)
    return [
        Figure(
            f"enqueue_many: {jobs:,} jobs in calls of {batch:,}",
            f"{_median_range(store_rates)}; {per_call / 1000:.1f} ms/call",
            f">= {GOAL:,.0f} jobs/s",
            rate >= GOAL,
            cmd,
        ),
        Figure(
            "task API: `task.enqueue_many([task.call(i) ...])`, the same calls",
            f"{_median_range(task_rates)} = {100 * task_rate / rate:.0f}% of the store's",
            f">= {100 * TASK_SHARE:.0f}% of the store's",
            task_rate >= TASK_SHARE * rate,
            cmd,
        ),
        Figure(
            "asyncio: `AsyncStore.enqueue_many`, the same calls",
            _median_range(async_rates),
            command=cmd,
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
            f"{usec_per_call / 1000:.2f} ms ({usec_per_call / per_call_jobs:.1f} µs/job)",
            command=cmd,
        ),
        Figure("CPU per job: store enqueue_many", meter.cpu_line(jobs * rounds), command=cmd),
    ]


def _noop(i: int) -> None:
    """The benchmark's task (never run here)."""


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
