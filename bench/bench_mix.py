"""Pickup latency with a mix of quick and slow jobs arriving over time.

Worker processes (2) run one queue; a producer enqueues jobs one at a time as a Poisson
stream (500 jobs/s for 10 s, seeded), each quick (a no-op) or, with probability 0.1, slow
(sleeps 100 ms). Every handler records when it started; a job's pickup latency runs from
just before its enqueue call (the producer's clock, in the payload) to its handler's start
(the same wall clock: one machine), so it includes the enqueue's own round trip. Printed per
kind of job: p50, p99 and max, over the jobs after the first second (the warm-up).

With ``--burst N`` the producer enqueues N jobs at once (enqueue_many) at the same mean rate,
so the queue holds a backlog after each burst.

    python bench/bench_mix.py [--rate 500] [--seconds 10] [--slow-share 0.1] [--slow-ms 100]
        [--processes 2] [--burst 1] [--configs default] [--rounds 1] [--url redis://...]

Settings are written as in bench_worker.py. ``PYTHONPATH=/path/to/a/checkout python
bench/bench_mix.py`` measures that checkout (the worker processes import the same redisq).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from typing import Any

import redis
from _common import (
    Config,
    Figure,
    base_parser,
    command_line,
    delete_prefix,
    new_prefix,
    parse_configs,
    run_main,
    step,
)
from _server import bench_server
from _workers import describe_code, spawn

import redisq

SCRIPT = "bench_mix.py"
QUEUE = "q"
TASK = "bench.mixed"
WARM_UP_S = 1.0
#: A run that completes nothing for this long is stuck (the run fails).
STALL_S = 60.0

#: A worker process: the mixed task records (kind, enqueued, started); at SIGTERM it prints its
#: records as one JSON line.
CHILD = """
import json, sys, threading, time
import redisq
url, prefix, task, queue, options = sys.argv[1:6]
app = redisq.App(url, prefix=prefix)
records = []
lock = threading.Lock()

@app.task(name=task, queue=queue)
def mixed(ms, enqueued):
    started = time.time()
    if ms:
        time.sleep(ms / 1000)
    with lock:
        records.append((ms, enqueued, started))

worker = redisq.Worker(app, **json.loads(options))
def ready():
    while not worker.running:
        time.sleep(0.01)
    print("ready", flush=True)
threading.Thread(target=ready, daemon=True).start()
worker.run()
print(json.dumps({"records": records, "metrics": worker.metrics.snapshot()}), flush=True)
"""


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--rate", type=float, default=500.0, help="mean jobs enqueued per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long jobs arrive (10)")
    p.add_argument("--slow-share", type=float, default=0.1, help="share of slow jobs (0.1)")
    p.add_argument("--slow-ms", type=int, default=100, help="a slow job's sleep (100)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (2)")
    p.add_argument("--burst", type=int, default=1, help="jobs per enqueue call (1)")
    p.add_argument("--configs", default="default", help="worker settings (default)")
    p.add_argument("--rounds", type=int, default=1, help="runs per setting, interleaved (1)")
    p.add_argument("--seed", type=int, default=1, help="the arrival stream's seed (1)")
    return p


def produce(app: redisq.App, args: argparse.Namespace, seconds: float, rng: random.Random) -> int:
    """Enqueue the mixed stream for `seconds`; return how many jobs."""
    task = app.tasks[TASK]
    count = 0
    start = time.perf_counter()
    due = 0.0
    while due < seconds:
        due += rng.expovariate(args.rate / args.burst)
        pause = start + due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        kinds = [args.slow_ms if rng.random() < args.slow_share else 0 for _ in range(args.burst)]
        if args.burst == 1:
            task.enqueue(kinds[0], time.time())
        else:
            now = time.time()
            task.enqueue_many([task.call(ms, now) for ms in kinds])
        count += len(kinds)
    return count


def measure(
    url: str, admin: redis.Redis, args: argparse.Namespace, config: Config, seed: int
) -> dict[str, Any]:
    """One run: start the workers, produce the stream, collect the pickups."""
    prefix = new_prefix("mix")
    app = redisq.App(url, prefix=prefix)
    app.task(name=TASK, queue=QUEUE)(lambda ms, enqueued: None)
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(args.processes):
            children.append(spawn(CHILD, url, prefix, TASK, QUEUE, json.dumps(config.options)))
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker process did not start")
        time.sleep(0.5)
        jobs = produce(app, args, args.seconds, random.Random(seed))
        done, progressed = 0, time.perf_counter()
        while done < jobs:
            time.sleep(0.05)
            was, done = done, app.store.totals(QUEUE)["completed"]
            if done > was:
                progressed = time.perf_counter()
            elif time.perf_counter() - progressed > STALL_S:
                raise RuntimeError(f"the workers stalled after {done:,} of {jobs:,} jobs")
        records: list[list[float]] = []
        released = 0
        for child in children:
            child.terminate()
            out, _ = child.communicate(timeout=60)
            result = json.loads(out.strip().splitlines()[-1])
            records += result["records"]
            released += result["metrics"]["released"]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
        app.close()
        delete_prefix(admin, prefix, private=False)
    first = min(r[1] for r in records)
    kept = [r for r in records if r[1] >= first + WARM_UP_S]
    return {
        "quick": sorted(1000 * (r[2] - r[1]) for r in kept if not r[0]),
        "slow": sorted(1000 * (r[2] - r[1]) for r in kept if r[0]),
        "released": released,
    }


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _line(values: list[float]) -> str:
    return (
        f"p50 {_pct(values, 0.5):.2f} / p99 {_pct(values, 0.99):.2f} / max"
        f" {max(values, default=float('nan')):.1f} ms ({len(values):,} jobs)"
    )


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure pickups for each setting."""
    configs = parse_configs(args.configs)
    options: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "slow_share": args.slow_share,
        "slow_ms": args.slow_ms,
        "processes": args.processes,
        "burst": args.burst,
        "configs": args.configs,
    }
    if args.rounds > 1:
        options["rounds"] = args.rounds
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## pickup latency, quick and slow jobs mixed\n# {cmd}\n# {describe_code()}")
    found: dict[str, list[dict[str, Any]]] = {}
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        try:
            for n in range(args.rounds):
                for config in configs:
                    with step(config.label):
                        r = measure(server.url, admin, args, config, args.seed + n)
                    found.setdefault(config.label, []).append(r)
                    print(
                        f"  quick: {_line(r['quick'])}\n  slow: {_line(r['slow'])}\n"
                        f"  released from buffers: {r['released']}",
                        flush=True,
                    )
        finally:
            admin.close()
    figures = []
    for config in configs:
        runs = found[config.label]
        for kind in ("quick", "slow"):
            p50 = sorted(_pct(r[kind], 0.5) for r in runs)
            p99 = sorted(_pct(r[kind], 0.99) for r in runs)
            figures.append(
                Figure(
                    f"{config.label}: pickup of {kind} jobs ({args.processes} processes,"
                    f" {args.rate:g} jobs/s, {100 * args.slow_share:g}% of {args.slow_ms} ms"
                    f"{f', bursts of {args.burst}' if args.burst > 1 else ''})",
                    f"p50 {p50[0]:.2f}-{p50[-1]:.2f} ms, p99 {p99[0]:.2f}-{p99[-1]:.2f} ms"
                    f" over {len(runs)} run(s)",
                    "",
                    None,
                    cmd,
                )
            )
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
