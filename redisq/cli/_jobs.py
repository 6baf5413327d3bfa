"""Jobs: `enqueue`, `ls` and `show`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

import redisq
from redisq.cli._base import (
    EXIT_OK,
    STATES,
    Commands,
    Context,
    Failed,
    UsageError,
    job_document,
    non_negative_int,
    positive_int,
    short,
    show_time,
    table,
)
from redisq.models import Job, JobState

__all__ = ["add_enqueue", "add_ls", "add_show"]

#: Jobs `ls` prints unless --limit says otherwise.
LS_LIMIT = 100


def _json_arg(option: str, text: str) -> Any:
    """Parse `text` as JSON; a UsageError names the option and the position."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON ({exc}): {short(text, 60)}") from None


def _payload(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The payload and job name from PAYLOAD or from --task/--args/--kwargs."""
    if args.task is None:
        if args.args is not None or args.kwargs is not None:
            raise UsageError("--args and --kwargs go with --task NAME")
        if args.payload is None:
            return None, args.name
        text = sys.stdin.read() if args.payload == "-" else args.payload
        return _json_arg("PAYLOAD", text), args.name
    if args.payload is not None:
        raise UsageError("give PAYLOAD or --task, not both (--task builds the payload)")
    if args.name is not None:
        raise UsageError("--task NAME sets the job name; leave out --name")
    task_args = [] if args.args is None else _json_arg("--args", args.args)
    if not isinstance(task_args, list):
        raise UsageError(f"--args must be a JSON list such as '[1, \"a\"]'; got {args.args}")
    task_kwargs = {} if args.kwargs is None else _json_arg("--kwargs", args.kwargs)
    if not isinstance(task_kwargs, dict):
        raise UsageError(
            f"--kwargs must be a JSON object such as '{{\"a\": 1}}'; got {args.kwargs}"
        )
    # The payload format of the task API: keep it exactly {"args": [...], "kwargs": {...}}.
    return {"args": task_args, "kwargs": task_kwargs}, args.task


def _enqueue(args: argparse.Namespace, ctx: Context) -> int:
    payload, name = _payload(args)
    options: dict[str, Any] = {
        "id": args.id,
        "name": name,
        "unique_key": args.unique_key,
        "group": args.group,
        "rate_key": args.rate_key,
    }
    for option in (
        "priority",
        "delay_ms",
        "run_at_ms",
        "max_attempts",
        "lease_ms",
        "expires_ms",
        "throttle_ms",
        "debounce_ms",
    ):
        value = getattr(args, option)
        if value is not None:
            options[option] = value
    job = ctx.store().enqueue(args.queue, payload, **options)
    ctx.emit(job_document(job), f"{job.id} {job.state.value} (queue {job.queue})")
    return EXIT_OK


def add_enqueue(commands: Commands) -> None:
    """Add `redisq enqueue`."""
    parser = commands.add(
        "enqueue",
        _enqueue,
        help="add a job to a queue",
        description=(
            "Add a job to QUEUE and print its id and state (the whole job with --json).\n"
            "Idempotent on --id and, while the job is live, on --unique-key: the stored job\n"
            "is printed unchanged.\n\n"
            "A job for a worker names its task: --task NAME builds the payload of the task\n"
            'API, {"args": [...], "kwargs": {...}}. A plain PAYLOAD without --task makes a job\n'
            "with no task name, for your own claim loop: a redisq worker dead-letters it.\n\n"
            "examples:\n"
            "  redisq enqueue emails --task tasks.send_welcome --args '[\"ada\"]' --priority 5\n"
            "  redisq enqueue default --task send_email --args '[\"ada\"]' --kwargs '{\"cc\": 1}'\n"
            '  redisq enqueue emails \'{"to": "ada@example.com"}\'   # no task: for claim()\n'
            "  echo '[1, 2]' | redisq enqueue numbers - --delay-ms 60000"
        ),
    )
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument(
        "payload", metavar="PAYLOAD", nargs="?", help="JSON text, or - to read JSON from stdin"
    )
    parser.add_argument("--id", metavar="ID", help="job id (default: 32 random hex digits)")
    parser.add_argument("--name", metavar="NAME", help="task name, for routing")
    parser.add_argument(
        "--priority", type=int, metavar="N", help="-1000 to 1000, higher first (default 0)"
    )
    parser.add_argument("--delay-ms", type=int, metavar="MS", help="claimable after this many ms")
    parser.add_argument(
        "--run-at-ms", type=int, metavar="MS", help="claimable from this Redis time (epoch ms)"
    )
    parser.add_argument(
        "--max-attempts", type=int, metavar="N", help="claims allowed, 1 to 1000 (default 3)"
    )
    parser.add_argument("--lease-ms", type=int, metavar="MS", help="the job's own lease length")
    parser.add_argument("--unique-key", metavar="KEY", help="dedupe key held while the job is live")
    parser.add_argument(
        "--group", metavar="GROUP", help="the job's concurrency group (docs/groups.md)"
    )
    parser.add_argument(
        "--rate-key",
        metavar="KEY",
        help="the job's rate key: it draws from KEY's rate limit (docs/rate_limits.md)",
    )
    parser.add_argument(
        "--expires-ms",
        type=int,
        metavar="MS",
        help="cancel the job (reason expired) if it has not started within this many ms",
    )
    parser.add_argument(
        "--throttle-ms",
        type=int,
        metavar="MS",
        help="with --unique-key: repeats within this many ms return this job, even once done",
    )
    parser.add_argument(
        "--debounce-ms",
        type=int,
        metavar="MS",
        help="with --unique-key: wait this long; a repeat meanwhile replaces the payload",
    )
    task = parser.add_argument_group(
        "task-style enqueue",
        'makes a job named NAME with the payload {"args": [...], "kwargs": {...}}',
    )
    task.add_argument("--task", metavar="NAME", help="the task's name")
    task.add_argument("--args", metavar="JSON_LIST", help="positional arguments (default [])")
    task.add_argument("--kwargs", metavar="JSON_OBJECT", help="keyword arguments (default {})")


def _attempts(job: Job) -> str:
    return f"{job.attempts}/{job.max_attempts}"


def _ls(args: argparse.Namespace, ctx: Context) -> int:
    state = None if args.state is None else JobState(args.state)
    if args.queue is not None:
        ctx.require_queues([args.queue])
    jobs = ctx.store().list(args.queue, state=state, limit=args.limit, offset=args.offset)
    rows = [
        (
            job.id,
            job.queue,
            job.state.value,
            job.name or "",
            job.priority,
            _attempts(job),
            short(job.last_error, 40),
        )
        for job in jobs
    ]
    header = ("ID", "QUEUE", "STATE", "NAME", "PRIORITY", "ATTEMPTS", "LAST ERROR")
    text = table(header, rows, right=(4, 5)) if rows else "no jobs"
    if rows and len(rows) == args.limit:
        text += f"\n(first {args.limit} from offset {args.offset}; more with --offset or --limit)"
    document = {"jobs": [job_document(job) for job in jobs], "offset": args.offset}
    ctx.emit(document, text)
    return EXIT_OK


def add_ls(commands: Commands) -> None:
    """Add `redisq ls`."""
    parser = commands.add(
        "ls",
        _ls,
        help="list jobs",
        description=(
            "List jobs: by queue name, then state (ready, scheduled, leased, completed, dead,\n"
            "cancelled), then claim order, due time, lease deadline or time finished."
        ),
    )
    parser.add_argument("queue", metavar="QUEUE", nargs="?", help="one queue (default: all)")
    parser.add_argument("--state", choices=STATES, help="only jobs in this state")
    parser.add_argument(
        "--limit", type=positive_int, default=LS_LIMIT, help=f"most jobs shown ({LS_LIMIT})"
    )
    parser.add_argument("--offset", type=non_negative_int, default=0, help="jobs skipped first (0)")


_TIMES = {"created_at_ms", "run_at_ms", "lease_deadline_ms", "finished_at_ms"}
_DATA = {"payload", "result", "progress"}


def _show_text(job: Job) -> str:
    document = job_document(job)
    width = max(len(name) for name in document)
    lines = []
    for name, value in document.items():
        if name in _TIMES:
            shown = show_time(value)
        elif name in _DATA:
            shown = json.dumps(value, ensure_ascii=False)
        elif value is None:
            shown = "-"
        else:
            shown = str(value).replace("\n", "\n" + " " * (width + 2))
        lines.append(f"{name:<{width}}  {shown}")
    return "\n".join(lines)


def _show(args: argparse.Namespace, ctx: Context) -> int:
    if args.find is not None:
        if args.queue is not None:
            raise UsageError("give QUEUE ID, or --find ID, not both")
        job = ctx.store().find(args.find)
        if job is None:
            raise Failed(f"no job {args.find!r} in any queue of prefix {ctx.prefix!r}")
    else:
        if args.id is None:
            raise UsageError("give QUEUE and ID, or --find ID to look in every queue")
        ctx.require_queues([args.queue])
        job = ctx.store().get(args.queue, args.id)
        if job is None:
            raise Failed(
                f"no job {args.id!r} in queue {args.queue!r} (prefix {ctx.prefix!r}); it was"
                " never enqueued, or was deleted, purged or trimmed (try --find ID)"
            )
    if args.flow:
        flow = ctx.store().flow(job.queue, job.id)
        nodes = {
            jid: {
                "state": None if node.job is None else node.job.state.value,
                "result": node.result,
                "parents": list(node.parents),
                "children": list(node.children),
            }
            for jid, node in sorted(flow.nodes.items())
        }
        ctx.emit({"queue": flow.queue, "id": flow.id, "nodes": nodes}, flow.render())
        return EXIT_OK
    document = job_document(job)
    text = _show_text(job)
    width = max(len(n) for n in document)
    if job.state in (JobState.READY, JobState.SCHEDULED):
        expires = ctx.store().expires_at(job.queue, job.id)
        if expires is not None:
            document["expires_at_ms"] = expires
            text += (
                f"\n{'expires':<{width}}  {show_time(expires)} (cancelled if not started by then)"
            )
    elif job.state is JobState.CANCELLED and job.last_error == "expired":
        document["reason"] = "expired"
        text += f"\n{'reason':<{width}}  expired (not started before its expires_ms passed)"
    group = ctx.store().concurrency(job.queue, job.id).group
    if group is not None:
        document["group"] = group
        text += f"\n{'group':<{width}}  {group}"
    why = _why_waiting(ctx.store(), job)
    if why is not None:
        document["waiting"] = why
        text += f"\n{'waiting':<{max(len(n) for n in document)}}  {why}"
    attempts = ctx.store().attempts(job.queue, job.id)
    if attempts:
        document["failed_attempts"] = [asdict(a) for a in attempts]
        text += _attempts_text(attempts, max(len(n) for n in document))
    ctx.emit(document, text)
    return EXIT_OK


def _attempts_text(attempts: list[redisq.Attempt], width: int) -> str:
    """The failed attempts, oldest first: a header line each, then its error and traceback."""
    pad = " " * (width + 2)
    lines = [f"\n{'failed_attempts':<{width}}  {len(attempts)} (the last 10 are kept)"]
    for a in attempts:
        lines.append(
            f"{pad}#{a.attempt} {a.outcome} ({a.cause.replace('_', ' ')}) by {a.worker or '-'}"
            f" at {show_time(a.at_ms)}, token {a.token}"
        )
        for line in (a.error + ("\n" + a.traceback if a.traceback else "")).splitlines():
            lines.append(f"{pad}    {line}")
    return "\n".join(lines)


def _why_waiting(store: redisq.Store, job: Job) -> str | None:
    """Why a ready job is not being claimed: its queue's concurrency cap, its group at its
    limit, or its queue's rate limit."""
    if job.state is not JobState.READY:
        return None
    flow = store.concurrency(job.queue, job.id)
    if flow.held_by_cap:
        return (
            f"its queue is at its concurrency cap ({flow.leased:,} of {flow.concurrency:,}"
            " leased): it waits for a lease to end"
        )
    if flow.group is not None and not flow.group_turn:
        limit = flow.group_concurrency
        if limit is not None and flow.group_leased >= limit:
            return (
                f"its group {flow.group!r} is at its limit ({flow.group_leased:,} of {limit:,}"
                " leased): it waits for one of them to end"
            )
        own = store.rate_limit(job.queue, key=flow.group)
        if own.next_at_ms is not None:
            seconds, micros = store.redis.time()
            if own.next_at_ms > int(seconds) * 1000 + int(micros) // 1000:
                cause = (
                    f"has a rate limit ({own.limit})"
                    if own.limit is not None
                    else "is held back by a handler's RateLimited"
                )
                return (
                    f"its group {flow.group!r} {cause}: its next job may start at"
                    f" {show_time(own.next_at_ms)}"
                )
    state = store.rate_limit(job.queue)
    if state.next_at_ms is None:
        return None
    seconds, micros = store.redis.time()
    if state.next_at_ms <= int(seconds) * 1000 + int(micros) // 1000:
        return None
    if state.limit is None:
        cause = "a handler's RateLimited holds its queue back"
    else:
        cause = f"its queue's rate limit ({state.limit}) holds it back"
    return f"{cause}: the next job may start at {show_time(state.next_at_ms)}"


def add_show(commands: Commands) -> None:
    """Add `redisq show`."""
    parser = commands.add(
        "show",
        _show,
        help="print every field of one job",
        description="Print every field of one job; exit 1 when it is not there.",
    )
    parser.add_argument("queue", metavar="QUEUE", nargs="?")
    parser.add_argument("id", metavar="ID", nargs="?")
    parser.add_argument("--find", metavar="ID", help="look the id up in every queue")
    parser.add_argument(
        "--flow",
        action="store_true",
        help="draw the job's dependency DAG (ancestors and descendants, with states and results)",
    )
