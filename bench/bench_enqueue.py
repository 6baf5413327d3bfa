"""Figure 1: single `Store.enqueue` calls per second through one sync client.

Compared with `redis-benchmark -c 1 EVALSHA <sha of 'return 1'> 0` against the same server
(the round-trip ceiling of one connection; goal: redisq reaches >= 60% of it), and with a plain
redis-py `Redis.evalsha` of the same trivial script for reference. A floor shows what the goal
asks of the machine: the commands an enqueue must run (TIME, the meta and job reads, the ready
ZADD, the record and counter HSETs, the wake ZADD) in a bare script with enqueue's arguments,
sent from a raw Python socket with no redisq code at all. Also counts the Redis
commands each enqueue costs (INFO commandstats) and the server time of the enqueue script.

    python bench/bench_enqueue.py [--jobs 20000] [--rounds 3] [--url redis://...]

The rounds are interleaved (redisq, redis-py, redis-benchmark, then again) and the best round
of each is reported, so a burst of other load on the machine skews all three alike. In the same
rounds, the task API's `task.enqueue(i)` (what users call) and `AsyncStore.enqueue` are timed
too (median and range).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import hiredis
import msgpack
import redis
from _common import (
    Figure,
    Meter,
    base_parser,
    best,
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
from _server import BenchServer, bench_server

import redisq

SCRIPT = "bench_enqueue.py"
GOAL_PERCENT = 60.0
JOBS, QUICK_JOBS = 20_000, 3_000
ROUNDS, QUICK_ROUNDS = 3, 2
#: Enqueues of the separate pass that counts the commands sent per job.
COUNTED_JOBS = 1_000
TRIVIAL_SCRIPT = "return 1"
#: The commands a single enqueue must run, with nothing else (the floor's script).
FLOOR_SCRIPT = """
local t = redis.call('TIME')
local m = redis.call('HMGET', KEYS[1], 'schema', 'seq', 'enqueued')
local e = redis.call('HMGET', KEYS[5], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[1], 'seq', ARGV[7], 'enqueued', ARGV[7])
redis.call('ZADD', KEYS[6], 0, 'w')
return {0, 1}
"""


@dataclass(frozen=True, slots=True)
class BenchmarkTool:
    """The redis-benchmark comparison: its command line and the rate of each round."""

    command: str
    rates: list[float]


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"enqueues per round ({JOBS:,})")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds ({ROUNDS})")
    p.add_argument("--requests", type=int, default=20_000, help="redis-benchmark -n (20,000)")
    return p


def _redis_benchmark_args(server: BenchServer, requests: int, sha: str) -> list[str] | None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    args = [binary, "-h", server.host, "-p", str(server.port), "-c", "1", "-n", str(requests)]
    parts = urlsplit(server.url)
    if parts.password:
        args += ["-a", parts.password]
        if parts.username:
            args += ["--user", parts.username]
    return [*args, "--csv", "EVALSHA", sha, "0"]


def _shown(args: list[str], server: BenchServer) -> str:
    """The command line as printed: the binary by name, a password masked."""
    password = urlsplit(server.url).password
    shown = ["redis-benchmark", *("****" if a == password else a for a in args[1:])]
    return shlex.join(shown)


def _run_redis_benchmark(args: list[str]) -> float:
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    rows = list(csv.reader(out.stdout.splitlines()))
    # --csv prints a header ("test","rps",...) and one row per test.
    return float(rows[-1][1])


def _enqueue_round(store: redisq.Store, queue: str, jobs: int, start: int) -> float:
    begin = time.perf_counter()
    for i in range(start, start + jobs):
        store.enqueue(queue, {"n": i})
    return jobs / (time.perf_counter() - begin)


def _task_round(app: redisq.App, jobs: int) -> float:
    task = app.get_task("bench.noop")
    assert task is not None
    begin = time.perf_counter()
    for i in range(jobs):
        task.enqueue(i)
    return jobs / (time.perf_counter() - begin)


def _async_round(url: str, prefix: str, jobs: int) -> float:
    async def main() -> float:
        store = redisq.connect_async(url, prefix=prefix)
        try:
            await store.enqueue("aq", {"n": -1})  # first use: server check and registration
            begin = time.perf_counter()
            for i in range(jobs):
                await store.enqueue("aq", {"n": i})
            return jobs / (time.perf_counter() - begin)
        finally:
            await store.close()

    return asyncio.run(main())


def _noop(i: int) -> None:
    """The benchmark's task (never run here)."""


def _median_range(rates: list[float]) -> str:
    median = statistics.median(rates)
    return (
        f"{fmt_rate(median, 'jobs/s')} median (rounds {min(rates):,.0f}-{max(rates):,.0f});"
        f" {1e6 / median:.0f} µs/call"
    )


def _evalsha_round(client: redis.Redis, sha: str, calls: int) -> float:
    begin = time.perf_counter()
    for _ in range(calls):
        client.evalsha(sha, 0)
    return calls / (time.perf_counter() - begin)


