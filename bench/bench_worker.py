"""Worker runtime figures: drain rate of 1 and 2 worker processes, pickup latency, idle cost.

(a) One worker process drains N no-op task jobs (enqueued first, untimed, while the queue is
    paused; the clock runs from `resume` to the last completion), for several concurrency and
    prefetch settings; the best is the figure. Goal: >= 20,000 jobs/s.
(b) The same with two worker processes on one queue, best setting of (a). Goal: >= 30,000.
    With --processes, every setting runs with each number of processes given instead.
(c) Pickup latency of one idle worker process: enqueue one job at a time and time it from
    the moment the server ran the enqueue (its MONITOR timestamp; the worker's handler reads
    the same wall clock) to the handler's start. Also shown: from the enqueue call (so its
    own request and reply count: an upper bound) and from its return (a lower bound).
    Goals: p50 <= 1 ms, p99 <= 5 ms.
(d) Idle cost: Redis commands per second sent by one idle worker (counted on its connections,
    and INFO commandstats without the INFO calls). Goal: <= 2 commands/s.

    python bench/bench_worker.py [--jobs 20000] [--configs default,4:500,...] [--processes 1,2]
        [--pickups 500] [--idle-seconds 10] [--url redis://...]

A setting is CONCURRENCY:PREFETCH; either may be "-" (the Worker's default), and "default"
stands for "-:-", the Worker as users run it (`redisq worker` without options). An explicit
setting also passes idle_wait_ms=50, as this script always did; "default" passes nothing.
`--jobs 0`, `--pickups 0` and `--idle-seconds 0` leave out (a) and (b), (c), (d).

The worker processes run the redisq that this script imported, so that
``PYTHONPATH=/path/to/another/checkout python bench/bench_worker.py`` measures that checkout
(the version it reports is printed first).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

import redis
from _common import (
    Config,
    CountingConnection,
    Figure,
    base_parser,
    command_line,
    command_stats,
    delete_prefix,
    fmt_rate,
    new_prefix,
    parse_configs,
    print_environment,
    reset_stats,
    run_main,
    step,
)
from _server import bench_server
from _workers import describe_code, spawn

import redisq
from redisq._core.scripts import script

SCRIPT = "bench_worker.py"
JOBS, QUICK_JOBS = 20_000, 5_000
#: concurrency:prefetch settings tried for (a) ("default": the Worker's defaults).
CONFIGS = "default,1:0,10:0,10:100,10:500,50:500,4:500"
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

#: A worker process: registers the no-op task, runs a Worker until SIGTERM, prints its metrics;
#: the CPU time it printed when ready and at the end gives its CPU spent working (no start-up).
CHILD = """
import sys, threading, time, json
import redisq
url, prefix, task, queue, options = sys.argv[1:6]
app = redisq.App(url, prefix=prefix)
app.task(name=task, queue=queue)(lambda n: None)
worker = redisq.Worker(app, **json.loads(options))
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
    p.add_argument(
        "--jobs", type=int, default=None, help=f"jobs per drain, 0: skip (a) and (b) ({JOBS:,})"
    )
    p.add_argument(
        "--configs",
        default=CONFIGS,
        help="concurrency:prefetch settings, comma-separated; '-' for the Worker's default,"
        f" 'default' for both ({CONFIGS})",
    )
    p.add_argument(
        "--processes",
        default=None,
        help="worker processes per drain, comma-separated, e.g. 1,2: every setting runs with"
        " each (default: every setting with 1, then the best of them with 2)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="drain every setting this many times, interleaved; the figures give the median"
        " and the range (1)",
    )
    p.add_argument(
        "--pickups", type=int, default=None, help=f"jobs timed for (c), 0: skip ({PICKUPS})"
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help=f"idle time counted for (d), 0: skip ({IDLE_S})",
    )
    return p


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
    url: str, admin: redis.Redis, jobs: int, processes: int, options: dict[str, int]
) -> dict[str, Any]:
    """Time `processes` worker processes draining `jobs` jobs; return rate and CPU figures."""
    prefix = new_prefix("worker")
    store = redisq.connect(url, prefix=prefix)
    children: list[subprocess.Popen[str]] = []
    try:
        store.pause(QUEUE)
        fill(store, jobs)
        ready_cpu = 0.0
        for _ in range(processes):
            children.append(spawn(CHILD, url, prefix, TASK, QUEUE, json.dumps(options)))
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
    child = spawn(PICKUP_CHILD, url, prefix, TASK, QUEUE)
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
    jobs = (QUICK_JOBS if args.quick else JOBS) if args.jobs is None else args.jobs
    configs = parse_configs(args.configs, {"idle_wait_ms": 50})
    pickups = (QUICK_PICKUPS if args.quick else PICKUPS) if args.pickups is None else args.pickups
    idle_s = (
        (QUICK_IDLE_S if args.quick else IDLE_S) if args.idle_seconds is None else args.idle_seconds
    )
    counts = [int(n) for n in args.processes.split(",")] if args.processes else None
    options: dict[str, Any] = {"jobs": jobs, "configs": args.configs}
    if counts:
        options["processes"] = args.processes
    if args.rounds > 1:
        options["rounds"] = args.rounds
    options.update(pickups=pickups, idle_seconds=idle_s)
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## worker runtime: drain {jobs:,} no-op jobs, pickup, idle\n# {cmd}", flush=True)
    print(f"# {describe_code()}", flush=True)
    figures: list[Figure] = []
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    picked: dict[str, list[float]] | None = None
    idled: tuple[float, float] | None = None
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        try:
            for _ in range(args.rounds if jobs else 0):
                for n in counts or [1]:
                    for config in configs:
                        r = _drain_step(server.url, admin, jobs, n, config)
                        runs.setdefault((n, config.label), []).append(r)
            if counts is None and jobs:
                best = max(configs, key=lambda c: _median(runs[1, c.label])["rate"])
                for _ in range(args.rounds):
                    r = _drain_step(server.url, admin, jobs, 2, best)
                    runs.setdefault((2, best.label), []).append(r)
            if pickups:
                with step(f"pickup latency, {pickups} jobs"):
                    picked = pickup(server.url, admin, pickups)
            if idle_s:
                with step(f"idle worker, {idle_s:g} s"):
                    sent_s, executed_s, by_command = idle(server.url, admin, idle_s)
                idled = sent_s, executed_s
                print(f"  idle: {sent_s:.2f} sent/s, server commandstats {by_command}", flush=True)
        finally:
            admin.close()
    results = {key: _median(found) for key, found in runs.items()}
    for n in sorted({n for n, _ in results}):
        best_rate = max(r["rate"] for (m, _), r in results.items() if m == n)
        goal = GOAL_ONE if n == 1 else GOAL_TWO
        for (m, label), r in results.items():
            if m != n:
                continue
            mark = " (best)" if r["rate"] == best_rate and len(configs) > 1 else ""
            split = f"split {r['completed']}; " if n > 1 else ""
            rates = sorted(found["rate"] for found in runs[m, label])
            spread = (
                f" (median of {len(rates)}: {rates[0]:,.0f}-{rates[-1]:,.0f})"
                if len(rates) > 1
                else ""
            )
            config = next(c for c in configs if c.label == label)
            figures.append(
                Figure(
                    f"({'a' if n == 1 else 'b'}) {n} worker process{'es' if n > 1 else ''},"
                    f" {label}{mark}",
                    f"{fmt_rate(r['rate'], 'jobs/s')}{spread} ({split}CPU per job: worker"
                    f" {r['worker_us']:,.0f} µs + server {r['server_us']:,.0f} µs;"
                    f" {100 * r['rate'] / best_rate:.0f}% of the best)",
                    f">= {goal:,.0f} jobs/s" if n <= 2 else "",
                    r["rate"] >= goal if n <= 2 else None,
                    command_line(
                        SCRIPT,
                        {"jobs": jobs, "configs": _config_text(config), "processes": n},
                        args.url,
                    ),
                )
            )
    figures += _default_figures(runs, results, configs, cmd)
    if picked is not None:
        figures += _pickup_figures(picked, pickups, cmd)
    if idled is not None:
        sent_s, executed_s = idled
        figures.append(
            Figure(
                f"(d) idle worker: commands per second over {idle_s:g} s",
                f"{sent_s:.2f} sent/s ({executed_s:.2f}/s executed by the server, incl. in"
                " scripts)",
                f"<= {GOAL_IDLE:g} /s",
                sent_s <= GOAL_IDLE,
                cmd,
            )
        )
    return figures


