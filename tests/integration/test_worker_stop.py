"""Stopping and surviving: graceful stop and release, SIGTERM, Redis restarts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import redisq
from redisq import JobState
from tests.support.polling import wait_for
from tests.support.servers import ServerProcess

from ._worker_support import job_state, running, wait_job

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


Gates = dict[int, threading.Event]


def _hold_task(app: redisq.App) -> tuple[redisq.Task[..., None], Gates, list[int]]:
    gates = {n: threading.Event() for n in range(3)}
    started: list[int] = []

    @app.task(name="hold", queue="q")
    def hold(n: int) -> None:
        started.append(n)
        gates[n].wait(20)

    return hold, gates, started


def test_graceful_stop_finishes_within_grace_and_releases_the_rest(app: redisq.App) -> None:
    # Given two running jobs and one prefetched
    hold, gates, started = _hold_task(app)
    refs = [hold.enqueue(n) for n in range(3)]
    worker = redisq.Worker(app, concurrency=2, prefetch=1, grace_ms=500, idle_wait_ms=50)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sorted(started) == [0, 1])
        wait_for(lambda: app.store.counts("q")[JobState.LEASED] == 3)
        # When the worker is asked to stop
        worker.stop()
        # Then the prefetched job is released at once, while the handlers still run
        prefetched = wait_job(app, refs[2], state=JobState.READY)
        assert prefetched.attempts == 0
        assert started == [0, 1] or started == [1, 0]
        # a handler finishing within the grace period completes its job
        gates[0].set()
        wait_job(app, refs[0], state=JobState.COMPLETED)
        # the one still running after grace_ms is released, its attempt not counted
        assert worker.wait_stopped(10)
        released = job_state(app, "q", refs[1].id)
        assert (released.state, released.attempts) == (JobState.READY, 0)
        assert (worker.metrics.completed, worker.metrics.released) == (1, 2)
    finally:
        for gate in gates.values():
            gate.set()
        worker.stop(grace=False)
        thread.join(10)
    assert not thread.is_alive()


def test_second_stop_releases_running_jobs_at_once(app: redisq.App) -> None:
    hold, gates, started = _hold_task(app)
    ref = hold.enqueue(0)
    worker = redisq.Worker(app, concurrency=1, grace_ms=60_000, idle_wait_ms=50)
    with running(worker):
        wait_for(lambda: started == [0])
        worker.stop()
        assert not worker.wait_stopped(0.2)  # the grace period is a minute
        worker.stop()  # the second request does not wait
        assert worker.wait_stopped(10)
        job = job_state(app, "q", ref.id)
        assert (job.state, job.attempts) == (JobState.READY, 0)
        gates[0].set()


def test_sigterm_lets_the_running_job_finish_and_the_process_exits_0(
    real_url: str, prefix: str
) -> None:
    app = redisq.App(real_url, prefix=prefix)

    @app.task(name="slow", queue="slow")
    def slow() -> None: ...

    ref = slow.enqueue()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration._sigterm_worker", real_url, prefix],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: job_state(app, "slow", ref.id).progress == "started", timeout=20)
        proc.send_signal(signal.SIGTERM)
        # The job cannot finish before its gate opens: it is in flight when the signal lands.
        # Wait for the worker to report the stop, then let the job finish within the grace.
        assert proc.stdout is not None
        seen = b""
        while b"stopping" not in seen:
            line = proc.stdout.readline()
            assert line, f"the worker exited before it logged its stop: {seen!r}"
            seen += line
        app.store.redis.set(f"{{{prefix}:slow}}:gate", 1)
        out, _ = proc.communicate(timeout=20)
        out = seen + out
        assert proc.returncode == 0, out.decode(errors="replace")
        job = job_state(app, "slow", ref.id)
        assert (job.state, job.attempts) == (JobState.COMPLETED, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        app.close()


def test_worker_resumes_after_a_redis_restart_and_retries_its_ack(
    make_server: Callable[..., ServerProcess], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a private server that keeps its data across restarts, and a job in a handler
    caplog.set_level(logging.WARNING, logger="redisq.worker")
    server = make_server("valkey", appendonly=True)
    app = redisq.App(server.url, prefix=prefix)
    gate = threading.Event()
    runs: list[int] = []

    @app.task(name="work", queue="q")
    def work(n: int) -> None:
        runs.append(n)
        if n == 1:
            gate.wait(20)

    with running(redisq.Worker(app, concurrency=2, idle_wait_ms=50)) as worker:
        first = work.enqueue(1)
        wait_for(lambda: runs == [1])
        # When Redis goes away while the handler runs, and the handler finishes meanwhile
        server.stop()
        gate.set()
        wait_for(
            lambda: any("outcome(s) failed" in r.getMessage() for r in caplog.records),
            message="the ack to fail while the server is down",
        )
        server.restart()
        # Then the ack goes through once the server is back, and new work flows again
        wait_job(app, first, timeout=20, state=JobState.COMPLETED)
        second = work.enqueue(2)
        wait_job(app, second, timeout=20, state=JobState.COMPLETED)
    assert runs == [1, 2]
    assert worker.metrics.connection_errors >= 1
    assert worker.metrics.completed == 2
    app.close()


def test_an_ack_not_sent_before_its_lease_ends_is_given_up_and_the_job_runs_again(
    make_server: Callable[..., ServerProcess], prefix: str
) -> None:
    # Given a job with a short lease whose handler finishes while Redis is down
    server = make_server("valkey", appendonly=True)
    app = redisq.App(server.url, prefix=prefix)
    gate = threading.Event()
    runs: list[int] = []

    @app.task(name="work", queue="q", lease_ms=500)
    def work(ctx: redisq.Context) -> None:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            gate.wait(20)

    with running(redisq.Worker(app, concurrency=1, idle_wait_ms=50)) as worker:
        ref = work.enqueue()
        wait_for(lambda: runs == [1])
        server.stop()
        gate.set()
        # When the outage outlasts the lease, the worker gives the ack up
        wait_for(lambda: worker.metrics.abandoned == 1, timeout=10)
        server.restart()
        # Then the expired lease is reaped and the job runs again: at-least-once
        done = wait_job(app, ref, timeout=20, state=JobState.COMPLETED)
    assert runs == [1, 2]
    assert done.attempts == 2
    assert worker.metrics.completed == 1
    app.close()
