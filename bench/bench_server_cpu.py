"""Redis server CPU per job: what redisq costs the Redis it shares with other services.

Server CPU is the change in INFO's used_cpu_user + used_cpu_sys over a section, divided by
the jobs it handled (the same measure as the peer benchmark's, bench/peers). Scenarios, each
on a fresh queue, several rounds each (medians, best and ranges are printed: the figure
moves with the machine's load; the commands the server executed per job, redis.call inside
scripts included, do not):

  enqueue      single enqueue: one job per call (the call a web request makes)
  claim1       claim(count=1) + ack, one job at a time, one store
  claim100     claim(count=100) + ack_many, one store
  worker       a worker process with its default settings draining the queue (filled with
               single enqueues while paused, before the worker starts; measured from resume
               to the last ack)
  life         enqueue + worker: one job's whole life, as the peer table reports it

    python bench/bench_server_cpu.py [--jobs 5000] [--rounds 3] [--only enqueue,claim1]
        [--url redis://...] [--events]

--events turns each queue's event stream on first (docs/events.md): the difference with a
run without it is the stream's cost per job.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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
)
from _server import bench_server

import redisq

SCRIPT = "bench_server_cpu.py"
JOBS, QUICK_JOBS = 5_000, 1_000
ROUNDS = 3
SCENARIOS = ("enqueue", "claim1", "claim100", "worker")
QUEUE = "q"
TASK = "bench.noop"
ROOT = Path(__file__).resolve().parent.parent
#: How often the drain's progress is read (a totals call: a little server CPU of its own).
POLL_S = 0.05
#: A drain that completes nothing for this long is stuck (the run fails).
STALL_S = 30.0

#: A worker process with its default settings: registers the no-op task, runs until SIGTERM.
CHILD = """
import sys, threading, time
import redisq
url, prefix, task, queue = sys.argv[1:5]
app = redisq.App(url, prefix=prefix)
app.task(name=task, queue=queue)(lambda n: None)
worker = redisq.Worker(app)
def ready():
    while not worker.running:
        time.sleep(0.01)
    print("ready", flush=True)
threading.Thread(target=ready, daemon=True).start()
worker.run()
"""


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per scenario ({JOBS:,})")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds ({ROUNDS})")
    p.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"scenarios, comma-separated ({SCENARIOS})"
    )
    p.add_argument(
        "--events", action="store_true", help="turn the queues' event stream on (default off)"
    )
    return p


#: Whether the scenarios' queues have their event stream on (--events).
EVENTS: list[bool] = [False]


def fresh_store(url: str, prefix: str) -> redisq.Store:
    """Connect to a fresh queue, with its event stream on under --events."""
    store = redisq.connect(url, prefix=prefix)
    if EVENTS[0]:
        store.set_events(QUEUE)
    return store


def server_cpu(admin: redis.Redis) -> float:
    """The server's CPU seconds so far (user + system)."""
    info = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


#: Commands the server executed per job in the latest `measured` section (inside scripts too).
COMMANDS: dict[str, float] = {}


def measured(admin: redis.Redis, jobs: int, work: Callable[[], object], label: str = "") -> float:
    """Run `work`; return the server CPU it took, in µs per job.

    With a label, also records the commands the server executed per job (INFO commandstats,
    redis.call inside scripts included) in COMMANDS: a figure the machine's load cannot move.
    """
    if label:
        reset_stats(admin)
    before = server_cpu(admin)
    work()
    cpu = 1e6 * (server_cpu(admin) - before) / jobs
    if label:
        COMMANDS[label] = command_stats(admin).server_commands / jobs
    return cpu


def single_enqueue(store: redisq.Store, jobs: int) -> None:
    """Enqueue `jobs` no-op task jobs one per call."""
    for i in range(jobs):
        store.enqueue(QUEUE, {"args": [i], "kwargs": {}}, name=TASK)


def bulk(store: redisq.Store, jobs: int) -> None:
    """Enqueue `jobs` jobs with enqueue_many, 1,000 per call (untimed setup)."""
    for first in range(0, jobs, 1_000):
        store.enqueue_many(QUEUE, [{"n": i} for i in range(first, min(first + 1_000, jobs))])


