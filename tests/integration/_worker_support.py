"""Helpers for the worker tests: run a Worker in a thread, and make Apps per test."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import redisq
from tests.support.polling import wait_for

__all__ = ["job_state", "running", "wait_job"]


@contextlib.contextmanager
def running(worker: redisq.Worker) -> Iterator[redisq.Worker]:
    """Run `worker` in a background thread; stop it at once and join it on exit."""
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop(grace=False)
        thread.join(20)
        assert not thread.is_alive(), "the worker did not stop within 20 s"


def job_state(app: redisq.App, queue: str, job_id: str) -> redisq.Job:
    """The job's current snapshot (it must exist)."""
    job = app.store.get(queue, job_id)
    assert job is not None, f"job {job_id} of {queue} is gone"
    return job


def wait_job(
    app: redisq.App, ref: redisq.JobRef, timeout: float = 10.0, **expected: Any
) -> redisq.Job:
    """Poll the job until every given field has the expected value; return the snapshot."""

    def matches() -> redisq.Job | None:
        job = job_state(app, ref.queue, ref.id)
        return job if all(getattr(job, k) == v for k, v in expected.items()) else None

    return wait_for(
        matches,
        timeout=timeout,
        message=lambda: f"job {ref.id} with {expected}; now {job_state(app, ref.queue, ref.id)}",
    )
