"""Cancel of a running job: how soon its handler notices, and what the signal costs.

(a) Cancel-to-handler-notice latency: one in-process worker runs one job at a time whose
    handler waits to be cancelled; the bench calls `JobRef.cancel()` and times, on one
    monotonic clock, from just before that call to the handler's notice: a sync handler
    waiting on ``ctx.cancelled_event``, an async one whose ``await`` is cancelled (or, where
    the worker does not cancel tasks, which sees ``ctx.cancelled``). p50 / p99 / max per
    pool and handler kind, with the default 30 s lease (a worker without the cancel signal
    notices at the next renewal, every lease / 3: expect seconds then; pass a smaller
    --samples for such a run).
(b) What a queue where nobody cancels pays: Redis commands per job over --jobs no-op jobs
    through one worker (INFO commandstats, commands run inside scripts included), and the
    commands per second of that worker idle over --idle-seconds (at least 60 s to hold one
    of the cancel watch's blocking reads).

    python bench/bench_cancel.py [--samples 200] [--jobs 5000] [--idle-seconds 130]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

import redis
from _common import (
    CountingConnection,
    Figure,
    base_parser,
    command_line,
    command_stats,
    delete_prefix,
    new_prefix,
    print_environment,
    reset_stats,
    run_main,
    step,
)
from _server import bench_server

import redisq

SCRIPT = "bench_cancel.py"
SAMPLES, QUICK_SAMPLES = 200, 30
JOBS, QUICK_JOBS = 5000, 1000
IDLE_S, QUICK_IDLE_S = 130.0, 20.0
GOAL_NOTICE_MS = 100.0
GOAL_IDLE = 2.0
QUEUE = "q"
#: Commands a worker sends itself; everything else in commandstats ran inside its scripts.
_CLIENT_COMMANDS = (
    "bzpopmin",
    "xread",
    "xrevrange",
    "evalsha",
    "eval",
    "evalsha_ro",
    "eval_ro",
    "script|load",
)


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--samples", type=int, default=None, help=f"cancels per case ({SAMPLES})")
    p.add_argument("--jobs", type=int, default=None, help=f"no-op jobs of (b) ({JOBS})")
    p.add_argument("--idle-seconds", type=float, default=None, help=f"idle window ({IDLE_S})")
    p.add_argument("--lease-ms", type=int, default=30_000, help="the jobs' lease (30000)")
    return p


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(url: str, pool: str, kind: str, samples: int, lease_ms: int) -> list[float]:
    """Cancel `samples` running jobs one after the other; the notice latencies (ms)."""
    prefix = new_prefix("cancel")
    app = redisq.App(url, prefix=prefix)
    started = threading.Event()
    noticed: list[float] = []

    @app.task(name="bench.wait_sync", queue=QUEUE, lease_ms=lease_ms)
    def wait_sync(ctx: redisq.Context) -> None:
        started.set()
        if ctx.cancelled_event.wait(120):
            noticed.append(time.monotonic())

    @app.task(name="bench.wait_async", queue=QUEUE, lease_ms=lease_ms)
    async def wait_async(ctx: redisq.Context) -> None:
        started.set()
        try:
            # Cancelled at the sleep where the worker cancels tasks; else the flag is seen
            # within a millisecond of being set.
            while True:  # a threading.Event behind the flag: polled, not awaited
                if ctx.cancelled:
                    break
                await asyncio.sleep(0.001)
            noticed.append(time.monotonic())
        except asyncio.CancelledError:
            noticed.append(time.monotonic())
            raise

    task = wait_sync if kind == "sync" else wait_async
    worker = redisq.Worker(app, pool=pool, handle_signals=False, schedules=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    out: list[float] = []
    try:
        for _ in range(samples):
            started.clear()
            before = len(noticed)
            ref = task.enqueue()
            if not started.wait(30):
                raise RuntimeError("the handler did not start within 30 s")
            sent = time.monotonic()
            if not ref.cancel():
                raise RuntimeError(f"job {ref.id} was not cancelled")
            deadline = sent + lease_ms / 1000 + 5
            while len(noticed) == before:
                if time.monotonic() > deadline:
                    raise RuntimeError("the handler never noticed the cancel")
                time.sleep(0.0002)
            out.append((noticed[-1] - sent) * 1000)
    finally:
        worker.stop(grace=False)
        thread.join(30)
        app.close()
    return out


def per_job(url: str, admin: redis.Redis, jobs: int) -> float:
    """Redis commands per job (enqueue_many, claim, ack, and what runs inside the scripts)
    for `jobs` no-op jobs through one worker."""
    prefix = new_prefix("cancel-free")
    app = redisq.App(url, prefix=prefix)
    noop = app.task(name="bench.noop", queue=QUEUE)(lambda: None)
    worker = redisq.Worker(app, handle_signals=False, schedules=False)
    try:
        reset_stats(admin)
        noop.enqueue_many([((), {}) for _ in range(jobs)])
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 300
        while worker.metrics.completed < jobs:  # counted in process: no Redis command
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs did not complete within 300 s")
            time.sleep(0.05)
        stats = command_stats(admin)
    finally:
        worker.stop()
        worker.wait_stopped(30)
        app.close()
        delete_prefix(admin, prefix, private=False)
    return sum(stats.by_command.values()) / jobs


def idle(url: str, admin: redis.Redis, seconds: float) -> tuple[float, dict[str, int]]:
    """Commands/s one idle worker (default options but schedules=False) sends."""
    CountingConnection.sent = 0
    prefix = new_prefix("cancel-idle")
    app = redisq.App(url, prefix=prefix, connection_class=CountingConnection)
    app.task(name="bench.noop", queue=QUEUE)(lambda: None)
    worker = redisq.Worker(app, handle_signals=False, schedules=False)
    threading.Thread(target=worker.run, daemon=True).start()
    try:
        time.sleep(1.0)  # past start-up
        reset_stats(admin)
        before = CountingConnection.sent
        time.sleep(seconds)
        sent = CountingConnection.sent - before
        stats = command_stats(admin)
    finally:
        worker.stop()
        worker.wait_stopped(30)
        app.close()
        delete_prefix(admin, prefix, private=False)
    by_server = sum(n for name, n in stats.by_command.items() if name in _CLIENT_COMMANDS)
    return max(sent, by_server) / seconds, stats.by_command


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure (a) and (b)."""
    samples = args.samples or (QUICK_SAMPLES if args.quick else SAMPLES)
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    idle_s = args.idle_seconds or (QUICK_IDLE_S if args.quick else IDLE_S)
    options = {
        "samples": samples,
        "jobs": jobs,
        "idle_seconds": idle_s,
        "lease_ms": args.lease_ms,
    }
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## cancel: notice latency and the cost of the signal\n# {cmd}", flush=True)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        try:
            for pool, kind in (("thread", "sync"), ("thread", "async"), ("async", "async")):
                with step(f"{samples} cancels, pool={pool}, {kind} handler"):
                    ms = latency(server.url, pool, kind, samples, args.lease_ms)
                p50, p99 = statistics.median(ms), _percentile(ms, 0.99)
                print(f"  p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(ms):.2f} ms", flush=True)
                figures.append(
                    Figure(
                        f"(a) cancel to handler notice, pool={pool}, {kind} handler,"
                        f" lease {args.lease_ms} ms: p50 / p99 / max over {samples}",
                        f"{p50:.2f} / {p99:.2f} / {max(ms):.2f} ms",
                        f"p99 <= {GOAL_NOTICE_MS:g} ms",
                        p99 <= GOAL_NOTICE_MS,
                        cmd,
                    )
                )
            with step(f"{jobs} no-op jobs through one worker"):
                commands = per_job(server.url, admin, jobs)
            print(f"  {commands:.3f} commands per job", flush=True)
            figures.append(
                Figure(
                    f"(b) Redis commands per no-op job, {jobs} jobs (no cancels)",
                    f"{commands:.3f}",
                    "unchanged",
                    None,
                    cmd,
                )
            )
            with step(f"idle worker, {idle_s:g} s"):
                rate, by_command = idle(server.url, admin, idle_s)
            print(f"  {rate:.3f} commands/s; server commandstats {by_command}", flush=True)
            figures.append(
                Figure(
                    f"(b) idle worker (schedules=False): commands/s over {idle_s:g} s",
                    f"{rate:.3f}",
                    f"<= {GOAL_IDLE:g}",
                    rate <= GOAL_IDLE,
                    cmd,
                )
            )
        finally:
            admin.close()
    return figures


if __name__ == "__main__":
    raise SystemExit(run_main(parser(), run))
