"""Figure 6: memory stays bounded: 200,000 jobs through enqueue, claim and ack.

With the default retention (1,000 completed jobs kept), one client enqueues 1,000 jobs with
enqueue_many, claims them 100 at a time and acks each claim with ack_many, until 200,000 jobs
are done. Reports used_memory before, at its peak during the run and after, DBSIZE after, and
the queue's keys by kind: job records (bounded by retention), index keys, and claim memos
(one per claim, expiring after claim_memo_ms = 30 s: bounded by time, not by job count).

    python bench/bench_memory.py [--jobs 200000] [--url redis://...]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import redis
from _common import (
    Figure,
    Meter,
    base_parser,
    command_line,
    delete_prefix,
    fmt_int,
    new_prefix,
    print_environment,
    run_main,
)
from _server import bench_server
from bench_claim_ack import WORKER

import redisq

SCRIPT = "bench_memory.py"
JOBS, QUICK_JOBS = 200_000, 20_000
BATCH = 1_000
COUNT = 100
#: Keys of a queue besides claim memos: meta, ready, scheduled, leased, done, dead, cancelled,
#: unique, and the jobs hash (whose fields are the job records, counted apart).
INDEX_KEYS = 9


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs processed ({JOBS:,})")
    return p


def _used_memory(admin: redis.Redis) -> int:
    return int(admin.info("memory")["used_memory"])


def _queue_keys(admin: redis.Redis, prefix: str, queue: str) -> tuple[Counter[str], int]:
    """Count the queue's keys by kind, and the bytes its claim memos take (MEMORY USAGE)."""
    tag = f"{{{prefix}:{queue}}}:"
    kinds: Counter[str] = Counter()
    memo_bytes = 0
    for raw in admin.scan_iter(match=f"{tag}*", count=10_000):
        key = raw.decode()
        rest = key[len(tag) :]
        if rest == "jobs":
            kinds["job records"] += int(admin.hlen(key))
            kinds["index keys"] += 1
        elif rest.startswith("claim:"):
            kinds["claim memos"] += 1
            memo_bytes += int(admin.memory_usage(key) or 0)
        elif rest.startswith("lock:"):
            kinds["locks"] += 1
        else:
            kinds["index keys"] += 1
    return kinds, memo_bytes


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure figure 6: memory and keys after `jobs` jobs went through the queue."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    cmd = command_line(SCRIPT, {"jobs": jobs}, args.url)
    print(f"## memory after {jobs:,} jobs enqueued, claimed and acked\n# {cmd}", flush=True)
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("memory")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            keep = store.settings.retention.completed
            before = _used_memory(admin)
            keys_before = int(admin.dbsize())
            peak = before
            done = 0
            with Meter(admin) as meter:
                while done < jobs:
                    n = min(BATCH, jobs - done)
                    store.enqueue_many("q", [{"n": i} for i in range(done, done + n)])
                    left = n
                    while left:
                        claimed = store.claim("q", worker=WORKER, count=min(COUNT, left))
                        if not claimed:
                            raise RuntimeError("the queue ran dry")
                        store.ack_many(claimed)
                        left -= len(claimed)
                    done += n
                    if (done // BATCH) % 20 == 0:
                        peak = max(peak, _used_memory(admin))
            after = _used_memory(admin)
            peak = max(peak, after)
            # SCAN first: it drops expired claim memos that DBSIZE would still count.
            kinds, memo_bytes = _queue_keys(admin, prefix, "q")
            dbsize = int(admin.dbsize())
            counts = store.counts("q")
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    print(f"  {jobs / meter.wall:,.0f} jobs/s through enqueue_many + claim + ack_many", flush=True)
    queue_total = sum(n for kind, n in kinds.items() if kind != "job records")
    memos = kinds["claim memos"]
    claims = -(-jobs // COUNT)
    bounded = kinds["job records"] <= keep and kinds["index keys"] <= INDEX_KEYS and memos <= claims
    outside = dbsize - queue_total
    outside_what = "the queue registry" + (
        ", and expired claim memos not reclaimed yet" if outside > 1 else ""
    )
    breakdown = ", ".join(
        f"{n:,} {kind}" for kind, n in sorted(kinds.items()) if kind != "job records"
    )
    breakdown += f" (job records: {kinds['job records']:,} fields of the jobs hash)"
    states = ", ".join(f"{s.value} {n:,}" for s, n in counts.items() if n)
    return [
        Figure(
            f"used_memory before / peak / after {jobs:,} jobs",
            f"{fmt_int(before / 1024)} KiB / {fmt_int(peak / 1024)} KiB /"
            f" {fmt_int(after / 1024)} KiB (claim memos: {fmt_int(memo_bytes / 1024)} KiB)",
            command=cmd,
        ),
        Figure(
            f"DBSIZE after {jobs:,} jobs (before: {keys_before:,})",
            f"{dbsize:,} keys, of which the queue's {queue_total:,} = {breakdown}"
            f"; {outside:,} outside it ({outside_what}); counts: {states}",
            f"<= {keep:,} job records (retention) + {INDEX_KEYS} index keys;"
            " claim memos expire (30 s)",
            bounded,
            cmd,
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
