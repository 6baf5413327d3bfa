"""Spread of slow jobs over worker processes: does a process idle while another holds jobs?

Several worker processes (4) share one queue of jobs that each sleep 100 ms (400 of them,
enqueued while the queue is paused; the processes start, then the queue is resumed). Every
handler records when its job was claimed (the Redis clock: the lease's deadline less its
length), when it started and when it ended (the same wall clock: one machine). From those
timelines, per process:

- jobs run, and the time its handlers were busy;
- **idle while others held waiting jobs**: the time during which the process had a free
  handler while another process held claimed jobs that had not started (in its buffer);
- and over all jobs: the time they waited in a buffer while some other process had a free
  handler ("stranded"), and the drain's makespan beside the ideal one (jobs x job time /
  all handlers).

A buffer sized for quick jobs would strand slow ones: with ``--configs 4:500`` the first
process to wake claims 504 jobs and the others idle. The worker's default is meant to claim
no more than its free handlers can start for jobs this slow. With ``--quick-first N``, N
no-op jobs come first in the queue: the processes size their buffers for them, then meet the
slow ones (what a buffer holds beyond its new size once it waited 100 ms is released).

    python bench/bench_spread.py [--jobs 400] [--job-ms 100] [--processes 4]
        [--configs default,4:500] [--quick-first 0] [--rounds 1] [--url redis://...]

Settings are written as in bench_worker.py (CONCURRENCY:PREFETCH, "-" for a default,
"default" for both). ``PYTHONPATH=/path/to/a/checkout python bench/bench_spread.py`` measures
that checkout (the worker processes import the same redisq as this script).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import redis
from _common import (
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

SCRIPT = "bench_spread.py"
JOBS, QUICK_JOBS = 400, 120
JOB_MS = 100
PROCESSES = 4
CONFIGS = "default,4:500"
QUEUE = "q"
TASK = "bench.sleep"
#: A drain that completes nothing for this long is stuck (the run fails).
STALL_S = 60.0

#: A worker process: a task that sleeps, recording (claimed ms, started s, ended s) per job;
#: at SIGTERM it prints its records, its concurrency and its metrics as one JSON line.
CHILD = """
import json, os, sys, threading, time
import redisq
url, prefix, task, queue, options = sys.argv[1:6]
app = redisq.App(url, prefix=prefix)
lease_ms = app.store.settings.lease_ms
records = []
lock = threading.Lock()

@app.task(name=task, queue=queue)
def work(ms, ctx):
    started = time.time()
    if ms:
        time.sleep(ms / 1000)
    job = ctx.job
    claimed_ms = job.lease_deadline_ms - (job.lease_ms or lease_ms)
    with lock:
        records.append((claimed_ms, started, time.time()))

worker = redisq.Worker(app, **json.loads(options))
def ready():
    while not worker.running:
        time.sleep(0.01)
    print("ready", flush=True)
threading.Thread(target=ready, daemon=True).start()
worker.run()
print(json.dumps({"pid": os.getpid(), "concurrency": worker.concurrency, "records": records,
                  "metrics": worker.metrics.snapshot()}), flush=True)
"""


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per drain ({JOBS})")
    p.add_argument("--job-ms", type=int, default=JOB_MS, help=f"each job's sleep ({JOB_MS})")
    p.add_argument(
        "--processes", type=int, default=PROCESSES, help=f"worker processes ({PROCESSES})"
    )
    p.add_argument(
        "--configs",
        default=CONFIGS,
        help=f"worker settings, comma-separated, as in bench_worker.py ({CONFIGS})",
    )
    p.add_argument(
        "--quick-first", type=int, default=0, help="no-op jobs enqueued before the slow ones (0)"
    )
    p.add_argument("--rounds", type=int, default=1, help="drains per setting, interleaved (1)")
    return p


@dataclass
class Spread:
    """What one drain's timelines say."""

    jobs: list[int]
    busy_s: list[float]
    idle_while_waiting_s: list[float]
    stranded_s: float
    waited_s: float
    makespan_s: float
    ideal_s: float
    released: int


def analyse(children: list[dict[str, Any]], job_s: float) -> Spread:
    """Sweep the processes' timelines (see the module docstring)."""
    events: list[tuple[float, int, int, str]] = []  # (time, order, process, what)
    for p, child in enumerate(children):
        for claimed_ms, started, ended in child["records"]:
            claimed = min(claimed_ms / 1000, started)
            events += [
                (claimed, 1, p, "wait+"),
                (started, 0, p, "wait-"),
                (started, 1, p, "run+"),
                (ended, 0, p, "run-"),
            ]
    events.sort()
    n = len(children)
    slots = [c["concurrency"] for c in children]
    waiting, running = [0] * n, [0] * n
    idle_while_waiting = [0.0] * n
    busy = [0.0] * n
    stranded = 0.0
    last = events[0][0] if events else 0.0
    for at, _, p, what in events:
        span = at - last
        if span > 0:
            for q in range(n):
                others_wait = sum(waiting) - waiting[q]
                if running[q] < slots[q] and others_wait:
                    idle_while_waiting[q] += span
                busy[q] += span * running[q] / slots[q]
            # A waiting job is stranded while another process has a free handler.
            for q in range(n):
                if waiting[q] and any(running[r] < slots[r] for r in range(n) if r != q):
                    stranded += span * waiting[q]
        last = at
        if what == "wait+":
            waiting[p] += 1
        elif what == "wait-":
            waiting[p] -= 1
        elif what == "run+":
            running[p] += 1
        else:
            running[p] -= 1
    records = [r for c in children for r in c["records"]]
    first = min((min(r[0] / 1000, r[1]) for r in records), default=0.0)
    end = max((r[2] for r in records), default=0.0)
    waited = sum(max(0.0, r[1] - r[0] / 1000) for r in records)
    return Spread(
        jobs=[len(c["records"]) for c in children],
        busy_s=busy,
        idle_while_waiting_s=idle_while_waiting,
        stranded_s=stranded,
        waited_s=waited,
        makespan_s=end - first,
        ideal_s=sum(1 for r in records if r[2] - r[1] >= job_s / 2) * job_s / sum(slots),
        released=sum(c["metrics"]["released"] for c in children),
    )