def _floor_round(server: BenchServer, sha: str, prefix: str, calls: int) -> float:
    """Send the floor script like an enqueue would, from a raw socket (no password support)."""
    tag = f"{{{prefix}:floor}}"
    keys = [f"{tag}:{part}" for part in ("meta", "ready", "scheduled", "unique", "jobs", "wake")]
    with socket.create_connection((server.host, server.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = hiredis.Reader()
        begin = time.perf_counter()
        for i in range(calls):
            job_id = os.urandom(16).hex()
            payload = msgpack.packb({"n": i})
            args = ("", "0", 1, job_id, payload, "", i, 0, "", i, 3, "", "")
            sock.sendall(hiredis.pack_command(("EVALSHA", sha, 6, *keys, *args)))
            reply = reader.gets()
            while reply is False:
                reader.feed(sock.recv(65536))
                reply = reader.gets()
        return calls / (time.perf_counter() - begin)


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure figure 1 and the commands per single enqueue."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    requests = args.requests
    cmd = command_line(SCRIPT, {"jobs": jobs, "rounds": rounds, "requests": requests}, args.url)
    print(f"## single enqueue: {rounds} rounds of {jobs:,} calls\n# {cmd}", flush=True)
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("enqueue")
        store = redisq.connect(server.url, prefix=prefix)
        app = redisq.App(server.url, prefix=prefix)
        app.task(name="bench.noop", queue="tq")(_noop)
        task_rates: list[float] = []
        async_rates: list[float] = []
        plain = redis.Redis.from_url(server.url)
        try:
            app.store.enqueue("tq", {"n": -1})
            sha = str(plain.script_load(TRIVIAL_SCRIPT))
            floor_sha = str(plain.script_load(FLOOR_SCRIPT))
            with_floor = urlsplit(server.url).password is None
            floor: list[float] = []
            store.enqueue("q", {"n": -1})  # first use: server check and queue registration
            plain.evalsha(sha, 0)
            tool_args = _redis_benchmark_args(server, requests, sha)
            tool = None if tool_args is None else BenchmarkTool(_shown(tool_args, server), [])
            ours: list[float] = []
            evalsha: list[float] = []
            meter = Meter(admin)
            script_calls = script_usec = 0
            for r in range(rounds):
                reset_stats(admin)
                with meter:
                    ours.append(_enqueue_round(store, "q", jobs, r * jobs))
                stats = command_stats(admin)
                script_calls += stats.script_calls
                script_usec += stats.script_usec
                task_rates.append(_task_round(app, jobs))
                async_rates.append(_async_round(server.url, prefix, jobs))
                evalsha.append(_evalsha_round(plain, sha, jobs))
                line = (
                    f"  round {r + 1}: enqueue {ours[-1]:,.0f}/s, task API {task_rates[-1]:,.0f}/s,"
                    f" asyncio {async_rates[-1]:,.0f}/s, evalsha {evalsha[-1]:,.0f}/s"
                )
                if with_floor:
                    floor.append(_floor_round(server, floor_sha, prefix, jobs))
                    line += f", floor {floor[-1]:,.0f}/s"
                if tool is not None and tool_args is not None:
                    tool.rates.append(_run_redis_benchmark(tool_args))
                    line += f", redis-benchmark {tool.rates[-1]:,.0f}/s"
                print(line, flush=True)
            counted = min(jobs, COUNTED_JOBS)
            count = count_commands(
                server.url,
                admin,
                prefix,
                counted,
                lambda s: s.enqueue("counted", {"n": -1}),
                lambda s: _enqueue_round(s, "counted", counted, 0),
            )
        finally:
            store.close()
            app.close()
            plain.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()

    rate = best(ours)
    figures = [
        Figure(
            "enqueue: single calls, one sync client (best round)",
            f"{fmt_rate(rate, 'jobs/s')} ({1e6 / rate:.0f} µs/call)",
            command=cmd,
        ),
        Figure(
            "enqueue: single calls, one sync client (median)",
            _median_range(ours),
            command=cmd,
        ),
        Figure(
            "task API: `task.enqueue(i)`, one sync client",
            _median_range(task_rates),
            command=cmd,
        ),
        Figure(
            "asyncio: `AsyncStore.enqueue`, one task",
            _median_range(async_rates),
            command=cmd,
        ),
        Figure(
            "reference: redis-py `Redis.evalsha` of `return 1` (best round)",
            f"{fmt_rate(best(evalsha), 'calls/s')} ({1e6 / best(evalsha):.0f} µs/call)",
            command=cmd,
        ),
    ]
    if tool is None:
        print("redis-benchmark not found on PATH: the comparison was skipped", flush=True)
        figures.append(
            Figure(
                "enqueue as % of redis-benchmark -c 1 EVALSHA",
                "skipped (redis-benchmark not installed)",
                f">= {GOAL_PERCENT:.0f}%",
                None,
                cmd,
            )
        )
    else:
        ceiling = best(tool.rates)
        percent = 100.0 * rate / ceiling
        figures += [
            Figure(
                "reference: redis-benchmark -c 1 EVALSHA `return 1` (best round)",
                f"{fmt_rate(ceiling, 'req/s')} ({1e6 / ceiling:.0f} µs/req)",
                command=tool.command,
            ),
            Figure(
                "enqueue as % of redis-benchmark -c 1 EVALSHA",
                f"{percent:.0f}%",
                f">= {GOAL_PERCENT:.0f}%",
                percent >= GOAL_PERCENT,
                cmd,
            ),
        ]
        if floor:
            lowest = best(floor)
            figures.append(
                Figure(
                    "floor: only the commands an enqueue must run, in a bare script, from a raw"
                    " Python socket (no redisq code), as % of redis-benchmark (best round)",
                    f"{fmt_rate(lowest, 'calls/s')} = {100.0 * lowest / ceiling:.0f}%",
                    command=cmd,
                )
            )
    figures += [
        Figure(
            "commands per job: single enqueue (steady state: a client's first enqueue to a queue"
            " also checks and adds the queue registry)",
            count.per_job(),
            "1 script call per job",
            count.met(counted),
            cmd,
        ),
        Figure(
            "server time per enqueue script call (commandstats)",
            f"{script_usec / max(script_calls, 1):.1f} µs",
            command=cmd,
        ),
        Figure("CPU per single enqueue (all rounds)", meter.cpu_line(jobs * rounds), command=cmd),
    ]
    return figures


if __name__ == "__main__":
    sys.exit(run_main(parser(), run))
