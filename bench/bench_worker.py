"""Worker runtime figures: drain rate of 1 and 2 worker processes, pickup latency, idle cost.

(a) One worker process drains N no-op task jobs (enqueued first, untimed, while the queue is
    paused; the clock runs from `resume` to the last completion), for several concurrency and
    prefetch settings; the best is the figure. Goal: >= 20,000 jobs/s.
(b) The same with two worker processes on one queue, best setting of (a). Goal: >= 30,000.
(c) Pickup latency of one idle worker process: enqueue one job at a time and time it from
    the moment the server ran the enqueue (its MONITOR timestamp; the worker's handler reads
    the same wall clock) to the handler's start. Also shown: from the enqueue call (so its
    own request and reply count: an upper bound) and from its return (a lower bound).
    Goals: p50 <= 1 ms, p99 <= 5 ms.
(d) Idle cost: Redis commands per second sent by one idle worker (counted on its connections,
    and INFO commandstats without the INFO calls). Goal: <= 2 commands/s.

    python bench/bench_worker.py [--jobs 20000] [--configs 10:0,10:100,...] [--url redis://...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
from _common import (
    CountingConnection,
    Figure,
    base_parser,
    command_line,
    command_stats,
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
from redisq._core.scripts import script

SCRIPT = "bench_worker.py"
JOBS, QUICK_JOBS = 20_000, 5_000
#: concurrency:prefetch settings tried for (a); their sum stays <= 1,000 (see the report:
#: the fetcher claims concurrency + prefetch at once, and claim takes at most 1,000).
CONFIGS = "1:0,10:0,10:100,10:500,50:500,4:500"
PICKUPS, QUICK_PICKUPS = 500, 100
IDLE_S, QUICK_IDLE_S = 10.0, 3.0
GOAL_ONE, GOAL_TWO = 20_000.0, 30_000.0
GOAL_P50_MS, GOAL_P99_MS = 1.0, 5.0
GOAL_IDLE = 2.0
#: Commands a worker sends itself; everything else in commandstats ran inside its scripts.
_CLIENT_COMMANDS = ("bzpopmin", "evalsha", "eval", "evalsha_ro", "eval_ro", "script|load")
#: A drain that completes nothing for this long is stuck (the run fails).
STALL_S = 30.0
QUEUE = "q"
TASK = "bench.noop"
ROOT = Path(__file__).resolve().parent.parent

#: A worker process: registers the no-op task, runs a Worker until SIGTERM, prints its metrics;
#: the CPU time it printed when ready and at the end gives its CPU spent working (no start-up).
CHILD = """
import sys, threading, time, json
import redisq
url, prefix, task, queue = sys.argv[1:5]
concurrency, prefetch = int(sys.argv[5]), int(sys.argv[6])
app = redisq.App(url, prefix=prefix)
app.task(name=task, queue=queue)(lambda n: None)
worker = redisq.Worker(app, concurrency=concurrency, prefetch=prefetch, idle_wait_ms=50)
def ready():
    while not worker.running:
        time.sleep(0.01)
    print("ready", time.process_time(), flush=True)
