"""Cost of OpenTelemetry tracing (docs/tracing.md) and of metrics, per job, against neither.

(a) One worker process with the defaults drains N no-op task jobs (bench_worker.py's drain:
the clock runs from `resume` to the last completion), for --rounds rounds, each round running
these settings in turn:

- "off": no option (the README's worker figures);
- "metrics on": ``metrics_port=0`` (served on loopback, not scraped), as bench_metrics.py;
- "traced jobs, tracing off": jobs enqueued with a trace context, a worker without the
  middleware (what the record's trace context costs a worker that does not trace);
- "traced jobs, no-op job hooks": the same jobs, a middleware whose before_job and after_job
  do nothing (the worker's hooked path, without OpenTelemetry);
- "tracing on": the same jobs, the worker's App with ``TracingMiddleware`` over an SDK
  TracerProvider with a BatchSpanProcessor and an exporter that drops the spans (the SDK's
  own work, without a collector's network).

Reported: the median rate and the worker's CPU per job (all its threads, the span
processor's included) of each setting, and the difference from "off".

(b) The enqueue side: µs of client time per ``task.enqueue`` call in this process, without
the middleware and with it (a PRODUCER span and the trace context sent), --enqueues calls
each, in turn, --rounds times.

    python bench/bench_tracing.py [--jobs 20000] [--rounds 5] [--enqueues 2000] [--url ...]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import bench_worker
import redis
from _common import (
    Figure,
    base_parser,
    command_line,
    delete_prefix,
    fmt_rate,
    new_prefix,
    print_environment,
    run_main,
)
from _server import bench_server
from _workers import describe_code
from bench_worker import JOBS, QUEUE, QUICK_JOBS, TASK, drain

import redisq

SCRIPT = "bench_tracing.py"
ENQUEUES, QUICK_ENQUEUES = 2_000, 500
#: The trace context of the traced jobs (one enqueue's; the worker's cost does not depend on it).
CARRIER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

#: bench_worker's worker process, with the App's middleware chosen by the "_mode" option.
CHILD = """
import sys, threading, time, json
import redisq
url, prefix, task, queue, options = sys.argv[1:6]
options = json.loads(options)
mode = options.pop("_mode", "off")
middleware = []
if mode == "tracing":
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from redisq.tracing import TracingMiddleware

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    middleware = [TracingMiddleware(provider)]
elif mode == "hooks":
    class Noop(redisq.Middleware):
        def before_job(self, ctx):
            pass

        def after_job(self, ctx, outcome):
            pass

    middleware = [Noop()]
app = redisq.App(url, prefix=prefix, middleware=middleware)
app.task(name=task, queue=queue)(lambda n: None)
worker = redisq.Worker(app, **options)
def ready():
    while not worker.running:
        time.sleep(0.01)
    print("ready", time.process_time(), flush=True)
