"""Queue management: `retry-dead`, `purge`, `pause`, `resume`, `reap` and `migrate`."""

from __future__ import annotations

import argparse

from redisq.cli._base import EXIT_OK, STATES, Commands, Context, UsageError, positive_int, table
from redisq.models import JobState

__all__ = ["add_migrate", "add_pause", "add_purge", "add_reap", "add_resume", "add_retry_dead"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _retry_dead(args: argparse.Namespace, ctx: Context) -> int:
    ctx.require_queues([args.queue])
    retried = ctx.store().retry_dead(args.queue, args.ids, limit=args.limit)
    ctx.emit(
        {"queue": args.queue, "retried": retried},
        f"{_plural(retried, 'dead job')} of queue {args.queue} back to ready",
    )
    return EXIT_OK


def add_retry_dead(commands: Commands) -> None:
    """Add `redisq retry-dead`."""
    parser = commands.add(
        "retry-dead",
        _retry_dead,
        help="move dead jobs back to ready with a fresh attempt budget",
        description=(
            "Move dead jobs of QUEUE back to ready with a fresh attempt budget: the given\n"
            "--id jobs, else the oldest dead jobs (at most --limit)."
        ),
    )
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument(
        "--id", dest="ids", action="append", metavar="ID", help="a dead job to retry (repeatable)"
    )
    parser.add_argument("--limit", type=positive_int, default=1000, help="most jobs retried (1000)")


def _purge(args: argparse.Namespace, ctx: Context) -> int:
    what = "every job" if args.state is None else f"every {args.state} job"
    if not args.yes:
        raise UsageError(f"purge deletes {what} of queue {args.queue} for good; add --yes")
    state = None if args.state is None else JobState(args.state)
    ctx.require_queues([args.queue])
    purged = ctx.store().purge(args.queue, state)
    ctx.emit(
        {"queue": args.queue, "state": args.state, "purged": purged},
        f"purged {_plural(purged, 'job')} ({args.state or 'all states'}) of queue {args.queue}",
    )
    return EXIT_OK


def add_purge(commands: Commands) -> None:
    """Add `redisq purge`."""
    parser = commands.add(
        "purge",
        _purge,
        help="delete the jobs of a queue (needs --yes)",
        description=(
            "Delete every job of QUEUE, or those in --state, for good. Without --yes nothing\n"
            "is deleted and the exit code is 2."
        ),
    )
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument("--state", choices=STATES, help="only jobs in this state")
    parser.add_argument("--yes", action="store_true", help="confirm the deletion")


def _pause(args: argparse.Namespace, ctx: Context) -> int:
    if not args.create:
        hint = f"; to pause it before its first job, run `redisq pause --create {args.queue}`"
        ctx.require_queues([args.queue], hint)
    ctx.store().pause(args.queue)
    ctx.emit(
        {"queue": args.queue, "paused": True},
        f"paused queue {args.queue}: claims take nothing until `redisq resume {args.queue}`",
    )
    return EXIT_OK


def _resume(args: argparse.Namespace, ctx: Context) -> int:
    ctx.require_queues([args.queue])
    ctx.store().resume(args.queue)
    ctx.emit({"queue": args.queue, "paused": False}, f"resumed queue {args.queue}")
    return EXIT_OK


def add_pause(commands: Commands) -> None:
    """Add `redisq pause`."""
    parser = commands.add(
        "pause",
        _pause,
        help="stop workers from claiming from a queue",
        description="Stop every worker from claiming from QUEUE until `redisq resume QUEUE`.\n"
        "Leased jobs finish as usual; enqueue still works. A queue the prefix does not have\n"
        "is refused (exit 1) unless --create pauses it ahead of its first job.",
    )
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument(
        "--create",
        action="store_true",
        help="pause QUEUE even if it has no jobs yet (it stays paused when jobs arrive)",
    )


def add_resume(commands: Commands) -> None:
    """Add `redisq resume`."""
    parser = commands.add("resume", _resume, help="let workers claim from a paused queue again")
    parser.add_argument("queue", metavar="QUEUE")


def _reap(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    ctx.require_queues(args.queues)
    queues = args.queues or store.queues()
    reaped = {queue: store.reap(queue, limit=args.limit) for queue in queues}
    total = sum(reaped.values())
    if not queues:
        text = "no queues"
    else:
        text = table(("QUEUE", "REAPED"), sorted(reaped.items()), right=(1,))
        text += f"\n{_plural(total, 'expired lease')} reaped"
    ctx.emit({"reaped": reaped, "total": total}, text)
    return EXIT_OK


def add_reap(commands: Commands) -> None:
    """Add `redisq reap`."""
    parser = commands.add(
        "reap",
        _reap,
        help="return expired leases to ready (or dead) now",
        description=(
            "Return expired leases to ready (or dead when their attempts are used up) and\n"
            "promote due scheduled jobs, in the given queues or every queue. Workers do this\n"
            "as they claim; this is for queues nobody claims from."
        ),
    )
    parser.add_argument("queues", metavar="QUEUE", nargs="*", help="queues (default: all)")
    parser.add_argument(
        "--limit", type=positive_int, default=1000, help="most leases per queue (1000)"
    )


def _migrate(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    if args.queue is not None:
        ctx.require_queues([args.queue])
    done = store.migrate(args.queue, batch=args.batch)
    converted = sum(m.converted for m in done)
    bad = sum(m.bad for m in done)
    document = {
        "queues": {
            m.queue: {
                "found": m.found,
                "converted": m.converted,
                "skipped": m.skipped,
                "bad": m.bad,
                "done": m.done,
            }
            for m in done
        },
        "converted": converted,
        "bad": bad,
    }
    if not done:
        text = "no queues"
    else:
        rows = [(m.queue, m.found or "-", m.converted, m.skipped, m.bad) for m in done]
        text = table(("QUEUE", "FOUND", "CONVERTED", "SKIPPED", "BAD"), rows, right=(2, 3, 4))
        text += f"\n{_plural(converted, 'job record')} converted; every queue is at this version"
        if bad:
            text += (
                f"\n{_plural(bad, 'record')} in no known layout left as they were: `redisq ls`"
                " and `redisq show` raise BadRecord for them; delete them from Python"
                " (Store.delete)"
            )
    ctx.emit(document, text)
    return EXIT_OK


def add_migrate(commands: Commands) -> None:
    """Add `redisq migrate`."""
    parser = commands.add(
        "migrate",
        _migrate,
        help="convert queues written by the previous redisq to this version",
        description=(
            "Convert the queues written by the previous redisq version (schema 2) to this\n"
            "version's layout: every queue of the registry, or only --queue. Stop every worker\n"
            "and client of the old version first; while a queue migrates, every redisq refuses\n"
            "it (SchemaVersionError). Records are converted --batch at a time, so Redis never\n"
            "blocks for long. An interrupted run resumes when started again, and a queue\n"
            "already converted is left alone, so running it twice is harmless. Records in no\n"
            "known layout are left as they are and counted as bad. Exit 1 when a queue is at\n"
            "a version this redisq cannot migrate from."
        ),
    )
    parser.add_argument("--queue", metavar="QUEUE", help="only this queue (default: all)")
    parser.add_argument(
        "--batch", type=int, default=500, help="records converted per script call (500, 1-10000)"
    )