threading.Thread(target=ready, daemon=True).start()
worker.run()
print(json.dumps({**worker.metrics.snapshot(), "cpu": time.process_time()}), flush=True)
"""


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per drain ({JOBS:,})")
    p.add_argument(
        "--configs",
        default=CONFIGS,
        help=f"concurrency:prefetch settings for one process, comma-separated ({CONFIGS})",
    )
    p.add_argument("--pickups", type=int, default=None, help=f"jobs timed for (c) ({PICKUPS})")
    p.add_argument(
        "--idle-seconds", type=float, default=None, help=f"idle time counted for (d) ({IDLE_S})"
    )
    return p


def parse_configs(text: str) -> list[tuple[int, int]]:
    """Parse ``"10:0,10:100"`` into [(10, 0), (10, 100)]."""
    configs = []
    for item in text.split(","):
        concurrency, _, prefetch = item.strip().partition(":")
        configs.append((int(concurrency), int(prefetch or 0)))
    return configs


def fill(store: redisq.Store, jobs: int) -> None:
    """Enqueue `jobs` no-op task jobs with enqueue_many, 1,000 per call."""
    for first in range(0, jobs, 1_000):
        specs = [
            redisq.Spec({"args": [i], "kwargs": {}}, name=TASK)
            for i in range(first, min(first + 1_000, jobs))
        ]
        store.enqueue_many(QUEUE, specs)


def _server_cpu(admin: redis.Redis) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drain(
    url: str, admin: redis.Redis, jobs: int, processes: int, concurrency: int, prefetch: int
) -> dict[str, Any]:
    """Time `processes` worker processes draining `jobs` jobs; return rate and CPU figures."""
    prefix = new_prefix("worker")
    store = redisq.connect(url, prefix=prefix)
    children: list[subprocess.Popen[str]] = []
    try:
        store.pause(QUEUE)
        fill(store, jobs)
        ready_cpu = 0.0
        numbers = [str(concurrency), str(prefetch)]
        for _ in range(processes):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, url, prefix, TASK, QUEUE, *numbers],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None
            word, _, cpu = child.stdout.readline().partition(" ")
            if word != "ready":
                raise RuntimeError("a worker process did not start")
            ready_cpu += float(cpu)
        time.sleep(0.5)  # let each worker connect and block on the paused queue
        server_before = _server_cpu(admin)
        started = time.perf_counter()
        store.resume(QUEUE)
        done, progressed = 0, started
        while done < jobs:
            time.sleep(0.002)
            now, was = time.perf_counter(), done
            done = store.totals(QUEUE)["completed"]
            if done > was:
                progressed = now
            elif now - progressed > STALL_S:
                raise RuntimeError(f"the workers stalled after {done:,} of {jobs:,} jobs")
        elapsed = time.perf_counter() - started
        server_cpu = _server_cpu(admin) - server_before
        snapshots = []
        for child in children:
            child.terminate()
            out, _ = child.communicate(timeout=30)
            snapshots.append(json.loads(out.strip().splitlines()[-1]))
        children_cpu = sum(s["cpu"] for s in snapshots) - ready_cpu
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
        store.close()
        delete_prefix(admin, prefix, private=False)
    return {
        "rate": jobs / elapsed,
        "seconds": elapsed,
        "server_us": 1e6 * server_cpu / jobs,
        "worker_us": 1e6 * children_cpu / jobs,
        "completed": [s["completed"] for s in snapshots],
    }


#: The pickup worker: its handler stores when it started (time.perf_counter, CLOCK_MONOTONIC on
#: Linux, the same clock in every process of the machine) as the job's result.
PICKUP_CHILD = """
import sys, time
import redisq
url, prefix, task, queue = sys.argv[1:5]
app = redisq.App(url, prefix=prefix)
app.task(name=task, queue=queue, store_result=True)(lambda n: (time.perf_counter(), time.time()))
worker = redisq.Worker(app)
print("ready", flush=True)
worker.run()
"""


def pickup(url: str, admin: redis.Redis, count: int) -> dict[str, list[float]]:
    """Enqueue `count` jobs one at a time to an idle worker process; timings in ms.

    Returns, per job, the time to the handler's start in the worker process:
    - "from_stored": from the moment the server ran the enqueue (its MONITOR timestamp; the
      server and the worker read the same wall clock; empty if MONITOR is refused);
    - "from_call": from the enqueue call here (the same monotonic clock), so it includes the
      enqueue's own request and reply: an upper bound;
    - "from_return": from the call's return: a lower bound;
    and "calls": the durations of the enqueue calls themselves.
    """
    prefix = new_prefix("pickup")
    app = redisq.App(url, prefix=prefix)
    noop = app.task(name=TASK, queue=QUEUE, store_result=True)(lambda n: None)
    child = subprocess.Popen(
        [sys.executable, "-c", PICKUP_CHILD, url, prefix, TASK, QUEUE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    out: dict[str, list[float]] = {"from_call": [], "from_return": [], "calls": []}
    walls: list[float] = []
    stamps = _EnqueueStamps(url)
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the pickup worker did not start")
        noop.enqueue(-1).result(timeout=10)  # warm-up: connections open, scripts loaded
        stamps.start()
        for n in range(count):
            time.sleep(0.005)  # the worker is idle again: blocked on Redis
            called = time.perf_counter()
            ref = noop.enqueue(n)
            returned = time.perf_counter()
            out["calls"].append(1000 * (returned - called))
            started, wall = ref.result(timeout=10)
            out["from_call"].append(1000 * (started - called))
            out["from_return"].append(1000 * (started - returned))
            walls.append(wall)
    finally:
        times = stamps.stop(admin)
        child.terminate()
        child.wait(30)
        app.close()
        delete_prefix(admin, prefix, private=False)
    out["from_stored"] = (
        [1000 * (w - t) for w, t in zip(walls, times, strict=True)] if len(times) == count else []
    )
    return out


class _EnqueueStamps:
    """Server timestamps of the enqueue scripts run while it listens (MONITOR).

    The monitor stream is read raw into memory and parsed only at `stop`: parsing each line
    as it comes (redis-py's monitor) would put this process's CPU beside the worker's at
    the very moments being timed, on a machine with few cores. (MONITOR still costs the
    server some time per command, which the figure keeps: it errs on the slow side.)
    """

    _STOP = "redisq-bench-monitor-stop"

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._sha = script("enqueue").sha
        self._chunks: list[bytes] = []
        self._refused = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _listen(self) -> None:
        conn = self._client.connection_pool.get_connection()
        try:
            conn.send_command("MONITOR")
            conn.read_response()
        except redis.RedisError:
            self._refused = True  # MONITOR refused: no server timestamps
            self._ready.set()
            return
        self._ready.set()
        sock, stop, tail = conn._sock, self._STOP.encode(), b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            self._chunks.append(chunk)
            if stop in tail + chunk:
                return
            tail = chunk[-len(stop) :]

    def stop(self, admin: redis.Redis) -> list[float]:
        if self._thread.is_alive():
            admin.echo(self._STOP)
            self._thread.join(10)
        self._client.close()
        if self._refused:
            return []
        # Lines read '+<seconds>.<micros> [<db> <client>] "EVALSHA" "<sha>" ...'.
        mark = f'"EVALSHA" "{self._sha}"'.encode()
        times = []
        for line in b"".join(self._chunks).split(b"\r\n"):
            if mark in line:
                times.append(float(line[1 : line.index(b" ")]))
        return times


def idle(url: str, admin: redis.Redis, seconds: float) -> tuple[float, float, dict[str, int]]:
    """Count what one idle worker sends for `seconds`: (sent/s, executed/s, by command)."""
    prefix = new_prefix("idle")
    app = redisq.App(url, prefix=prefix, connection_class=CountingConnection)
    app.task(name=TASK, queue=QUEUE)(lambda n: None)
    worker = redisq.Worker(app, handle_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # past start-up: first claim, first wait
        reset_stats(admin)
        before = CountingConnection.sent
        time.sleep(seconds)
        sent = CountingConnection.sent - before
        stats = command_stats(admin)  # INFO and CONFIG are left out (the benchmark's own)
    finally:
        worker.stop()
        worker.wait_stopped(10)
        app.close()
        delete_prefix(admin, prefix, private=False)
    # What the client sent, from the server's side: the blocking wait and the script calls
    # (the other commands in commandstats run inside the scripts). The counting connection
    # misses the script calls, which the transport sends pre-packed.
    top = sum(n for name, n in stats.by_command.items() if name in _CLIENT_COMMANDS)
    return max(sent, top) / seconds, stats.server_commands / seconds, stats.by_command


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure the worker figures (a) to (d)."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    configs = parse_configs(args.configs)
    pickups = args.pickups or (QUICK_PICKUPS if args.quick else PICKUPS)
    idle_s = args.idle_seconds or (QUICK_IDLE_S if args.quick else IDLE_S)
    cmd = command_line(
        SCRIPT,
        {"jobs": jobs, "configs": args.configs, "pickups": pickups, "idle_seconds": idle_s},
        args.url,
    )
    print(f"## worker runtime: drain {jobs:,} no-op jobs, pickup, idle\n# {cmd}", flush=True)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        try:
            results: dict[tuple[int, int], dict[str, Any]] = {}
            for concurrency, prefetch in configs:
                with step(f"1 process, concurrency {concurrency}, prefetch {prefetch}"):
                    r = drain(server.url, admin, jobs, 1, concurrency, prefetch)
                results[concurrency, prefetch] = r
                print(
                    f"  {r['rate']:,.0f} jobs/s; CPU per job: worker {r['worker_us']:,.0f} µs"
                    f" + server {r['server_us']:,.0f} µs",
                    flush=True,
                )
            (c_best, p_best), _ = max(results.items(), key=lambda kv: kv[1]["rate"])
            with step(f"2 processes, concurrency {c_best}, prefetch {p_best}"):
                two = drain(server.url, admin, jobs, 2, c_best, p_best)
            print(
                f"  {two['rate']:,.0f} jobs/s; per process {two['completed']}; CPU per job:"
                f" workers {two['worker_us']:,.0f} µs + server {two['server_us']:,.0f} µs",
                flush=True,
            )
            with step(f"pickup latency, {pickups} jobs"):
                picked = pickup(server.url, admin, pickups)
            with step(f"idle worker, {idle_s:g} s"):
                sent_s, executed_s, by_command = idle(server.url, admin, idle_s)
            print(f"  idle: {sent_s:.2f} sent/s, server commandstats {by_command}", flush=True)
        finally:
            admin.close()
    for (concurrency, prefetch), r in results.items():
        best_mark = " (best)" if (concurrency, prefetch) == (c_best, p_best) else ""
        figures.append(
            Figure(
                f"(a) 1 worker process, concurrency {concurrency}, prefetch {prefetch}{best_mark}",
                f"{fmt_rate(r['rate'], 'jobs/s')} (CPU per job: worker {r['worker_us']:,.0f} µs"
                f" + server {r['server_us']:,.0f} µs)",
                f">= {GOAL_ONE:,.0f} jobs/s",
                r["rate"] >= GOAL_ONE,
                command_line(
                    SCRIPT, {"jobs": jobs, "configs": f"{concurrency}:{prefetch}"}, args.url
                ),
            )
        )
    stored, from_call = picked["from_stored"], picked["from_call"]
    # The goal's measure: from the job stored on the server (MONITOR's timestamp of the
    # enqueue); without MONITOR, from the enqueue call (an upper bound).
    main = stored or from_call
    p50, p99 = percentile(main, 0.5), percentile(main, 0.99)
    since = "the enqueue run by the server (MONITOR)" if stored else "the enqueue call"
    figures += [
        Figure(
            f"(b) 2 worker processes, concurrency {c_best}, prefetch {p_best}",
            f"{fmt_rate(two['rate'], 'jobs/s')} (split {two['completed']}; CPU per job: workers"
            f" {two['worker_us']:,.0f} µs + server {two['server_us']:,.0f} µs)",
            f">= {GOAL_TWO:,.0f} jobs/s",
            two["rate"] >= GOAL_TWO,
            cmd,
        ),
        Figure(
            f"(c) pickup latency p50, idle worker process, {pickups} jobs, from {since} to the"
            " handler's start",
            f"{p50:.2f} ms",
            f"<= {GOAL_P50_MS:g} ms",
            p50 <= GOAL_P50_MS,
            cmd,
        ),
        Figure(
            "(c) pickup latency p99",
            f"{p99:.2f} ms (max {max(main):.2f} ms)",
            f"<= {GOAL_P99_MS:g} ms",
            p99 <= GOAL_P99_MS,
            cmd,
        ),
        Figure(
            "(c) the same from the enqueue call (its own round trip included) / from its return",
            f"p50 {percentile(from_call, 0.5):.2f} / {percentile(picked['from_return'], 0.5):.2f}"
            f" ms (the enqueue call alone: p50 {percentile(picked['calls'], 0.5):.2f} ms)",
            "",
            None,
            cmd,
        ),
        Figure(
            f"(d) idle worker: commands per second over {idle_s:g} s",
            f"{sent_s:.2f} sent/s ({executed_s:.2f}/s executed by the server, incl. in scripts)",
            f"<= {GOAL_IDLE:g} /s",
            sent_s <= GOAL_IDLE,
            cmd,
        ),
    ]
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