def claim_ack(store: redisq.Store, jobs: int, count: int) -> None:
    """Claim `count` at a time and ack them (ack for one, ack_many for more)."""
    done = 0
    while done < jobs:
        claimed = store.claim(QUEUE, worker="bench", count=min(count, jobs - done))
        if not claimed:
            raise RuntimeError(f"the queue ran dry after {done:,} of {jobs:,} jobs")
        if count == 1:
            store.ack(claimed[0])
        else:
            store.ack_many(claimed)
        done += len(claimed)


def worker_drain(url: str, admin: redis.Redis, prefix: str, jobs: int) -> tuple[float, float]:
    """Fill a paused queue with single enqueues, then let a default worker drain it.

    Returns the server CPU µs per job of the enqueues and of the drain.
    """
    store = fresh_store(url, prefix)
    child: subprocess.Popen[str] | None = None
    try:
        store.pause(QUEUE)  # (no worker yet: nothing but the enqueues is measured)
        enqueue_us = measured(admin, jobs, lambda: single_enqueue(store, jobs), "enqueue")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, prefix, TASK, QUEUE],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the worker process did not start")
        time.sleep(0.5)  # the worker settles into its idle wait on the paused queue
        reset_stats(admin)
        before = server_cpu(admin)
        store.resume(QUEUE)
        done, progressed = 0, time.perf_counter()
        while done < jobs:
            time.sleep(POLL_S)
            now, was = time.perf_counter(), done
            done = store.totals(QUEUE)["completed"]
            if done > was:
                progressed = now
            elif now - progressed > STALL_S:
                raise RuntimeError(f"the worker stalled after {done:,} of {jobs:,} jobs")
        drain_us = 1e6 * (server_cpu(admin) - before) / jobs
        # (less the progress reads: one totals script and its commands per poll)
        COMMANDS["worker"] = command_stats(admin).server_commands / jobs
    finally:
        if child is not None:
            child.terminate()
            child.communicate(timeout=30)
        store.close()
    return enqueue_us, drain_us


def one_round(url: str, admin: redis.Redis, jobs: int, only: list[str]) -> dict[str, float]:
    """Measure each scenario once, on fresh queues; return µs per job by scenario."""
    out: dict[str, float] = {}
    for name in only:
        prefix = new_prefix(f"cpu-{name}")
        try:
            if name == "worker":
                out["enqueue (worker run)"], out["worker"] = worker_drain(url, admin, prefix, jobs)
                out["life"] = out["enqueue (worker run)"] + out["worker"]
                continue
            store = fresh_store(url, prefix)
            try:
                if name == "enqueue":
                    out[name] = measured(
                        admin, jobs, functools.partial(single_enqueue, store, jobs), name
                    )
                else:
                    count = 1 if name == "claim1" else 100
                    bulk(store, jobs)
                    out[name] = measured(
                        admin, jobs, functools.partial(claim_ack, store, jobs, count), name
                    )
            finally:
                store.close()
        finally:
            delete_prefix(admin, prefix, private=False)
    return out


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure the server CPU per job of each scenario over several rounds."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    EVENTS[0] = bool(args.events)
    cmd = command_line(
        SCRIPT, {"jobs": jobs, "rounds": args.rounds, "only": ",".join(only)}, args.url
    ) + (" --events" if args.events else "")
    print(f"## Redis server CPU per job, {jobs:,} jobs per scenario\n# {cmd}", flush=True)
    rounds: list[dict[str, float]] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        try:
            print_environment(admin)
            for n in range(args.rounds):
                rounds.append(one_round(server.url, admin, jobs, only))
                print(
                    f"  round {n + 1}: "
                    + ", ".join(f"{k} {v:,.1f}" for k, v in rounds[-1].items())
                    + " µs/job",
                    flush=True,
                )
        finally:
            admin.close()
    figures = []
    for name in rounds[0]:
        values = sorted(r[name] for r in rounds)
        commands = COMMANDS.get(name.split(" ")[0])
        executed = "" if commands is None else f"; {commands:.2f} commands executed per job"
        figures.append(
            Figure(
                f"server CPU per job: {name}",
                f"{statistics.median(values):,.1f} µs median, {values[0]:,.1f} best (range to"
                f" {values[-1]:,.1f}, {len(values)} rounds){executed}",
                command=cmd,
            )
        )
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
