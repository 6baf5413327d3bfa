"""`redisq worker MODULE:APP`: run the tasks of an App, in one process or several."""

from __future__ import annotations

import argparse
import importlib
import os
import traceback
from types import TracebackType
from typing import Any

import redisq
from redisq.app import App
from redisq.cli._base import (
    EXIT_OK,
    AppImportFailed,
    Commands,
    Context,
    UsageError,
    non_negative_int,
    positive_int,
)
from redisq.errors import ConfigurationError
from redisq.supervisor import LOG_LEVELS, Supervisor, configure_logging, load_app
from redisq.worker import Worker

__all__ = ["add_worker"]

DESCRIPTION = """\
Run the tasks of the redisq.App at MODULE:APP (e.g. myproject.tasks:app; the current
directory is on the import path) until SIGTERM or SIGINT (Ctrl-C).

The first signal stops claiming and lets the running jobs finish within --grace-ms, then
releases what still runs (released jobs go back to ready without counting the attempt); a
second signal releases the running jobs at once. The exit code is 0 after such a stop.

With --processes N > 1 a supervisor starts N worker processes (each a fresh interpreter
that imports MODULE:APP), restarts one that dies (after 0.5 s, doubling up to 30 s while it
keeps dying young), and passes the signals on. The jobs of a worker killed outright (kill -9)
go back to ready when their lease expires, through the reaper of the other workers.

The server is the App's url unless --url is given; the key prefix the App's unless --prefix
is given ($REDISQ_URL and $REDISQ_PREFIX are not read: the App decides). Logs go to stderr.

With --burst the worker stops by itself once its queues are empty (see docs/cli.md): nothing
ready or due in them and no job of its own in flight; scheduled jobs due later and jobs
waiting for their parents do not keep it running. With --processes N each process stops
so, and the command returns once all have.

exit codes: 0 stopped by a signal (or, with --burst, the queues are empty), 1 a worker
process failed to stop cleanly, 2 usage error (bad MODULE:APP, unknown queue, bad option),
3 the server cannot be reached at start."""


def _queues(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected QUEUE[,QUEUE...], e.g. emails,reports; got {text!r}"
        )
    return names


def _weights(text: str) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in text.split(","):
        queue, sep, weight = item.partition("=")
        if not sep or not queue.strip() or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"expected QUEUE=WEIGHT[,QUEUE=WEIGHT...], e.g. emails=3,reports=1; got {text!r}"
            )
        weights[queue.strip()] = int(weight)
    return weights


#: Frames of these files come before the user's own in an import's traceback.
_INTERNAL = (
    os.path.dirname(redisq.__file__) + os.sep,
    os.path.dirname(importlib.__file__) + os.sep,
    "<frozen importlib",
)


