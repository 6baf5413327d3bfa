"""`redisq workers`: the running workers, from the worker registry (`Store.workers`)."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from typing import Any

from redisq.cli._base import EXIT_OK, Commands, Context, plain, table
from redisq.models import WorkerInfo

__all__ = ["add_workers"]


def worker_document(info: WorkerInfo) -> dict[str, Any]:
    """Every field of a worker's record, as JSON-ready data."""
    return {f.name: plain(getattr(info, f.name)) for f in fields(info)}


def _ago(ms: int, now_ms: int) -> str:
    seconds = max(0.0, (now_ms - ms) / 1000)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _text(workers: list[WorkerInfo]) -> str:
    if not workers:
        return "no running worker (a worker shows up here while it runs)"
    now = int(time.time() * 1000)
    rows = [
        [
            w.name,
            w.host,
            w.pid,
            ",".join(w.queues),
            f"{w.concurrency} {w.pool}",
            w.in_flight,
            w.counters.get("completed", 0),
            w.counters.get("retried", 0),
            w.counters.get("dead", 0),
            _ago(w.started_at_ms, now),
            _ago(w.seen_at_ms, now),
            w.version,
        ]
        for w in workers
    ]
    header = [
        "WORKER",
        "HOST",
        "PID",
        "QUEUES",
        "HANDLERS",
        "IN FLIGHT",
        "COMPLETED",
        "RETRIED",
        "DEAD",
        "UP",
        "SEEN",
        "VERSION",
    ]
    return table(header, rows, right=(2, 5, 6, 7, 8, 9, 10))


def _workers(args: argparse.Namespace, ctx: Context) -> int:
    found = ctx.store().workers()
    if args.queue:
        found = [w for w in found if args.queue in w.queues]
    ctx.emit({"workers": [worker_document(w) for w in found]}, _text(found))
    return EXIT_OK


def add_workers(commands: Commands) -> None:
    """Add `redisq workers`."""
    parser = commands.add(
        "workers",
        _workers,
        help="list the running workers (from their heartbeats)",
        description=(
            "List the workers that run now, from the worker registry: each worker rewrites\n"
            "its record every third of its TTL (30 s by default), so one that stopped\n"
            "cleanly is gone at once, and one that died (kill -9) once its TTL passed.\n"
            "UP and SEEN are ages (by this machine's clock). --json gives every field,\n"
            "including the ids of the jobs each worker holds."
        ),
    )
    parser.add_argument("--queue", metavar="QUEUE", help="only the workers of this queue")
