"""The worker registry (issue 13 point 3): heartbeats with a TTL, `Store.workers`,
`redisq workers`, a killed worker dropping out, bounded pruning, and Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.crc import key_slot

import redisq
from redisq.cli import main
from redisq.keys import QueueKeys, registry_keys
from tests.support.cleanup import delete_prefix
from tests.support.clock import TestClock
from tests.support.cluster import ClusterProcess
from tests.support.polling import Deadline, wait_for
from tests.support.servers import redis_binary, valkey_binary

from ._worker_support import running

#: A short TTL: the record is rewritten every 0.5 s.
TTL_MS = 1_500


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def _listed(store: redisq.Store, name: str) -> redisq.WorkerInfo | None:
    return next((w for w in store.workers() if w.name == name), None)


def test_a_running_worker_is_listed_with_its_record_and_gone_at_its_stop(
    app: redisq.App, url: str, prefix: str
) -> None:
    # Given a worker running a job that waits
    release = threading.Event()

    @app.task(queue="q")
    def hold() -> None:
        release.wait(10)

    worker = redisq.Worker(
        app, name="w-listed", concurrency=3, registry_ttl_ms=TTL_MS, handle_signals=False
    )
    with running(worker):
        ref = hold.enqueue()
        # Then its record lists the job in flight (the next heartbeat after the claim)
        info = wait_for(
            lambda: (w := _listed(app.store, "w-listed")) and w.in_flight == 1 and w,
            message="the worker listed with its job",
        )
        assert info.jobs == (f"q/{ref.id}",)
        assert (info.host, info.pid, info.version) == (
            socket.gethostname(),
            os.getpid(),
            redisq.__version__,
        )
        assert (info.queues, info.concurrency, info.pool) == (("q",), 3, "thread")
        assert info.expires_at_ms - info.seen_at_ms == TTL_MS
        assert info.started_at_ms <= int(time.time() * 1000)
        assert info.counters["claimed"] == 1
        # and its counters follow
        release.set()
        wait_for(
            lambda: (w := _listed(app.store, "w-listed")) and w.counters["completed"] == 1,
            message="the completion counted in the record",
        )

        # The async twin lists the same
        async def listed() -> list[str]:
            async with redisq.connect_async(url, prefix=prefix) as store:
                return [w.name for w in await store.workers()]

        assert asyncio.run(listed()) == ["w-listed"]
        worker.stop()
        assert worker.wait_stopped(20)
    # A clean stop removes the record at once
    assert app.store.workers() == []


def test_registry_ttl_ms_is_checked_and_0_keeps_the_worker_out(app: redisq.App) -> None:
    @app.task(queue="q")
    def work() -> None: ...

    with pytest.raises(redisq.InvalidArgument, match="registry_ttl_ms"):
        redisq.Worker(app, registry_ttl_ms=999)
    with running(redisq.Worker(app, registry_ttl_ms=0, handle_signals=False)):
        ref = work.enqueue()
        ref.result(timeout=10)
        assert app.store.workers() == []


_VICTIM = textwrap.dedent(
    """
    import sys
    import redisq

    app = redisq.App(sys.argv[1], prefix=sys.argv[2])

    @app.task(queue="q")
    def work() -> None: ...

    redisq.Worker(app, name="victim", registry_ttl_ms=int(sys.argv[3])).run()
    """
)


def test_a_worker_killed_with_sigkill_drops_out_within_its_ttl(
    real_url: str, prefix: str, tmp_path: Any
) -> None:
    # Given a worker process with a 1.5 s TTL, listed
    script = tmp_path / "victim.py"
    script.write_text(_VICTIM)
    log = tmp_path / "victim.log"
    with log.open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, str(script), real_url, prefix, str(TTL_MS)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    store = redisq.connect(real_url, prefix=prefix)
    try:
        info = wait_for(
            lambda: _listed(store, "victim"),
            timeout=20,
            message=lambda: f"the child listed; its stderr: {log.read_text()}",
        )
        assert info.pid == child.pid
        # When it is killed without a word
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        # Then it drops out of the list once its TTL has passed (not before its last beat's)
        wait_for(lambda: _listed(store, "victim") is None, timeout=TTL_MS / 1000 + 5)
        assert time.monotonic() - killed <= TTL_MS / 1000 + 0.5
        # and listing pruned its name from the index
        assert store.redis.zcard(registry_keys(prefix).workers) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        store.close()


def test_expired_names_are_pruned_from_the_index_in_bounded_steps(url: str, prefix: str) -> None:
    # Given 250 workers' heartbeats on the test clock
    clock = TestClock()
    store = redisq.connect(url, prefix=prefix, clock=clock)
    index = registry_keys(prefix).workers
    try:
        record = {
            "host": "h",
            "pid": 1,
            "version": "v",
            "queues": ["q"],
            "concurrency": 1,
            "pool": "thread",
            "started_at_ms": 0,
            "ttl_ms": 60_000,
            "in_flight": 0,
            "jobs": [],
            "counters": {},
        }
        for n in range(250):
            store._heartbeat(f"w{n:03}", record, 60_000)
        assert len(store.workers()) == 250
        # When their TTL passes on the Redis clock (here the test clock)
        clock.advance(60_001)
        # Then none is listed, and each call drops at most 100 names from the index
        assert store.workers() == []
        assert store.redis.zcard(index) == 150
        store._heartbeat("fresh", record, 60_000)  # a heartbeat prunes as well
        assert store.redis.zcard(index) == 51
        assert [w.name for w in store.workers()] == ["fresh"]
        assert store.redis.zcard(index) == 1
    finally:
        store.close()


def test_bad_heartbeat_arguments_are_refused_before_writing(store: redisq.Store) -> None:
    with pytest.raises(redisq.InvalidArgument, match="ttl_ms"):
        store._heartbeat("w", {}, -1)
    with pytest.raises(redisq.InvalidArgument, match="worker"):
        store._heartbeat("", {}, 1000)
    assert store.workers() == []


def test_redisq_workers_prints_a_table_and_json(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = redisq.App(real_url, prefix=prefix)

    @app.task(queue="emails")
    def work() -> None: ...

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main([*argv, "--url", real_url, "--prefix", prefix])
        return code, capsys.readouterr().out

    try:
        code, out = run("workers")
        assert (code, out.strip()) == (
            0,
            "no running worker (a worker shows up here while it runs)",
        )
        worker = redisq.Worker(app, name="cli-w", registry_ttl_ms=TTL_MS, handle_signals=False)
        with running(worker):
            wait_for(lambda: _listed(app.store, "cli-w"))
            code, out = run("workers")
            assert code == 0
            header, row = out.splitlines()
            assert header.split()[:4] == ["WORKER", "HOST", "PID", "QUEUES"]
            assert row.split()[:4] == ["cli-w", socket.gethostname(), str(os.getpid()), "emails"]
            code, out = run("workers", "--json")
            [doc] = json.loads(out)["workers"]
            assert doc["name"] == "cli-w"
            assert doc["queues"] == ["emails"]
            assert doc["counters"]["completed"] == 0
            code, out = run("workers", "--json", "--queue", "other")
            assert json.loads(out) == {"workers": []}
    finally:
        app.close()


def test_the_registry_lives_in_one_slot_outside_every_queue() -> None:
    keys = registry_keys("redisq")
    assert (keys.workers, keys.worker_prefix) == ("{redisq:}:workers", "{redisq:}:worker:")
    slot = key_slot(b"{redisq:}")
    assert key_slot(keys.workers.encode()) == key_slot((keys.worker_prefix + "w1").encode()) == slot
    # No queue can have the empty name, so no queue's key is a registry key
    with pytest.raises(redisq.InvalidArgument):
        QueueKeys.build("redisq", "")


# ---------------------------------------------------------------------------- Redis Cluster


@pytest.mark.cluster
def test_workers_are_listed_on_a_cluster(cluster_url: str, prefix: str) -> None:
    app = redisq.App(cluster_url, prefix=prefix)

    @app.task(queue="q", store_result=True)
    def work() -> int:
        return 1

    try:
        # (schedules=False: on a cluster the schedule driver's thread outlives Worker.run, a
        # problem of its own, on main too)
        worker = redisq.Worker(
            app, name="cw", registry_ttl_ms=TTL_MS, handle_signals=False, schedules=False
        )
        with running(worker):
            assert work.enqueue().result(timeout=10) == 1
            info = wait_for(
                lambda: (w := _listed(app.store, "cw")) and w.counters["completed"] == 1 and w
            )
            assert info.queues == ("q",)
            worker.stop()
            assert worker.wait_stopped(20)
        assert app.store.workers() == []
    finally:
        app.close()


@pytest.fixture(scope="module")
def partial_cluster() -> Iterator[ClusterProcess]:
    """A 3-master cluster that keeps serving the slots of its live masters."""
    binary = valkey_binary() or redis_binary()
    if binary is None:
        pytest.skip("no server binary for the cluster")
    options = ["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000"]
    with ClusterProcess(binary, extra_args=options) as cluster:
        yield cluster


@pytest.mark.cluster
@pytest.mark.slow
def test_a_worker_whose_registry_master_is_down_keeps_working_and_warns_once(
    partial_cluster: ClusterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = partial_cluster
    # Given a prefix whose worker registry is on another master than queue q and the queue
    # registry (and than the node of the URL, which the client needs to rediscover the
    # cluster)
    first = cluster.nodes[0].port
    for n in range(1000):
        prefix = f"reg{os.getpid()}x{n}"
        registry_node = cluster.node_for_slot(key_slot(f"{{{prefix}:}}".encode()))
        others = {
            cluster.node_for_slot(key_slot(key.encode())).port
            for key in (f"{{{prefix}:q}}", f"{prefix}:queues")  # the queue, the queue registry
        }
        if registry_node.port not in {*others, first}:
            break
    app = redisq.App(cluster.cluster_url, prefix=prefix, socket_timeout=2.0)

    @app.task(queue="q", store_result=True)
    def work(n: int) -> int:
        return n

    worker = redisq.Worker(
        app, name="cut", registry_ttl_ms=TTL_MS, handle_signals=False, schedules=False
    )
    try:
        with caplog.at_level(logging.WARNING, logger="redisq.worker"), running(worker):
            wait_for(lambda: _listed(app.store, "cut"), timeout=10)
            # When the registry's master goes down
            registry_node.kill()
            # Then jobs still run, over several missed heartbeats
            deadline = Deadline(4 * TTL_MS / 1000)
            done = 0
            while not deadline.expired():
                assert work.enqueue(done).result(timeout=10) == done
                done += 1
            assert worker.running
        warnings = [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and "heartbeat" in r.getMessage()
        ]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "the worker goes on working" in warnings[0].getMessage()
    finally:
        app.close()
        if not registry_node.running:
            registry_node.start()
        cluster.wait_ok()
        delete_prefix(cluster.cluster_url, prefix)


def test_a_heartbeat_sent_twice_leaves_one_record(store: redisq.Store, prefix: str) -> None:
    # redis-py re-sends a command after a timeout: each registry write is idempotent
    record = {
        "host": "h",
        "pid": 1,
        "version": "v",
        "queues": ["q"],
        "concurrency": 1,
        "pool": "thread",
        "started_at_ms": 0,
        "ttl_ms": 60_000,
        "in_flight": 0,
        "jobs": [],
        "counters": {},
    }
    first = store._heartbeat("w", record, 60_000)
    again = store._heartbeat("w", record, 60_000)
    assert again >= first
    assert [w.name for w in store.workers()] == ["w"]
    assert store.redis.zcard(registry_keys(prefix).workers) == 1
    assert store._heartbeat("w", {}, 0) == 0
    assert store._heartbeat("w", {}, 0) == 0  # removing twice is harmless
    assert store.workers() == []
    assert store.redis.zcard(registry_keys(prefix).workers) == 0
