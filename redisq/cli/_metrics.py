"""`redisq metrics`: serve queue-level Prometheus metrics read from Redis (docs/metrics.md)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from redisq.cli._base import EXIT_OK, Commands, Context, UsageError, positive_int
from redisq.supervisor import LOG_LEVELS, configure_logging

__all__ = ["add_metrics"]

DESCRIPTION = """\
Serve Prometheus metrics of the queues at http://HOST:PORT/metrics until SIGTERM or SIGINT,
read from Redis at each scrape: jobs per state, the oldest ready job's age, paused, the rate
limit and its hold, and the queues' monotonic totals (enqueued, completed, retried, dead).
One exporter covers every queue under the prefix, whichever workers run; each worker serves
its own metrics with `redisq worker --metrics-port` (docs/metrics.md).

A scrape reads the prefix's registry of queues and then 5 calls per queue (pipelined): no
KEYS or SCAN. Needs the metrics extra: pip install 'redisq[metrics]'."""


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a port number in [0, 65535]; got {text!r}")
    return value


def _metrics(args: argparse.Namespace, ctx: Context) -> int:
    from redisq.metrics import QueueExporter, require_prometheus

    require_prometheus("redisq metrics")
    if ctx.url.startswith("memory://"):
        raise UsageError(f"the url is {ctx.url!r}, a store private to this process: pass --url")
    queues = [q.strip() for item in args.queue or [] for q in item.split(",") if q.strip()]
    store = ctx.store()
    store.redis.ping()  # unreachable: exit 3 with the URL named
    exporter = QueueExporter(  # a port in use: exit 2, naming it
        store, args.host, args.port, queues or None, max_queues=args.max_queues
    )
    configure_logging(args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    covered = ", ".join(queues) if queues else "every queue"
    ctx.err.write(f"redisq metrics: {covered} of prefix {ctx.prefix} at {exporter.url}\n")
    ctx.err.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        exporter.close()
    return EXIT_OK


def add_metrics(commands: Commands) -> None:
    """Add `redisq metrics`."""
    parser = commands.add(
        "metrics",
        _metrics,
        help="serve queue-level Prometheus metrics read from Redis, until SIGTERM/SIGINT",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--port", type=_port, required=True, metavar="P", help="the port to serve on (0: any)"
    )
    parser.add_argument(
        "--host", default="0.0.0.0", help="the address to listen on (every interface)"
    )
    parser.add_argument(
        "--queue",
        action="append",
        metavar="Q",
        help="only this queue (repeat, or Q1,Q2; default: every queue of the prefix)",
    )
    parser.add_argument(
        "--max-queues",
        type=positive_int,
        default=1000,
        metavar="N",
        help="most queues one scrape reads, the first by name (1000)",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="log to stderr from (info)"
    )