def drain(
    url: str,
    admin: redis.Redis,
    jobs: int,
    job_ms: int,
    processes: int,
    options: dict[str, int],
    quick_first: int = 0,
) -> Spread:
    """Run `processes` workers over `quick_first` no-op jobs then `jobs` jobs of `job_ms`;
    return their spread."""
    prefix = new_prefix("spread")
    store = redisq.connect(url, prefix=prefix)
    children: list[subprocess.Popen[str]] = []
    durations = [0] * quick_first + [job_ms] * jobs
    jobs = len(durations)
    try:
        store.pause(QUEUE)
        for first in range(0, jobs, 1_000):
            store.enqueue_many(
                QUEUE,
                [
                    redisq.Spec({"args": [ms], "kwargs": {}}, name=TASK)
                    for ms in durations[first : first + 1_000]
                ],
            )
        for _ in range(processes):
            children.append(spawn(CHILD, url, prefix, TASK, QUEUE, json.dumps(options)))
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker process did not start")
        time.sleep(0.5)  # let each worker connect and block on the paused queue
        store.resume(QUEUE)
        done, progressed = 0, time.perf_counter()
        while done < jobs:
            time.sleep(0.01)
            was, done = done, store.totals(QUEUE)["completed"]
            if done > was:
                progressed = time.perf_counter()
            elif time.perf_counter() - progressed > STALL_S:
                raise RuntimeError(f"the workers stalled after {done:,} of {jobs:,} jobs")
        results = []
        for child in children:
            child.terminate()
            out, _ = child.communicate(timeout=60)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
        store.close()
        delete_prefix(admin, prefix, private=False)
    return analyse(results, job_ms / 1000)


def _ms(values: list[float]) -> str:
    return "[" + ", ".join(f"{1000 * v:,.0f}" for v in values) + "]"


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure the spread for each setting."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    configs = parse_configs(args.configs)
    options: dict[str, Any] = {
        "jobs": jobs,
        "job_ms": args.job_ms,
        "processes": args.processes,
        "configs": args.configs,
    }
    if args.quick_first:
        options["quick_first"] = args.quick_first
    if args.rounds > 1:
        options["rounds"] = args.rounds
    cmd = command_line(SCRIPT, options, args.url)
    print(
        f"## spread of {jobs} jobs of {args.job_ms} ms"
        f"{f' after {args.quick_first} no-op jobs' if args.quick_first else ''}"
        f" over {args.processes} worker processes"
        f"\n# {cmd}\n# {describe_code()}",
        flush=True,
    )
    found: dict[str, list[Spread]] = {}
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        try:
            for _ in range(args.rounds):
                for config in configs:
                    with step(config.label):
                        s = drain(
                            server.url,
                            admin,
                            jobs,
                            args.job_ms,
                            args.processes,
                            config.options,
                            args.quick_first,
                        )
                    found.setdefault(config.label, []).append(s)
                    print(
                        f"  jobs per process {s.jobs}; idle while others held waiting jobs"
                        f" {_ms(s.idle_while_waiting_s)} ms; stranded {1000 * s.stranded_s:,.0f}"
                        f" job-ms; makespan {1000 * s.makespan_s:,.0f} ms (ideal"
                        f" {1000 * s.ideal_s:,.0f}); released {s.released}",
                        flush=True,
                    )
        finally:
            admin.close()
    figures = []
    for config in configs:
        runs = found[config.label]
        idle = [sum(s.idle_while_waiting_s) for s in runs]
        worst = max(runs, key=lambda s: sum(s.idle_while_waiting_s))
        figures.append(
            Figure(
                f"{args.processes} processes, {jobs} jobs of {args.job_ms} ms, {config.label}:"
                " time a process idled while another held claimed jobs that waited",
                f"{1000 * min(idle):,.0f}-{1000 * max(idle):,.0f} ms in all over {len(runs)}"
                f" run(s) (worst run, per process: {_ms(worst.idle_while_waiting_s)} ms; jobs"
                f" {worst.jobs}; jobs waited {1000 * worst.stranded_s:,.0f} job-ms while another"
                f" process had a free handler; makespan {1000 * worst.makespan_s:,.0f} ms, ideal"
                f" {1000 * worst.ideal_s:,.0f})",
                "0 ms",
                None,
                cmd,
            )
        )
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