def _default_figures(
    runs: dict[tuple[int, str], list[dict[str, Any]]],
    results: dict[tuple[int, str], dict[str, Any]],
    configs: list[Config],
    cmd: str,
) -> list[Figure]:
    """The defaults beside the best tuned setting (the other setting with the highest
    median), per number of processes: the ratio of their medians, and the median of the
    ratios within each round (the two drains of a round ran a few seconds apart, so a
    busy spell of the machine weighs on both)."""
    figures = []
    default = next((c.label for c in configs if not c.options), None)
    if default is None:
        return figures
    for n in sorted({n for n, _ in results}):
        tuned = [
            (r["rate"], label) for (m, label), r in results.items() if m == n and label != default
        ]
        if (n, default) not in results or not tuned:
            continue
        best_rate, best = max(tuned)
        ratios = sorted(
            d["rate"] / t["rate"] for d, t in zip(runs[n, default], runs[n, best], strict=False)
        )
        ratio = results[n, default]["rate"] / best_rate
        paired = ratios[(len(ratios) - 1) // 2]
        figures.append(
            Figure(
                f"({'a' if n == 1 else 'b'}) {n} worker process{'es' if n > 1 else ''}: defaults"
                f" / best tuned ({best})",
                f"{100 * ratio:.0f}% (medians); per round: median {100 * paired:.0f}%"
                f" ({100 * ratios[0]:.0f}-{100 * ratios[-1]:.0f}% over {len(ratios)})",
                ">= 90%",
                min(ratio, paired) >= 0.9,
                cmd,
            )
        )
    return figures


def _median(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one of an even count)."""
    ordered = sorted(found, key=lambda r: r["rate"])
    return ordered[(len(ordered) - 1) // 2]


def _config_text(config: Config) -> str:
    if not config.options:
        return "default"
    c, p = config.options.get("concurrency", "-"), config.options.get("prefetch", "-")
    return f"{c}:{p}"


def _drain_step(
    url: str, admin: redis.Redis, jobs: int, processes: int, config: Config
) -> dict[str, Any]:
    plural = "es" if processes > 1 else ""
    with step(f"{processes} process{plural}, {config.label}"):
        r = drain(url, admin, jobs, processes, config.options)
    split = f"; per process {r['completed']}" if processes > 1 else ""
    print(
        f"  {r['rate']:,.0f} jobs/s{split}; CPU per job: worker {r['worker_us']:,.0f} µs"
        f" + server {r['server_us']:,.0f} µs",
        flush=True,
    )
    return r


def _pickup_figures(picked: dict[str, list[float]], pickups: int, cmd: str) -> list[Figure]:
    stored, from_call = picked["from_stored"], picked["from_call"]
    # The goal's measure: from the job stored on the server (MONITOR's timestamp of the
    # enqueue); without MONITOR, from the enqueue call (an upper bound).
    main = stored or from_call
    p50, p99 = percentile(main, 0.5), percentile(main, 0.99)
    since = "the enqueue run by the server (MONITOR)" if stored else "the enqueue call"
    return [
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
    ]


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
