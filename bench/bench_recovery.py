"""Mass recovery: one worker brings 100,000 expired leases back (issue 9, point 2).

A fleet of workers claimed every job of a queue and died: 100,000 leases expire at once. One
worker (concurrency 8, prefetch 500, the default reaper interval of 10 s) is started, and the
clock runs until no lease of the dead fleet is left: each one went back to ready (and was
claimed again by the worker) or, with --dead (max_attempts=1), to the dead set. Meanwhile
SLOWLOG records every script call slower than --slowlog-us, and the slowest is reported: no
call may block Redis for more than 50 ms. The time until the worker completed every job is
shown too (without --dead). With --work-ms each job takes that long in its handler (a
sleep), so the worker runs jobs far slower than leases expire: recovery then does not wait
for the jobs (the reaper returns leases in batches while the claims take them as they can).

Goals: recovery within 30 s; no script call over 50 ms.

    python bench/bench_recovery.py [--jobs 100000] [--concurrency 8] [--prefetch 500] [--dead]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import redis
from _common import (
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
from redisq._core.scripts import load_all

SCRIPT = "bench_recovery.py"
JOBS, QUICK_JOBS = 100_000, 20_000
QUEUE = "fleet"
TASK = "bench.noop"
#: The dead fleet's lease: long enough that no lease ends while the fleet is still claiming.
FLEET_LEASE_MS = 10_000
GOAL_S = 30.0
GOAL_SLOWEST_MS = 50.0
#: A recovery that moves nothing for this long is stuck (the run fails).
STALL_S = 60.0


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()  # type: ignore[misc]
    return int(seconds) * 1000 + int(micros) // 1000


def slowest_scripts(client: redis.Redis) -> list[tuple[float, str]]:
    """The script calls SLOWLOG kept, slowest first: (ms, script name)."""
    names = {spec.sha: name for name, spec in load_all().items()}
    out: list[tuple[float, str]] = []
    for entry in client.slowlog_get(100_000):  # type: ignore[union-attr]
        command = entry["command"]
        text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
        parts = text.split()
        if parts and parts[0].upper() in ("EVALSHA", "EVAL"):
            name = names.get(parts[1], parts[1][:12]) if len(parts) > 1 else "?"
            out.append((entry["duration"] / 1000, name))
    return sorted(out, reverse=True)


def run(args: argparse.Namespace) -> list[Figure]:
    jobs = QUICK_JOBS if args.quick and args.jobs == JOBS else args.jobs
    options = {
        "jobs": jobs,
        "concurrency": args.concurrency,
        "prefetch": args.prefetch,
        "slowlog_us": args.slowlog_us,
        "work_ms": args.work_ms,
    }
    command = command_line(SCRIPT, options, args.url) + (" --dead" if args.dead else "")
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("recovery")
        try:
            return _measure(server.url, admin, prefix, jobs, args, command)
        finally:
            delete_prefix(admin, prefix, server.private)
            admin.close()


def _measure(
    url: str, admin: redis.Redis, prefix: str, jobs: int, args: argparse.Namespace, command: str
) -> list[Figure]:
    app = redisq.App(url, prefix=prefix)
    completed = threading.Event()
    done = [0]
    lock = threading.Lock()

    work_s = args.work_ms / 1000

    def noop(n: int) -> None:
        if work_s:
            time.sleep(work_s)
        with lock:
            done[0] += 1
            if done[0] >= jobs:
                completed.set()

    app.task(name=TASK, queue=QUEUE)(noop)
    store = app.store
    max_attempts = 1 if args.dead else 3
    with step(f"enqueue {jobs:,} jobs"):
        for start in range(0, jobs, 1_000):
            payloads = [{"args": [n], "kwargs": {}} for n in range(start, min(jobs, start + 1_000))]
            store.enqueue_many(QUEUE, payloads, name=TASK, max_attempts=max_attempts)
    with step("a fleet leases every job, then dies"):
        deadline = 0
        leased = 0
        while leased < jobs:
            got = store.claim(QUEUE, worker="fleet", count=1_000, lease_ms=FLEET_LEASE_MS)
            leased += len(got)
            deadline = max([deadline, *(j.lease_deadline_ms or 0 for j in got)])
        while redis_ms(admin) <= deadline:
            time.sleep(0.05)
    admin.config_set("slowlog-log-slower-than", args.slowlog_us)
    admin.config_set("slowlog-max-len", 100_000)
    admin.slowlog_reset()
    reset_stats(admin)
    leased_key = f"{{{prefix}:{QUEUE}}}:leased"
    worker = redisq.Worker(
        app, concurrency=args.concurrency, prefetch=args.prefetch, handle_signals=False
    )
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    started = time.perf_counter()
    thread.start()
    recovered_s: float | None = None
    last, last_change = jobs, started
    try:
        while True:
            left = int(admin.zcount(leased_key, "-inf", deadline))  # the fleet's leases
            now = time.perf_counter()
            if left != last:
                last, last_change = left, now
            if left == 0 and recovered_s is None:
                recovered_s = now - started
                print(f"  recovered in {recovered_s:.2f} s", flush=True)
            if recovered_s is not None and (args.dead or args.work_ms or completed.is_set()):
                break
            if now - last_change > STALL_S:
                raise SystemExit(f"stuck: {left:,} leases of the fleet left for {STALL_S:.0f} s")
            time.sleep(0.02)
        done_s = time.perf_counter() - started
    finally:
        worker.stop(grace=False)
        thread.join(30)
        app.close()
    stats = command_stats(admin)
    slow = slowest_scripts(admin)
    admin.config_set("slowlog-log-slower-than", 10_000)
    assert recovered_s is not None
    where = "dead set" if args.dead else "ready set (and run by the worker)"
    slowest = (
        f"{slow[0][0]:.1f} ms ({slow[0][1]}); next: "
        + ", ".join(f"{ms:.1f} ms ({name})" for ms, name in slow[1:4])
        if slow
        else f"none over {args.slowlog_us / 1000:g} ms"
    )
    print(
        f"  {stats.script_calls:,} script calls,"
        f" {stats.usec_per_script_call:.0f} us each on average",
        flush=True,
    )
    figures = [
        Figure(
            f"recovery of {jobs:,} expired leases to the {where}: 1 worker, concurrency"
            f" {args.concurrency}, prefetch {args.prefetch}"
            + (f", {args.work_ms} ms per job" if args.work_ms else ""),
            f"{recovered_s:.2f} s ({fmt_rate(jobs / recovered_s, 'leases/s')})",
            f"<= {GOAL_S:g} s",
            recovered_s <= GOAL_S,
            command,
        ),
        Figure(
            "slowest script call during the recovery (SLOWLOG)",
            slowest,
            f"<= {GOAL_SLOWEST_MS:g} ms",
            (slow[0][0] if slow else 0.0) <= GOAL_SLOWEST_MS,
            command,
        ),
    ]
    if not args.dead and not args.work_ms:
        figures.append(
            Figure(
                f"the same worker completes all {jobs:,} jobs",
                f"{done_s:.2f} s ({fmt_rate(jobs / done_s, 'jobs/s')})",
                command=command,
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="expired leases to recover")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument(
        "--dead", action="store_true", help="max_attempts=1: every lease goes to the dead set"
    )
    parser.add_argument(
        "--work-ms", type=float, default=0, help="time each job takes in its handler (a sleep)"
    )
    parser.add_argument(
        "--slowlog-us",
        type=int,
        default=1_000,
        help="SLOWLOG threshold in microseconds (slower script calls are listed)",
    )
    return run_main(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
