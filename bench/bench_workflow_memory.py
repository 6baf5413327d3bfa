"""Issue 12 point 6: memory stays flat while 100,000 chained jobs run through a worker.

Enqueues chains (`redisq.chain`, each step gets the previous result) of --length steps in rounds,
keeping at most --backlog jobs not yet finished, while a Worker (a thread of this process) runs
them. Every --sample-s seconds it samples INFO used_memory, DBSIZE and the queue's keys by kind:
job records, dependency state (pending lists, children sets, watch set, todo, outbox, early
releases), flow edges (u/, d/: removed with their job's record by retention), stored results
(kept --result-ttl-ms after the ack, 0 = as long as the record) and the rest. Flat means the
last sample's used_memory is within --slack-kib of the sample at 20% of the jobs.

    python bench/bench_workflow_memory.py [--jobs 100000] [--length 10] [--url redis://...]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

import redis
from _common import (
    Figure,
    base_parser,
    command_line,
    delete_prefix,
    fmt_int,
    new_prefix,
    print_environment,
    run_main,
)
from _server import bench_server

import redisq
from redisq import JobState

SCRIPT = "bench_workflow_memory.py"
JOBS, QUICK_JOBS = 100_000, 10_000
Q = "wf"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"chained jobs run ({JOBS:,})")
    p.add_argument("--length", type=int, default=10, help="steps per chain (10)")
    p.add_argument("--backlog", type=int, default=2_000, help="most unfinished jobs (2,000)")
    p.add_argument("--concurrency", type=int, default=16, help="worker concurrency (16)")
    p.add_argument("--sample-s", type=float, default=2.0, help="seconds between samples (2)")
    p.add_argument(
        "--result-ttl-ms",
        type=int,
        default=0,
        help="Retention.result_ttl_ms (0: results live as long as their record)",
    )
    p.add_argument("--slack-kib", type=int, default=1024, help="flat within (1,024 KiB)")
    return p


def _kinds(admin: redis.Redis, prefix: str) -> Counter[str]:
    tag = f"{{{prefix}:{Q}}}:"
    kinds: Counter[str] = Counter()
    for raw in admin.scan_iter(match=f"{tag}*", count=10_000):
        rest = raw.decode()[len(tag) :]
        if rest == "jobs":
            kinds["records"] += int(admin.hlen(raw))
        elif rest.startswith("deps:u/") or rest.startswith("deps:d/"):
            kinds["edges"] += 1
        elif rest == "deps:pending":
            kinds["deps"] += int(admin.hlen(raw))
        elif rest.startswith("deps:"):
            kinds["deps"] += 1
        elif rest.startswith("result"):
            kinds["results"] += 1
        elif rest.startswith("claim:"):
            kinds["claim memos"] += 1
        else:
            kinds["other"] += 1
    return kinds


def run(args: argparse.Namespace) -> list[Figure]:
    """Run the chains and sample memory; the figure is flat or not."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    length = args.length
    chains = -(-jobs // length)
    options = {
        "jobs": jobs,
        "length": length,
        "backlog": args.backlog,
        "concurrency": args.concurrency,
        "result_ttl_ms": args.result_ttl_ms,
    }
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## memory while {chains * length:,} chained jobs run\n# {cmd}", flush=True)
    samples: list[tuple[float, int, int, int, Counter[str]]] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("workflow")
        retention = redisq.Retention(result_ttl_ms=args.result_ttl_ms)
        app = redisq.App(server.url, prefix=prefix, retention=retention)

        @app.task(queue=Q, name="step")
        def step(x: int) -> int:
            return x + 1

        worker = redisq.Worker(app, concurrency=args.concurrency, idle_wait_ms=20, grace_ms=0)
        thread = threading.Thread(target=worker.run, daemon=True)
        store = app.store
        start = time.monotonic()
        try:
            thread.start()
            next_sample = start
            made = 0

            def sample(done: int) -> None:
                used = int(admin.info("memory")["used_memory"])
                samples.append(
                    (
                        time.monotonic() - start,
                        done,
                        used,
                        int(admin.dbsize()),
                        _kinds(admin, prefix),
                    )
                )

            totals = 0
            while True:
                meta = store.redis.hget(f"{{{prefix}:{Q}}}:meta", "completed")
                totals = int(meta or 0)
                if time.monotonic() >= next_sample:
                    sample(totals)
                    next_sample += args.sample_s
                if made >= chains and totals >= chains * length:
                    break
                c = store.counts(Q)
                live = c[JobState.READY] + c[JobState.WAITING] + c[JobState.LEASED]
                if made < chains and live + length <= args.backlog:
                    n = min(chains - made, max(1, (args.backlog - live) // length))
                    for _ in range(n):
                        redisq.chain(step.s(0), *[step.s() for _ in range(length - 1)]).enqueue()
                    made += n
                else:
                    time.sleep(0.05)
            sample(totals)
            wall = time.monotonic() - start
            dead = store.counts(Q)[JobState.DEAD] + store.counts(Q)[JobState.CANCELLED]
        finally:
            worker.stop(grace=False)
            thread.join(30)
            app.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    print(f"  {chains * length / wall:,.0f} chained jobs/s ({wall:.0f} s)", flush=True)
    print(
        "  t (s) | jobs done | used_memory KiB | DBSIZE | records | deps | edges | results"
        " | claim memos (expire in 30 s)"
    )
    for t, done, used, size, kinds in samples:
        print(
            f"  {t:5.0f} | {done:9,} | {used / 1024:15,.0f} | {size:6,} | {kinds['records']:7,}"
            f" | {kinds['deps']:4,} | {kinds['edges']:5,} | {kinds['results']:7,}"
            f" | {kinds['claim memos']:,}"
        )
    total = chains * length
    warm = next((s for s in samples if s[1] >= total // 5), samples[0])
    last = samples[-1]
    growth = last[2] - warm[2]
    flat = growth <= args.slack_kib * 1024 and last[4]["deps"] == 0 and dead == 0
    return [
        Figure(
            f"used_memory at {warm[1]:,} jobs / at the end ({last[1]:,} jobs)",
            f"{fmt_int(warm[2] / 1024)} KiB / {fmt_int(last[2] / 1024)} KiB"
            f" (growth {growth / 1024:+,.0f} KiB; peak"
            f" {fmt_int(max(s[2] for s in samples) / 1024)} KiB)",
            f"growth <= {args.slack_kib:,} KiB",
            flat,
            cmd,
        ),
        Figure(
            "keys at the end",
            f"DBSIZE {last[3]:,}; records {last[4]['records']:,}, dependency state"
            f" {last[4]['deps']:,}, flow edges {last[4]['edges']:,}, results"
            f" {last[4]['results']:,}; dead or cancelled jobs: {dead:,}",
            "dependency state 0; records and edges bounded by retention",
            last[4]["deps"] == 0,
            cmd,
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
