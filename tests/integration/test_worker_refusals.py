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
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState
from redisq._core.schema import SCHEMA_VERSION
from redisq._sync.store import Store
from redisq.worker import _support
from redisq.worker._keeper import Keeper
from redisq.worker._state import State
from redisq.worker._support import WorkerMetrics
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


def test_the_reaper_goes_on_past_a_failing_queue(
    app: redisq.App, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    # Given expired leases in a and c, and b (reaped first) in the middle of a migration
    store = app.store
    deadline = 0
    for queue in ("a", "b", "c"):
        store.enqueue_many(queue, [1, 2, 3])
        jobs = store.claim(queue, worker="gone", count=3, lease_ms=1)
        deadline = max([deadline, *(j.lease_deadline_ms or 0 for j in jobs)])
    wait_for(lambda: _redis_ms(store) > deadline, message="the leases to end")
    app.store.redis.hset(f"{{{prefix}:b}}:meta", "schema", MIGRATING)
    keeper = Keeper(
        store,
        State(1, 0, lambda: None, lambda _: None),
        ["b", "a", "c"],
        10_000,
        WorkerMetrics(),
        lambda _: None,
        lambda _: 0,
        "test-keeper",
    )
    assert store.counts("a")[JobState.LEASED] == store.counts("c")[JobState.LEASED] == 3
    # When the keeper reaps, twice
    keeper._reap()
    keeper._reap()
    # Then a and c were reaped, and b's failure was said once, with the queue and the error
    assert store.counts("a")[JobState.READY] == store.counts("c")[JobState.READY] == 3
    warned = _messages(caplog, logging.WARNING, "reaping queue 'b' failed")
    assert len(warned) == 1
    assert "SchemaVersionError" in warned[0]


def _redis_ms(store: Store) -> int:
    seconds, micros = store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_renewals_go_on_for_the_other_queues_while_one_refuses(
    app: redisq.App, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    gates = {"a": threading.Event(), "b": threading.Event()}
    runs: list[str] = []

    @app.task(name="hold", queue="a", lease_ms=600)  # renewed every 200 ms
    def hold(q: str) -> None:
        runs.append(q)
        gates[q].wait(20)

    # Given a long job in a and one in b, both running
    a = hold.enqueue("a")
    hold.options(queue="b").enqueue("b")
    worker = redisq.Worker(app, queues=["a", "b"], concurrency=2, idle_wait_ms=500)
    with running(worker):
        wait_for(lambda: sorted(runs) == ["a", "b"])
        # When b starts a migration: its renewals are refused
        app.store.redis.hset(f"{{{prefix}:b}}:meta", "schema", MIGRATING)
        # Then a's lease is still renewed, well past its length
        first = app.store.get("a", a.id)
        assert first is not None
        seen = {first.lease_deadline_ms}

        def renewed_thrice() -> bool:
            job = app.store.get("a", a.id)
            assert job is not None
            seen.add(job.lease_deadline_ms)
            return len(seen) >= 4

        wait_for(renewed_thrice, timeout=10, message="a's lease to be renewed three times")
        gates["a"].set()
        wait_for(lambda: app.store.counts("a")[JobState.COMPLETED] == 1)
        done = app.store.get("a", a.id)
        assert done is not None
        assert done.attempts == 1
        warned = _messages(caplog, logging.WARNING, "lease renewal refused by queue 'b'")
        assert len(warned) == 1
        gates["b"].set()
    assert runs.count("a") == 1
    assert worker.metrics.lease_lost <= 1  # (b's, once its lease ran out)


def test_an_ack_a_queue_refuses_is_sent_again_until_it_goes_through(
    app: redisq.App, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisq.worker")
    gate = threading.Event()
    runs: list[str] = []

    @app.task(name="hold", queue="a", lease_ms=30_000)
    def hold(q: str) -> None:
        runs.append(q)
        if q == "b":
            gate.wait(20)

    # Given a job of b running
    b = hold.options(queue="b").enqueue("b")
    worker = redisq.Worker(app, queues=["a", "b"], concurrency=2, idle_wait_ms=500)
    with running(worker):
        wait_for(lambda: runs == ["b"])
        # When b starts a migration, and the job ends meanwhile: its ack is refused
        meta = f"{{{prefix}:b}}:meta"
        app.store.redis.hset(meta, "schema", MIGRATING)
        gate.set()
        wait_for(lambda: _messages(caplog, logging.WARNING, "queue 'b' refuses outcomes"))
        # Then a's jobs still complete meanwhile
        refs = [hold.enqueue(f"a{n}") for n in range(5)]
        wait_for(lambda: app.store.counts("a")[JobState.COMPLETED] == len(refs))
        # and once the migration is over (within the lease), b's ack goes through: it ran once
        app.store.redis.hset(meta, "schema", SCHEMA_VERSION)
        wait_for(lambda: app.store.counts("b")[JobState.COMPLETED] == 1, timeout=15)
        wait_for(lambda: _messages(caplog, logging.INFO, "queue 'b' accepts outcomes again"))
    done = app.store.get("b", b.id)
    assert done is not None
    assert done.attempts == 1
    assert runs.count("b") == 1
    assert len(_messages(caplog, logging.WARNING, "queue 'b' refuses outcomes")) == 1


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