threading.Thread(target=ready, daemon=True).start()
worker.run()
print(json.dumps({**worker.metrics.snapshot(), "cpu": time.process_time()}), flush=True)
"""

#: label -> (worker options, whether the jobs carry a trace context)
SETTINGS: dict[str, tuple[dict[str, Any], bool]] = {
    "off": ({}, False),
    "metrics on": ({"metrics_port": 0, "metrics_host": "127.0.0.1"}, False),
    "traced jobs, tracing off": ({}, True),
    "traced jobs, no-op job hooks": ({"_mode": "hooks"}, True),
    "tracing on": ({"_mode": "tracing"}, True),
}


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per drain ({JOBS:,}); 0: skip")
    p.add_argument("--rounds", type=int, default=5, help="rounds of every setting, in turn (5)")
    p.add_argument(
        "--enqueues", type=int, default=None, help=f"calls timed for (b) ({ENQUEUES:,}); 0: skip"
    )
    return p


def _fill_traced(store: redisq.Store, jobs: int) -> None:
    """bench_worker.fill, each job with the trace context of a traced enqueue."""
    for first in range(0, jobs, 1_000):
        specs = [
            redisq.Spec({"args": [i], "kwargs": {}}, name=TASK)
            for i in range(first, min(first + 1_000, jobs))
        ]
        store.enqueue_many(QUEUE, specs, trace_context=CARRIER)


@contextlib.contextmanager
def _setting(traced: bool) -> Iterator[None]:
    """Run bench_worker.drain with this script's worker process (and traced jobs)."""
    saved = bench_worker.CHILD, bench_worker.fill
    bench_worker.CHILD = CHILD
    if traced:
        bench_worker.fill = _fill_traced
    try:
        yield
    finally:
        bench_worker.CHILD, bench_worker.fill = saved


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def _drains(args: argparse.Namespace, url: str, admin: redis.Redis, jobs: int) -> list[Figure]:
    cmd = command_line(SCRIPT, {"jobs": jobs, "rounds": args.rounds, "enqueues": 0}, args.url)
    print(f"## (a) drain {jobs:,} no-op jobs per setting\n# {cmd}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SETTINGS}
    for _ in range(args.rounds):
        for label, (options, traced) in SETTINGS.items():
            with _setting(traced):
                r = drain(url, admin, jobs, 1, dict(options))
            runs[label].append(r)
            print(
                f"  {label}: {r['rate']:,.0f} jobs/s; worker {r['worker_us']:.1f} µs/job",
                flush=True,
            )
    figures = []
    base = _median([r["worker_us"] for r in runs["off"]])
    for label, found in runs.items():
        rates = sorted(r["rate"] for r in found)
        cpu = sorted(r["worker_us"] for r in found)
        extra = "" if label == "off" else f"; {_median(cpu) - base:+.1f} µs/job against off"
        figures.append(
            Figure(
                f"1 worker process, defaults, {label}",
                f"{fmt_rate(_median(rates), 'jobs/s')} (median of {len(rates)}:"
                f" {rates[0]:,.0f}-{rates[-1]:,.0f}); worker CPU {_median(cpu):.1f} µs/job"
                f" ({cpu[0]:.1f}-{cpu[-1]:.1f}){extra}",
                command=cmd,
            )
        )
    return figures


def _enqueues(args: argparse.Namespace, url: str, admin: redis.Redis, n: int) -> list[Figure]:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from redisq.tracing import TracingMiddleware

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    cmd = command_line(SCRIPT, {"jobs": 0, "rounds": args.rounds, "enqueues": n}, args.url)
    print(f"## (b) task.enqueue, {n:,} calls per setting\n# {cmd}", flush=True)
    timings: dict[str, list[float]] = {"tracing off": [], "tracing on": []}
    prefix = new_prefix("tracing")
    apps = {
        "tracing off": redisq.App(url, prefix=prefix),
        "tracing on": redisq.App(url, prefix=prefix, middleware=[TracingMiddleware(provider)]),
    }
    try:
        for app in apps.values():
            app.task(name=TASK, queue=QUEUE)(lambda n: None)
            app.store.enqueue(QUEUE, None)  # connect and register the queue
        for _ in range(args.rounds):
            for label, app in apps.items():
                task = app.tasks[TASK]
                started = time.perf_counter()
                for i in range(n):
                    task.enqueue(i)
                us = 1e6 * (time.perf_counter() - started) / n
                timings[label].append(us)
                print(f"  {label}: {us:.1f} µs/enqueue", flush=True)
    finally:
        for app in apps.values():
            app.close()
        provider.shutdown()
        delete_prefix(admin, prefix, private=False)
    off = _median(timings["tracing off"])
    figures = []
    for label, found in timings.items():
        ordered = sorted(found)
        extra = "" if label == "tracing off" else f"; {_median(found) - off:+.1f} µs against off"
        figures.append(
            Figure(
                f"task.enqueue, {label}",
                f"{_median(found):.1f} µs per call, wall time of one client (median of"
                f" {len(found)}: {ordered[0]:.1f}-{ordered[-1]:.1f}){extra}",
                command=cmd,
            )
        )
    return figures


def run(args: argparse.Namespace) -> list[Figure]:
    """Run (a) and (b); return their figures."""
    jobs = (QUICK_JOBS if args.quick else JOBS) if args.jobs is None else args.jobs
    n = (QUICK_ENQUEUES if args.quick else ENQUEUES) if args.enqueues is None else args.enqueues
    print(f"# {describe_code()}", flush=True)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        try:
            if jobs:
                figures += _drains(args, server.url, admin, jobs)
            if n:
                figures += _enqueues(args, server.url, admin, n)
        finally:
            admin.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table of figures."""
    return run_main(parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
