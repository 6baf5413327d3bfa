"""`redisq worker --burst` and `Worker(burst=True)`: stop by themselves, exit code 0, once
the queues are empty (docs/cli.md): nothing ready or due, no job of the worker in flight;
scheduled jobs due later and waiting jobs do not keep them running."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import redisq
from redisq import JobState

from ._worker_support import job_state

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration._proc_app:app"
ADD = "tests.integration._proc_app.add"
NAP = "tests.integration._proc_app.nap"


def _payload(*args: object) -> dict[str, object]:
    return {"args": list(args), "kwargs": {}}


def _burst(
    url: str, prefix: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDISQ_PROC_URL": url, "REDISQ_PROC_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "redisq", "worker", APP, "--burst", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def store(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    made = redisq.connect(real_url, prefix=prefix)
    yield made
    made.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_cli_burst_exits_0_with_every_ready_job_done(
    real_url: str, prefix: str, store: redisq.Store, processes: int
) -> None:
    # Given ready jobs, a job due in an hour, and one waiting for that one
    ready = [store.enqueue("q", _payload(n, 1), name=ADD) for n in range(40)]
    later = store.enqueue("q", _payload(0, 0), name=ADD, delay_ms=3_600_000)
    waiting = store.enqueue("q", _payload(0, 0), name=ADD, depends_on=[later.id])
    # When a burst worker runs (one process or several)
    done = _burst(real_url, prefix, "--processes", str(processes), "--concurrency", "4")
    # Then it exits 0 by itself, every ready job completed, nothing left leased
    assert done.returncode == 0, done.stderr
    assert "burst done" in done.stderr
    for job in ready:
        got = store.get("q", job.id)
        assert got is not None
        assert got.state is JobState.COMPLETED
        assert got.result["sum"] == job.payload["args"][0] + 1
    assert store.counts("q")[JobState.LEASED] == 0
    # the scheduled job far ahead and the waiting one did not keep it running
    assert job_state_of(store, later.id) is JobState.SCHEDULED
    assert job_state_of(store, waiting.id) is JobState.WAITING


def test_cli_burst_on_empty_queues_exits_0_at_once(real_url: str, prefix: str) -> None:
    done = _burst(real_url, prefix, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "burst done" in done.stderr


def test_cli_burst_runs_a_job_that_becomes_due_while_it_works(
    real_url: str, prefix: str, store: redisq.Store
) -> None:
    # Given a job that keeps the worker busy 1.5 s, and one due 300 ms from now
    busy = store.enqueue("q", _payload(1500), name=NAP)
    soon = store.enqueue("q", _payload(2, 2), name=ADD, delay_ms=300)
    done = _burst(real_url, prefix, "--concurrency", "2")
    assert done.returncode == 0, done.stderr
    # Then the job that became due during the burst ran too
    assert job_state_of(store, busy.id) is JobState.COMPLETED
    assert job_state_of(store, soon.id) is JobState.COMPLETED


def test_cli_burst_keeps_the_error_exit_codes(prefix: str) -> None:
    # an unreachable server at start: 3, as without --burst
    done = _burst("redis://127.0.0.1:1/0", prefix, timeout=30)
    assert done.returncode == 3, done.stderr


def job_state_of(store: redisq.Store, id: str) -> JobState:
    job = store.get("q", id)
    assert job is not None
    return job.state


# ------------------------------------------------------------------------- in-process


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_burst_worker_returns_from_run_once_empty(app: redisq.App, pool: str) -> None:
    attempts: list[int] = []

    @app.task(name="once", queue="q", max_attempts=3, backoff=redisq.backoff.fixed(0))
    def once(n: int) -> None:
        attempts.append(n)
        if attempts.count(n) == 1 and n == 0:
            raise ConnectionError("first attempt fails; the retry is due at once")

    refs = [once.enqueue(n) for n in range(20)]
    later = once.options(delay_ms=3_600_000).enqueue(99)
    worker = redisq.Worker(app, burst=True, pool=pool, concurrency=3)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the burst worker did not stop"
    assert worker.drained
    assert all(job_state(app, "q", r.id).state is JobState.COMPLETED for r in refs)
    assert job_state(app, "q", later.id).state is JobState.SCHEDULED
    assert app.store.counts("q")[JobState.LEASED] == 0
    assert worker.metrics.completed == 20


def test_burst_is_a_bool(app: redisq.App) -> None:
    @app.task(name="noop", queue="q")
    def noop() -> None:
        return None

    with pytest.raises(redisq.InvalidArgument, match="burst"):
        redisq.Worker(app, burst=1)  # type: ignore[arg-type]
