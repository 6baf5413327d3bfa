"""A worker under faults: a refusing queue never stalls it, and it says what happens
(issue 9, points 1, 6 and 9, the worker's side).

- A queue that refuses claims (it migrates, or an ACL denies it) is set aside alone: the other
  queues' jobs are claimed and run, no lease is stranded, a WARNING names the queue and the
  error once, and INFO says when it works again.
- When Redis cannot be reached, the worker says so at WARNING at once, then as a summary while
  it lasts, and at INFO when it comes back.
- An error that repeats (a denied command) is logged once per episode and backed off, not
  retried several times a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq._core.schema import SCHEMA_VERSION
from redisq._sync.store import Store
from redisq.worker import _support
from tests.integration._worker_support import running
from tests.support.polling import Deadline, wait_for
from tests.support.servers import ServerProcess

MIGRATING = f"migrating:{SCHEMA_VERSION}"


def _messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "redisq.worker" and r.levelno == level and text in r.getMessage()
    ]


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    app = redisq.App(url, prefix=prefix)
    yield app
    app.close()


def test_a_migrating_queue_does_not_stall_the_others_nor_strand_their_leases(
    app: redisq.App, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    ran: list[str] = []

    @app.task(name="job", queue="a")
    def job(n: str) -> None:
        ran.append(n)

    # Given 40 jobs in a, and 5 in b, which then starts a migration
    job.enqueue_many([job.call(f"a{n}") for n in range(40)])
    job.options(queue="b").enqueue_many([job.call(f"b{n}") for n in range(5)])
    meta = f"{{{prefix}:b}}:meta"
    app.store.redis.hset(meta, "schema", MIGRATING)
    worker = redisq.Worker(app, queues=["a", "b"], concurrency=4, prefetch=10, idle_wait_ms=500)
    with running(worker):
        # Then a's jobs all run while b refuses, and a WARNING says so once, with the error
        wait_for(
            lambda: app.store.counts("a")[JobState.COMPLETED] == 40,
            timeout=15,
            message=lambda: f"a's 40 jobs to complete; now {app.store.counts('a')}",
        )
        warned = _messages(caplog, logging.WARNING, "queue 'b' refuses claims")
        assert len(warned) == 1
        assert "SchemaVersionError" in warned[0]
        assert "goes on with its other queues" in warned[0]
        # When b's migration ends: its jobs run too, and INFO says that b works again
        app.store.redis.hset(meta, "schema", SCHEMA_VERSION)
        wait_for(
            lambda: app.store.counts("b")[JobState.COMPLETED] == 5,
            timeout=45,  # b is tried again after a pause of at most 30 s
            message=lambda: f"b's 5 jobs to complete; now {app.store.counts('b')}",
        )
        wait_for(lambda: _messages(caplog, logging.INFO, "queue 'b' accepts claims again"))
    # and nothing was left leased when the worker stopped
    assert app.store.counts("a")[JobState.LEASED] == 0
    assert app.store.counts("b")[JobState.LEASED] == 0
    assert sorted(ran) == sorted([f"a{n}" for n in range(40)] + [f"b{n}" for n in range(5)])
    assert len(_messages(caplog, logging.WARNING, "queue 'b' refuses claims")) == 1


def test_a_long_outage_is_reported_at_warning_with_summaries_and_its_end_at_info(
    make_server: Callable[..., ServerProcess],
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    monkeypatch.setattr(_support, "SUMMARY_S", 0.5)  # (60 s in production)
    server = make_server("valkey")
    app = redisq.App(server.url, prefix=prefix, socket_timeout=1, socket_connect_timeout=1)

    @app.task(name="job", queue="q")
    def job(n: int) -> None:
        pass

    job.enqueue(1)
    with running(redisq.Worker(app, concurrency=2, idle_wait_ms=200)) as worker:
        wait_for(lambda: worker.metrics.completed == 1)
        # When Redis goes away for a while
        server.stop()
        # Then the worker says so at WARNING at once, and again as a summary while it lasts
        first = "Redis is unreachable: claiming paused ("
        wait_for(lambda: _messages(caplog, logging.WARNING, first), timeout=10)
        wait_for(
            lambda: _messages(caplog, logging.WARNING, "Redis is unreachable: claiming paused for"),
            timeout=10,
            message="a summary of the outage at WARNING",
        )
        assert len(_messages(caplog, logging.WARNING, first)) == 1
        # When it comes back: INFO says so, and work flows again
        server.start()
        wait_for(
            lambda: _messages(caplog, logging.INFO, "Redis is reachable again"),
            timeout=15,
            message="the end of the outage at INFO",
        )
        job.enqueue(2)
        wait_for(lambda: worker.metrics.completed == 2, timeout=15)
    app.close()


def test_a_denied_command_is_logged_once_per_episode_and_backed_off(
    make_server: Callable[..., ServerProcess],
    real_backend: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    # Given a user that may not run scripts, and a worker that reaps every 100 ms
    server = make_server(real_backend)
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "noscript", "on", ">pw", "~*", "+@all", "-evalsha")
    calls = {"claim": 0, "reap": 0}
    for name in calls:
        monkeypatch.setattr(Store, name, _counted(getattr(Store, name), calls, name))
    url = server.url.replace("redis://", "redis://noscript:pw@")
    app = redisq.App(url, prefix=prefix)

    @app.task(name="job", queue="q")
    def job() -> None:
        pass

    worker = redisq.Worker(app, concurrency=2, idle_wait_ms=200, reaper_interval_ms=100)
    with running(worker):
        # When every script call is denied for 4 s
        wait_for(lambda: calls["claim"] >= 1 and calls["reap"] >= 1)
        start = dict(calls)
        window = Deadline(4.0)  # (watching the retry rate, not ordering events)
        wait_for(window.expired, timeout=10)
        # Then the worker backs off instead of retrying several times a second
        assert calls["claim"] - start["claim"] <= 6
        assert calls["reap"] - start["reap"] <= 4
    # and each loop said so once, clearly, naming the queue and the denial
    claims = _messages(caplog, logging.WARNING, "queue 'q' refuses claims")
    reaps = _messages(caplog, logging.WARNING, "reaping queue 'q' failed")
    assert len(claims) == 1
    assert len(reaps) == 1
    assert "evalsha" in claims[0].lower()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    app.close()


def _counted(method: Any, calls: dict[str, int], name: str) -> Any:
    def counting(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(self, *args, **kwargs)

    return counting
