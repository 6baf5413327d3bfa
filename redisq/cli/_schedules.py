"""Periodic schedules: `schedules`, `schedule add|rm|pause|resume|run-now` and `scheduler`."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
from datetime import UTC, datetime
from typing import Any

from redisq._sync.store import Store
from redisq.cli._base import (
    EXIT_OK,
    Commands,
    Context,
    Failed,
    UsageError,
    non_negative_int,
    positive_int,
    table,
)
from redisq.cli._jobs import _json_arg
from redisq.cli._worker import _load, _queues
from redisq.models import Schedule
from redisq.supervisor import LOG_LEVELS, configure_logging

__all__ = ["add_schedule", "add_scheduler", "add_schedules"]


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    at = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    return at.replace("+00:00", "Z")


def _document(s: Schedule) -> dict[str, Any]:
    return dataclasses.asdict(s)


def _timing(s: Schedule) -> str:
    return s.cron if s.cron is not None else f"every {s.every_ms} ms"


def _schedules(args: argparse.Namespace, ctx: Context) -> int:
    found = ctx.store().schedules(args.queue)
    if ctx.json:
        ctx.emit([_document(s) for s in found], "")
        return EXIT_OK
    if not found:
        where = f"queue {args.queue}" if args.queue else f"prefix {ctx.prefix}"
        ctx.emit([], f"no schedules in {where}")
        return EXIT_OK
    rows = [
        (
            s.id,
            s.queue,
            _timing(s),
            s.tz,
            _when(s.next_run_ms),
            _when(s.last_run_ms),
            s.runs,
            "yes" if s.paused else "no",
        )
        for s in found
    ]
    header = ("ID", "QUEUE", "CRON/EVERY", "TZ", "NEXT RUN", "LAST RUN", "RUNS", "PAUSED")
    ctx.emit([], table(header, rows, right=(6,)))
    return EXIT_OK


def add_schedules(commands: Commands) -> None:
    """Add `redisq schedules`."""
    parser = commands.add(
        "schedules",
        _schedules,
        help="list periodic schedules: next and last run, paused",
        description="List the periodic schedules of QUEUE (default: of every queue), with\n"
        "their timing, time zone, next and last run (UTC), runs and pause.",
    )
    parser.add_argument("queue", metavar="QUEUE", nargs="?")


def _show(ctx: Context, s: Schedule, text: str) -> None:
    ctx.emit(_document(s), f"{text}: next run {_when(s.next_run_ms)}")


def _add(args: argparse.Namespace, ctx: Context) -> int:
    payload = None if args.payload is None else _json_arg("--payload", args.payload)
    options = None if args.options is None else _json_arg("--options", args.options)
    if options is not None and not isinstance(options, dict):
        raise UsageError("--options must be a JSON object such as '{\"priority\": 5}'")
    s = ctx.store().upsert_schedule(
        args.id,
        cron=args.cron,
        every_ms=args.every_ms,
        queue=args.queue,
        name=args.name,
        payload=payload,
        options=options,
        tz=args.tz,
        start_at=args.start_at,
        end_at=args.end_at,
        limit=args.limit,
        missed=args.missed,
        jitter_ms=args.jitter_ms,
    )
    _show(ctx, s, f"schedule {s.id} of queue {s.queue} stored ({_timing(s)}, {s.tz})")
    return EXIT_OK


def _rm(args: argparse.Namespace, ctx: Context) -> int:
    removed = ctx.store().remove_schedule(args.id, queue=args.queue)
    if not removed:
        raise Failed(f"schedule {args.id!r} does not exist in queue {args.queue!r}")
    ctx.emit({"id": args.id, "queue": args.queue, "removed": True}, f"removed schedule {args.id}")
    return EXIT_OK


def _pause(args: argparse.Namespace, ctx: Context) -> int:
    s = ctx.store().pause_schedule(args.id, queue=args.queue)
    ctx.emit(_document(s), f"paused schedule {s.id} of queue {s.queue}")
    return EXIT_OK


def _resume(args: argparse.Namespace, ctx: Context) -> int:
    s = ctx.store().resume_schedule(args.id, queue=args.queue)
    _show(ctx, s, f"resumed schedule {s.id} of queue {s.queue}")
    return EXIT_OK


def _run_now(args: argparse.Namespace, ctx: Context) -> int:
    job_id = ctx.store().run_schedule_now(args.id, queue=args.queue)
    ctx.emit(
        {"id": args.id, "queue": args.queue, "job": job_id},
        f"enqueued {job_id} in queue {args.queue}",
    )
    return EXIT_OK


def add_schedule(commands: Commands) -> None:
    """Add `redisq schedule add|rm|pause|resume|run-now`."""
    parser = commands.add(
        "schedule",
        lambda args, ctx: args.action(args, ctx),
        help="add, remove, pause, resume or run a periodic schedule",
        description="Manage one periodic schedule (see docs/schedules.md).",
    )
    actions = parser.add_subparsers(dest="schedule_action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create or change a schedule (idempotent)")
    add.set_defaults(action=_add)
    add.add_argument("id", metavar="ID")
    timing = add.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help="a cron expression, e.g. '*/5 * * * *'")
    timing.add_argument("--every-ms", type=positive_int, metavar="MS", help="the interval")
    add.add_argument("--queue", default="default", help="the queue of its jobs (default)")
    add.add_argument("--tz", default="UTC", help="the IANA time zone of --cron (UTC)")
    add.add_argument("--name", help="the jobs' name (a task name)")
    add.add_argument("--payload", metavar="JSON", help="the jobs' payload, as JSON")
    add.add_argument("--options", metavar="JSON", help="priority, max_attempts, lease_ms")
    add.add_argument("--start-at", type=non_negative_int, metavar="MS", help="no tick before")
    add.add_argument("--end-at", type=non_negative_int, metavar="MS", help="no tick after")
    add.add_argument("--limit", type=positive_int, metavar="N", help="most ticks in all")
    add.add_argument(
        "--missed", choices=("skip", "once", "all"), default="once", help="missed ticks (once)"
    )
    add.add_argument("--jitter-ms", type=non_negative_int, default=0, metavar="MS")
    for name, handler, text in (
        ("rm", _rm, "remove a schedule"),
        ("pause", _pause, "pause a schedule"),
        ("resume", _resume, "resume a schedule from its next tick after now"),
        ("run-now", _run_now, "enqueue one run now, outside the ticks"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.set_defaults(action=handler)
        sub.add_argument("id", metavar="ID")
        sub.add_argument("--queue", default="default", help="the schedule's queue (default)")
    for sub in actions.choices.values():
        # Each action takes the shared options too (after the action, as users type them).
        # (SUPPRESS as default: not given here, the value parsed before the action stays.)
        sub.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--prefix", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )


def _scheduler(args: argparse.Namespace, ctx: Context) -> int:
    from redisq._connect import connect
    from redisq.worker._schedules import start_drivers

    app = _load(args) if args.app else None
    if app is not None:
        url, prefix = app.url, app.prefix
        queues = args.queues or list(dict.fromkeys(p.queue for p in app.periodic_schedules))
    else:
        url, prefix = ctx.url, ctx.prefix
        queues = args.queues
    if not queues:
        raise UsageError("give --queues Q1,Q2 (or an app that declares periodic schedules)")
    if url.startswith("memory://"):
        raise UsageError(f"the url is {url!r}, a store private to this process: pass --url")
    configure_logging(args.log_level)
    options = app.connect_options if app is not None else {}
    with connect(url, prefix=prefix, **options) as store:
        store.redis.ping()  # unreachable: exit 3 with the URL named
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def declare(store: Store) -> object:
        return app.declare_schedules(store, queues) if app is not None else None

    drivers = start_drivers(url, prefix, options, queues, declare, "redisq-scheduler")
    ctx.err.write(f"redisq scheduler: driving the schedules of {', '.join(queues)}\n")
    ctx.err.flush()
    while not stop.wait(0.5):
        pass
    drivers.stop()
    drivers.join(5)
    return EXIT_OK


def add_scheduler(commands: Commands) -> None:
    """Add `redisq scheduler`."""
    parser = commands.add(
        "scheduler",
        _scheduler,
        help="only drive periodic schedules (no jobs run), until SIGTERM/SIGINT",
        description="Enqueue the due ticks of the periodic schedules of some queues, apart\n"
        "from the workers (run those with --no-schedules). With MODULE:APP, store the app's\n"
        "declared schedules first and drive their queues. Any number may run: each tick is\n"
        "enqueued once.",
    )
    parser.add_argument("app", metavar="MODULE:APP", nargs="?", help="an App, e.g. tasks:app")
    parser.add_argument("--queues", type=_queues, metavar="Q1,Q2", help="the queues to drive")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="log to stderr from (info)"
    )