def _user_traceback(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame that is neither redisq's nor importlib's."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_INTERNAL):
        tb = tb.tb_next
    return tb


def _load(args: argparse.Namespace) -> App:
    """load_app, with an import that raised reported through the user's own frames."""
    try:
        return load_app(args.app, url=args.url, prefix=args.prefix)
    except Exception as exc:
        user = _user_traceback(exc.__traceback__)
        if user is None:  # load_app's own refusal (no such module, not an App...): one line
            raise
        report = traceback.TracebackException(type(exc), exc, user)
        # Past the user's frames, redisq's own (a redisq error raised for their call) are
        # noise: keep the user's last frame, where their call is.
        while len(report.stack) > 1 and report.stack[-1].filename.startswith(_INTERNAL):
            report.stack.pop()
        raise AppImportFailed(args.app, exc, "".join(report.format())) from None


def _worker(args: argparse.Namespace, ctx: Context) -> int:
    app = _load(args)
    ctx.url = app.url
    ctx.prefix = app.prefix
    if app.url.startswith("memory://"):
        raise UsageError(
            f"the app's url is {app.url!r}, a store private to this process where no other"
            " process can enqueue: pass --url redis://HOST:PORT, or build the App with one"
        )
    known = app.task_queues
    for queue in [*(args.queues or []), *(args.weights or {})]:
        if queue not in known:
            listed = ", ".join(known) or "none"
            raise UsageError(f"queue {queue!r} has no task in {args.app} (its queues: {listed})")
    options: dict[str, Any] = {
        "queues": args.queues,
        "concurrency": args.concurrency,
        "pool": args.pool,
        "weights": args.weights,
        "strict": args.strict,
        "grace_ms": args.grace_ms,
        "prefetch": args.prefetch,
        "reaper_interval_ms": args.reaper_interval_ms,
        "schedules": not args.no_schedules,
        "registry_ttl_ms": args.registry_ttl_ms,
    }
    if args.burst:  # only then, likewise
        options["burst"] = True
    if args.metrics_port is not None:  # only then: the Supervisor's options stay as they were
        options["metrics_port"] = args.metrics_port
        options["metrics_host"] = args.metrics_host
    try:
        worker = Worker(app, **options)  # validates every option before anything starts
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc
    with app.connect() as store:
        store.redis.ping()  # unreachable: exit 3 with the URL named
    configure_logging(args.log_level)
    if args.processes == 1:
        worker.run()
        return EXIT_OK
    supervisor = Supervisor(
        args.app,
        processes=args.processes,
        url=args.url,
        prefix=args.prefix,
        log_level=args.log_level,
        **options,
    )
    return supervisor.run()


def add_worker(commands: Commands) -> None:
    """Add `redisq worker`."""
    parser = commands.add(
        "worker",
        _worker,
        help="run the tasks of an App (module:attr) until SIGTERM/SIGINT",
        description=DESCRIPTION,
        connects=False,
    )
    parser.add_argument("app", metavar="MODULE:APP", help="where the redisq.App is, e.g. tasks:app")
    parser.add_argument(
        "--queues",
        type=_queues,
        metavar="Q1,Q2",
        help="the queues to work, comma-separated (default: every queue of the app's tasks)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="handlers running at once per process (default 10 threads, or 100 asyncio tasks)",
    )
    parser.add_argument(
        "--pool",
        choices=("thread", "async"),
        default="thread",
        help="thread: each handler in a thread; async: one event loop (default thread)",
    )
    parser.add_argument(
        "--processes", type=positive_int, default=1, metavar="N", help="worker processes (1)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--weights",
        type=_weights,
        metavar="Q=W,...",
        help="weighted round-robin over the queues, e.g. emails=3,reports=1 (default 1 each)",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="claim from the queues strictly in the order of --queues instead",
    )
    parser.add_argument(
        "--grace-ms",
        type=non_negative_int,
        default=30_000,
        metavar="MS",
        help="at stop, how long running jobs may take before they are released (30000)",
    )
    parser.add_argument(
        "--prefetch",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="a fixed number of jobs claimed beyond the free handlers, waiting in memory"
        " (default: what the handlers finish in about 5 ms, up to 1000, from their run times;"
        " 0 claims only for free handlers)",
    )
    parser.add_argument(
        "--reaper-interval-ms",
        type=positive_int,
        default=10_000,
        metavar="MS",
        help="mean time between reaps of expired leases (10000)",
    )
    parser.add_argument(
        "--registry-ttl-ms",
        type=non_negative_int,
        default=30_000,
        metavar="MS",
        help="TTL of the worker's record in `redisq workers`, rewritten every third of it"
        " (30000; 0: not listed)",
    )
    parser.add_argument(
        "--no-schedules",
        action="store_true",
        help="do not drive periodic schedules (a separate `redisq scheduler` does)",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="exit (0) once the queues are empty: nothing ready or due, no job of this worker"
        " in flight (scheduled jobs due later do not keep it running)",
    )
    parser.add_argument(
        "--metrics-port",
        type=non_negative_int,
        default=None,
        metavar="P",
        help="serve Prometheus metrics at http://HOST:P/metrics (needs redisq[metrics]); with"
        " --processes N, process i serves P+i (docs/metrics.md)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="HOST",
        help="the address the metrics server listens on (every interface)",
    )
    parser.add_argument(
        "--url", help="the server URL (default: the App's url; this one wins when given)"
    )
    parser.add_argument("--prefix", help="the key prefix (default: the App's prefix)")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="log to stderr from (info)"
    )
