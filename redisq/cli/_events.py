"""`redisq events`: read a queue's event stream, follow it, or turn it on and off."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from typing import Any

from redisq._core.events import DEFAULT_EVENTS_MAXLEN
from redisq.cli._base import EXIT_OK, Commands, Context, UsageError, plain
from redisq.models import Event

__all__ = ["add_events"]

#: How long one read of --follow blocks (ms): short enough that Ctrl-C is prompt.
_FOLLOW_BLOCK_MS = 5_000


def event_document(event: Event) -> dict[str, Any]:
    """Every field of an event, as JSON-ready data."""
    return {f.name: plain(getattr(event, f.name)) for f in fields(event)}


def _line(e: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.at_ms / 1000))
    worker = f" worker={e.worker}" if e.worker else ""
    name = f" {e.name}" if e.name else ""
    return (
        f"{e.id}  {stamp}.{e.at_ms % 1000:03d}  {e.event:<10} {e.job_id}{name}"
        f" attempt={e.attempt}{worker}"
    )


def _emit(ctx: Context, events: list[Event]) -> None:
    for e in events:
        ctx.emit(event_document(e), _line(e))


def _events(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    if args.on or args.off:
        if args.follow or args.since is not None:
            raise UsageError("--on and --off go without --follow and --since")
        store.set_events(args.queue, bool(args.on), maxlen=args.maxlen)
        state = f"on (about {args.maxlen} entries kept)" if args.on else "off"
        ctx.emit({"queue": args.queue, "events": bool(args.on)}, f"events of {args.queue}: {state}")
        return EXIT_OK
    ctx.require_queues([args.queue])
    since = args.since if args.since is not None else ("$" if args.follow else "0")
    try:
        while True:
            block = min(_FOLLOW_BLOCK_MS, store.settings.max_block_ms) if args.follow else None
            got = store.events(args.queue, since=since, count=args.count, block_ms=block)
            _emit(ctx, got)
            if got:
                since = got[-1].id
            if not args.follow and (len(got) < args.count or not args.all):
                return EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C is how following ends: not an error
        return EXIT_OK


def add_events(commands: Commands) -> None:
    """Add `redisq events`."""
    parser = commands.add(
        "events",
        _events,
        help="read or follow a queue's event stream; turn it on or off",
        description=(
            "Print the events of QUEUE, oldest first, one per line: enqueued, started,\n"
            "progress, completed, retried, dead, cancelled, lease-lost and reaped, each with\n"
            "the job id, task name, attempt, worker and Redis-clock time. The stream is off\n"
            "by default: `redisq events QUEUE --on` turns it on (the scripts then write it\n"
            "in each transition, capped at about --maxlen entries), --off turns it off.\n"
            "--follow waits for new events (from now, or after --since ID) until Ctrl-C.\n"
            "--json prints one JSON document per event."
        ),
    )
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument("--follow", "-f", action="store_true", help="wait for new events")
    parser.add_argument(
        "--since",
        metavar="ID",
        help="only events after this entry id ('0': from the oldest, the default; '$': new ones)",
    )
    parser.add_argument(
        "--count", type=int, default=100, metavar="N", help="events per read (default 100)"
    )
    parser.add_argument(
        "--all", action="store_true", help="without --follow: read on until the stream's end"
    )
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--on", action="store_true", help="turn the queue's event stream on")
    switch.add_argument("--off", action="store_true", help="turn it off (entries are kept)")
    parser.add_argument(
        "--maxlen",
        type=int,
        default=DEFAULT_EVENTS_MAXLEN,
        metavar="N",
        help=f"with --on: entries kept, about (default {DEFAULT_EVENTS_MAXLEN})",
    )
