"""Periodic schedules: what driving them costs an idle worker, and a tick across a fleet.

(a) Idle cost: Redis commands per second sent by one idle worker (its queue empty), counted on
    its connections, in three setups: schedules=False (the worker without a schedule driver,
    as before schedules existed), schedules=True on a queue without schedules, and
    schedules=True with a schedule whose next tick is an hour away. The window is long enough
    to hold a full driver wait (60 s): the driver blocks that long when nothing is due.
    Goal: <= 2 commands/s.
(b) Cost of a tick: N in-process workers on one queue with one schedule ticking every
    --every-ms; commands per tick sent by the whole fleet, and the ticks enqueued (each once).

    python bench/bench_schedules.py [--idle-seconds 130] [--workers 5] [--every-ms 1000]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

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

SCRIPT = "bench_schedules.py"
IDLE_S, QUICK_IDLE_S = 130.0, 20.0
TICK_S, QUICK_TICK_S = 20.0, 5.0
GOAL_IDLE = 2.0
QUEUE = "q"
#: Commands a worker sends itself; everything else in commandstats ran inside its scripts.
_CLIENT_COMMANDS = ("bzpopmin", "xread", "evalsha", "eval", "evalsha_ro", "eval_ro", "script|load")


def _sent(counted: int, by_command: dict[str, int]) -> int:
    """What the client sent: its own count, or the server's count of the commands only a
    client sends, whichever is larger (the counting connection misses the script calls the
    transport sends pre-packed)."""
    return max(counted, sum(n for name, n in by_command.items() if name in _CLIENT_COMMANDS))


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--idle-seconds", type=float, default=None, help=f"window of (a) ({IDLE_S})")
    p.add_argument("--tick-seconds", type=float, default=None, help=f"window of (b) ({TICK_S})")
    p.add_argument("--workers", type=int, default=5, help="workers of (b) (5)")
    p.add_argument("--every-ms", type=int, default=1000, help="the interval of (b) (1000)")
    return p


def _workers(url: str, prefix: str, n: int, schedules: bool) -> tuple[list[Any], redisq.App]:
    app = redisq.App(url, prefix=prefix, connection_class=CountingConnection)
    app.task(name="bench.noop", queue=QUEUE)(lambda: None)
    workers = [redisq.Worker(app, handle_signals=False, schedules=schedules) for _ in range(n)]
    for w in workers:
        threading.Thread(target=w.run, daemon=True).start()
    return workers, app


def _stop(workers: list[Any], app: redisq.App) -> None:
    for w in workers:
        w.stop()
    for w in workers:
        w.wait_stopped(20)
    app.close()


def idle(
    url: str, admin: redis.Redis, seconds: float, schedules: bool, with_schedule: bool
) -> tuple[float, dict[str, int]]:
    """Commands/s one idle worker sends for `seconds` (and the server's commandstats)."""
    CountingConnection.sent = 0
    prefix = new_prefix("sched-idle")
    if with_schedule:
        with redisq.connect(url, prefix=prefix) as store:
            store.upsert_schedule("hourly", every_ms=3_600_000, queue=QUEUE)
    workers, app = _workers(url, prefix, 1, schedules)
    try:
        time.sleep(1.0)  # past start-up: first claim, first wait, first pass
        reset_stats(admin)
        before = CountingConnection.sent
        time.sleep(seconds)
        sent = CountingConnection.sent - before
        stats = command_stats(admin)
    finally:
        _stop(workers, app)
        delete_prefix(admin, prefix, private=False)
    return _sent(sent, stats.by_command) / seconds, stats.by_command


def ticks(
    url: str, admin: redis.Redis, seconds: float, n: int, every_ms: int
) -> tuple[float, int, int, dict[str, int]]:
    """Run n workers on one schedule: (commands per tick, ticks due, jobs enqueued)."""
    prefix = new_prefix("sched-tick")
    workers, app = _workers(url, prefix, n, True)
    try:
        time.sleep(1.0)
        with redisq.connect(url, prefix=prefix) as store:
            s = store.upsert_schedule(
                "beat",
                every_ms=every_ms,
                queue=QUEUE,
                name="bench.noop",
                payload={"args": [], "kwargs": {}},
            )
            reset_stats(admin)
            before = CountingConnection.sent
            time.sleep(seconds)
            sent = CountingConnection.sent - before
            stats = command_stats(admin)
            [now] = store.schedules(QUEUE)
            due = (now.next_run_ms or 0) - (s.next_run_ms or 0)
            enqueued = store.totals(QUEUE)["enqueued"]
    finally:
        _stop(workers, app)
        delete_prefix(admin, prefix, private=False)
    ticked = max(1, due // every_ms)
    return _sent(sent, stats.by_command) / ticked, ticked, enqueued, stats.by_command


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure (a) and (b)."""
    idle_s = args.idle_seconds or (QUICK_IDLE_S if args.quick else IDLE_S)
    tick_s = args.tick_seconds or (QUICK_TICK_S if args.quick else TICK_S)
    options = {
        "idle_seconds": idle_s,
        "tick_seconds": tick_s,
        "workers": args.workers,
        "every_ms": args.every_ms,
    }
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## schedules: idle cost and tick cost\n# {cmd}", flush=True)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        try:
            for label, on, with_schedule in (
                ("schedules=False (no driver)", False, False),
                ("schedules=True, queue without schedules", True, False),
                ("schedules=True, one schedule an hour away", True, True),
            ):
                with step(f"idle worker, {label}, {idle_s:g} s"):
                    rate, by_command = idle(server.url, admin, idle_s, on, with_schedule)
                print(f"  {rate:.3f} commands/s; server commandstats {by_command}", flush=True)
                figures.append(
                    Figure(
                        f"(a) idle worker, {label}: commands/s over {idle_s:g} s",
                        f"{rate:.3f}",
                        f"<= {GOAL_IDLE:g}",
                        rate <= GOAL_IDLE,
                        cmd,
                    )
                )
            with step(f"{args.workers} workers, one schedule every {args.every_ms} ms"):
                per_tick, ticked, enqueued, by_command = ticks(
                    server.url, admin, tick_s, args.workers, args.every_ms
                )
            print(
                f"  {per_tick:.1f} commands per tick; {ticked} ticks, {enqueued} jobs;"
                f" server commandstats {by_command}",
                flush=True,
            )
            figures.append(
                Figure(
                    f"(b) {args.workers} workers, one schedule every {args.every_ms} ms:"
                    " commands per tick (whole fleet)",
                    f"{per_tick:.1f} ({ticked} ticks, {enqueued} jobs)",
                    "one job per tick",
                    abs(enqueued - ticked) <= 1,
                    cmd,
                )
            )
        finally:
            admin.close()
    return figures


if __name__ == "__main__":
    raise SystemExit(run_main(parser(), run))
