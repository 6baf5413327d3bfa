"""Pausing a queue stops every worker from taking its jobs; resuming wakes them at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import redisq
from redisq import JobState
from tests.support.polling import wait_for

from ._worker_support import running

#: Longer than any wait below: a worker that only noticed the resume on this timeout would fail.
IDLE_WAIT_MS = 60_000


@pytest.fixture
def app(real_url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(real_url, prefix=prefix)
    yield made
    made.close()


def test_pause_holds_jobs_for_every_worker_and_resume_wakes_them(app: redisq.App) -> None:
    ran: list[int] = []
    lock = threading.Lock()

    @app.task(queue="mail")
    def send(n: int) -> None:
        with lock:
            ran.append(n)

    @app.task(queue="other")
    def other(n: int) -> None:
        with lock:
            ran.append(n)

    # Given two workers idle on both queues, blocked on Redis for up to a minute each time
    workers = [
        redisq.Worker(app, concurrency=2, idle_wait_ms=IDLE_WAIT_MS, grace_ms=0, name=f"w{i}")
        for i in range(2)
    ]
    with running(workers[0]), running(workers[1]):
        send.enqueue(0)
        wait_for(lambda: ran == [0], timeout=10, message=lambda: f"ran {ran}")

        # When "mail" is paused, its new jobs wait, while the workers keep claiming: a job on
        # "other", enqueued after them, runs (each claim round asks both queues)
        app.store.pause("mail")
        refs = [send.enqueue(n) for n in range(1, 6)]
        other.enqueue(100)
        wait_for(lambda: 100 in ran, timeout=10, message=lambda: f"ran {ran}")
        assert sorted(ran) == [0, 100]
        assert app.store.counts("mail")[JobState.READY] == 5

        # When it is resumed, the blocked workers are woken (not by their one-minute timeout)
        app.store.resume("mail")
        wait_for(lambda: len(ran) == 7, timeout=10, message=lambda: f"ran {ran}")
        assert sorted(ran) == [0, 1, 2, 3, 4, 5, 100]
        # (the acks follow the handlers' returns: wait for them)
        wait_for(
            lambda: {app.store.get("mail", r.id).state for r in refs} == {JobState.COMPLETED},
            timeout=10,
            message=lambda: f"states {[app.store.get('mail', r.id).state for r in refs]}",
        )
