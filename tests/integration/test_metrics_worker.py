"""A worker's Prometheus metrics (issue 13 point 4; docs/metrics.md), scraped over HTTP.

The worker runs in a thread with ``metrics_port=0`` (any free port); the tests wait for the
jobs' outcomes in `Worker.metrics`, then scrape ``/metrics`` and parse the text format.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import redisq
from redisq import JobState
from redisq.metrics import STANDARD_METRICS, WORKER_METRICS
from tests.support.polling import wait_for

from ._worker_support import running

Families = dict[str, Any]
ADD = "tests.integration._proc_app.add"


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def make_worker(app: redisq.App, **options: Any) -> redisq.Worker:
    options.setdefault("concurrency", 4)
    options.setdefault("idle_wait_ms", 50)
    options.setdefault("grace_ms", 0)
    options.setdefault("metrics_port", 0)
    options.setdefault("metrics_host", "127.0.0.1")
    return redisq.Worker(app, **options)


def scrape(url: str) -> Families:
    """Parse a /metrics page into {family name: family}."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: Families, sample: str, **labels: str) -> float:
    """The sum of the samples called `sample` with these labels (0: no such series)."""
    return sum(
        float(s.value)
        for family in families.values()
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def wait_serving(worker: redisq.Worker) -> str:
    return wait_for(lambda: worker.metrics_url, 10, message="the worker's metrics server")


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_a_scrape_after_jobs_ran_counts_them_per_queue_and_task(app: redisq.App, pool: str) -> None:
    attempts: list[int] = []

    @app.task(name="ok", queue="q")
    def ok(x: int) -> None:
        return None

    @app.task(name="flaky", queue="q", max_attempts=2, backoff=redisq.backoff.fixed(0))
    def flaky() -> None:
        raise ValueError("always")

    @app.task(name="limited", queue="other")
    def limited(ctx: redisq.Context) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise redisq.RateLimited(20)

    for i in range(3):
        ok.enqueue(i)
    flaky.enqueue()
    limited.enqueue()
    with running(make_worker(app, pool=pool, queues=["q", "other"])) as worker:
        url = wait_serving(worker)
        wait_for(lambda: worker.metrics.completed == 4 and worker.metrics.dead == 1, 10)
        families = scrape(url)
        counted = worker.metrics.counters()
    # Outcomes per queue and task
    assert value(families, "redisq_worker_jobs_completed_total", queue="q", task="ok") == 3
    assert value(families, "redisq_worker_jobs_completed_total", queue="other", task="limited") == 1
    assert value(families, "redisq_worker_jobs_retried_total", queue="q", task="flaky") == 1
    assert value(families, "redisq_worker_jobs_dead_total", queue="q", task="flaky") == 1
    assert value(families, "redisq_worker_jobs_rate_limited_total", task="limited") == 1
    assert value(families, "redisq_worker_jobs_cancelled_total") == 0
    # ... which add up to the worker's own counters (counted at the same points)
    completed = families["redisq_worker_jobs_completed"].samples
    assert sum(s.value for s in completed if s.name.endswith("_total")) == counted["completed"]
    # The worker's totals, read from Worker.metrics
    assert value(families, "redisq_worker_jobs_claimed_total") == counted["claimed"] == 7
    assert value(families, "redisq_worker_jobs_released_total") == counted["released"] == 1
    assert value(families, "redisq_worker_concurrency") == 4
    # Histograms per task: each run and each claim observed once
    assert value(families, "redisq_worker_run_seconds_count", queue="q", task="ok") == 3
    assert value(families, "redisq_worker_run_seconds_count", queue="q", task="flaky") == 2
    assert value(families, "redisq_worker_run_seconds_count", task="limited") == 2
    assert value(families, "redisq_worker_pickup_seconds_count", queue="q", task="ok") == 3
    assert value(families, "redisq_worker_pickup_seconds_count", task="limited") == 2
    buckets = [
        s
        for s in families["redisq_worker_run_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["task"] == "ok"
    ]
    assert buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == 3
    assert value(families, "redisq_worker_run_seconds_sum", task="ok") >= 0
    info = families["redisq_worker_info"].samples[0]
    assert info.labels == {"worker": worker.name, "version": redisq.__version__, "pool": pool}


def test_the_names_are_the_documented_ones(app: redisq.App) -> None:
    # Every name of the table is served, also before anything was counted, and nothing else
    # (besides prometheus-client's process metrics).
    app.task(name="t", queue="q")(lambda: None)
    with running(make_worker(app)) as worker:
        families = scrape(wait_serving(worker))
    served = set(families)
    expected = {spec.name.removesuffix("_total") for spec in WORKER_METRICS}
    assert expected <= served
    standard = {n.removesuffix("_total") for n in STANDARD_METRICS}
    assert served - expected <= standard
    for spec in WORKER_METRICS:
        # The text format has no info type: an info metric is a gauge of value 1.
        kind = "gauge" if spec.kind == "info" else spec.kind
        assert families[spec.name.removesuffix("_total")].type == kind, spec.name


def test_gauges_show_jobs_running_prefetched_and_in_flight(app: redisq.App) -> None:
    gate = threading.Event()

    @app.task(name="wait", queue="q")
    def wait() -> None:
        gate.wait(10)

    for _ in range(3):
        wait.enqueue()
    with running(make_worker(app, concurrency=1, prefetch=2)) as worker:
        url = wait_serving(worker)
        wait_for(lambda: worker.metrics.claimed == 3, 10)
        families = scrape(url)
        gate.set()
        wait_for(lambda: worker.metrics.completed == 3, 10)
        after = scrape(url)
    assert value(families, "redisq_worker_jobs_running") == 1
    assert value(families, "redisq_worker_jobs_prefetched") == 2
    assert value(families, "redisq_worker_jobs_in_flight") == 3
    assert value(after, "redisq_worker_jobs_in_flight") == 0


def test_a_cancelled_job_is_counted_once_running_or_prefetched(app: redisq.App) -> None:
    started = threading.Event()
    gate = threading.Event()

    # A lease long enough that the cancel watch, not a renewal, tells the worker.
    @app.task(name="long", queue="q", lease_ms=30_000)
    def long(ctx: redisq.Context) -> None:
        started.set()
        ctx.cancelled_event.wait(10)
        gate.wait(10)

    running_ref = long.enqueue()
    waiting_ref = long.enqueue()
    with running(make_worker(app, concurrency=1, prefetch=1)) as worker:
        url = wait_serving(worker)
        assert started.wait(10)
        wait_for(lambda: worker.metrics.claimed == 2, 10)
        # The prefetched job: the worker hears of the cancel and drops it; it never runs.
        assert waiting_ref.cancel() is True
        wait_for(lambda: worker.metrics.cancelled == 1, 10)
        # The running one: the handler is told; its outcome, if any, is refused.
        assert running_ref.cancel() is True
        wait_for(lambda: worker.metrics.cancelled == 2, 10)
        gate.set()
        families = scrape(url)
    assert value(families, "redisq_worker_jobs_cancelled_total", queue="q", task="long") == 2
    assert value(families, "redisq_worker_jobs_completed_total") == 0
    assert worker.metrics.cancelled == 2  # once each, whichever path told the worker first


def test_reaped_leases_are_counted(app: redisq.App) -> None:
    app.task(name="t", queue="q")(lambda: None)
    app.store.enqueue("q", {"args": [], "kwargs": {}}, name="t", id="lost")
    # Another worker claimed it and died. This worker's claims would reap it too (each claim
    # reaps), but its only claim comes first, then it waits for work (long idle wait): the
    # lease expires meanwhile, and its reaper returns the job (which stays ready: paused).
    assert app.store.claim("q", worker="gone", lease_ms=1_000)
    app.store.pause("q")
    with running(make_worker(app, reaper_interval_ms=20, idle_wait_ms=60_000)) as worker:
        url = wait_serving(worker)
        wait_for(lambda: worker.metrics.reaped == 1, 10)
        families = scrape(url)
    assert value(families, "redisq_worker_jobs_reaped_total") == 1
    job = app.store.get("q", "lost")
    assert job is not None
    assert job.state is JobState.READY


def test_claims_held_back_by_a_rate_limit_are_counted(app: redisq.App) -> None:
    app.task(name="t", queue="q", rate_limit="5/s")(lambda: None)
    for _ in range(3):
        app.store.enqueue("q", {"args": [], "kwargs": {}}, name="t")
    with running(make_worker(app)) as worker:
        url = wait_serving(worker)
        wait_for(lambda: worker.metrics.completed == 3, 10)
        families = scrape(url)
    assert value(families, "redisq_worker_claims_rate_limited_total") >= 1
    assert value(families, "redisq_worker_claims_rate_limited_total") == (
        worker.metrics.claims_held
    )


def test_the_port_is_freed_when_the_worker_stops(app: redisq.App) -> None:
    app.task(name="t", queue="q")(lambda: None)
    worker = make_worker(app)
    with running(worker):
        url = wait_serving(worker)
        scrape(url)
    assert worker.metrics_url is None
    with pytest.raises(urllib.error.URLError, match="refused"):
        scrape(url)


def test_a_port_in_use_fails_the_start_before_anything_is_claimed(app: redisq.App) -> None:
    app.task(name="t", queue="q")(lambda: None)
    ref = app.store.enqueue("q", {"args": [], "kwargs": {}}, name="t")
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = make_worker(app, metrics_port=port)
        with pytest.raises(redisq.ConfigurationError, match=f"127.0.0.1:{port}"):
            worker.run()
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.state is JobState.READY
    assert worker.wait_stopped(1)


@pytest.mark.parametrize(
    ("option", "bad"), [("metrics_port", -1), ("metrics_port", 65_536), ("metrics_host", "")]
)
def test_bad_metrics_options_are_refused(app: redisq.App, option: str, bad: Any) -> None:
    app.task(name="t", queue="q")(lambda: None)
    with pytest.raises(redisq.InvalidArgument, match=option):
        redisq.Worker(app, **{option: bad})


def _free_ports(count: int) -> int:
    """A port P such that P .. P+count-1 are free now (the first found)."""
    for base in range(20_000, 60_000, 97):
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free ports")


@pytest.mark.slow
def test_each_process_of_a_supervisor_serves_on_its_own_port(real_url: str, prefix: str) -> None:
    from .test_processes import WorkerProcess

    store = redisq.connect(real_url, prefix=prefix)
    try:
        store.enqueue_many("q", [{"args": [1, 2], "kwargs": {}}] * 20, name=ADD)
        port = _free_ports(2)
        args = ["--processes", "2", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
        process = WorkerProcess(real_url, prefix, *args)
        try:
            process.started_pids(2)
            wait_for(lambda: store.counts("q")[JobState.COMPLETED] == 20, 20)

            def both() -> list[Families] | None:
                try:
                    return [scrape(f"http://127.0.0.1:{p}/metrics") for p in (port, port + 1)]
                except OSError:
                    return None

            pages = wait_for(both, 20, 0.05, message="both processes' metrics")
            for p in (port, port + 1):  # each says where it serves
                process.wait_log(rf"serving metrics at http://127\.0\.0\.1:{p}/metrics")
            names = {page["redisq_worker_info"].samples[0].labels["worker"] for page in pages}
            assert len(names) == 2  # two workers, one page each
            completed = sum(
                value(page, "redisq_worker_jobs_completed_total", queue="q", task=ADD)
                for page in pages
            )
            assert completed == 20
            process.popen.send_signal(signal.SIGTERM)
            assert process.wait() == 0
        finally:
            process.kill_group()
    finally:
        store.close()


def test_a_supervisor_refuses_ports_beyond_the_last() -> None:
    with pytest.raises(redisq.InvalidArgument, match="metrics_port"):
        redisq.Supervisor("tests.integration._proc_app:app", processes=4, metrics_port=65_534)


@pytest.mark.slow
def test_a_supervised_process_whose_port_is_taken_stops_the_fleet(
    real_url: str, prefix: str
) -> None:
    from .test_processes import WorkerProcess

    port = _free_ports(2)
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", port + 1))  # process 1's port
        taken.listen()
        args = ["--processes", "2", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
        process = WorkerProcess(real_url, prefix, *args)
        try:
            assert process.wait(30) == 2  # a configuration error: restarting cannot help
        finally:
            process.kill_group()
    assert f"127.0.0.1:{port + 1}" in process.log()


def test_scrapes_while_jobs_flow_lose_no_observation(app: redisq.App) -> None:
    @app.task(name="noop", queue="q")
    def noop(n: int) -> None:
        return None

    jobs = 600
    app.store.pause("q")
    app.store.enqueue_many("q", [{"args": [n], "kwargs": {}} for n in range(jobs)], name="noop")
    with running(make_worker(app, concurrency=8)) as worker:
        url = wait_serving(worker)
        app.store.resume("q")
        scrapes = 0
        while worker.metrics.completed < jobs:
            scrape(url)  # folds the observations taken so far, concurrently with the worker
            scrapes += 1
            assert scrapes < 10_000
        final = scrape(url)
    assert value(final, "redisq_worker_run_seconds_count", task="noop") == jobs
    assert value(final, "redisq_worker_pickup_seconds_count", task="noop") == jobs
    assert value(final, "redisq_worker_jobs_completed_total", task="noop") == jobs
    assert value(final, "redisq_worker_run_seconds_bucket", task="noop", le="+Inf") == jobs
