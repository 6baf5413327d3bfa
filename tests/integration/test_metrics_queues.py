"""Queue-level metrics read from Redis (`QueueCollector`, `redisq metrics`; docs/metrics.md).

On valkey, redis7 and memory (and the local 3-master cluster): depth by state, the oldest
ready job's age (on the test clock, exact), paused, rate limits, the monotonic totals; a
scrape's Redis calls are bounded by the number of queues, whatever the queues hold.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.crc import key_slot

import redisq
from redisq.cli import main
from redisq.keys import QueueKeys, registry_key
from redisq.metrics import QUEUE_METRICS, STANDARD_METRICS, QueueCollector, QueueExporter
from tests.support.clock import TestClock
from tests.support.cluster import ClusterProcess
from tests.support.polling import wait_for
from tests.support.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
Families = dict[str, Any]


def parse(text: str) -> Families:
    return {family.name: family for family in text_string_to_metric_families(text)}


def collect(store: redisq.Store, **options: Any) -> Families:
    registry = CollectorRegistry()
    registry.register(QueueCollector(store, **options))
    return parse(generate_latest(registry).decode())


def value(families: Families, sample: str, **labels: str) -> float | None:
    """The value of one sample; None when there is no such series."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


@pytest.fixture
def clocked(url: str, prefix: str, clock: TestClock) -> Iterator[redisq.Store]:
    store = redisq.connect(url, prefix=prefix, clock=clock)
    yield store
    store.close()


def _payload() -> dict[str, Any]:
    return {"args": [], "kwargs": {}}


def test_depth_age_paused_limits_and_totals(clocked: redisq.Store, clock: TestClock) -> None:
    store = clocked
    # Given "busy": 2 ready, 1 scheduled, 1 leased, 1 completed, 1 dead (the oldest jobs were
    # claimed); paused. And "calm": rate limited, its only job done.
    first = store.enqueue("busy", _payload(), priority=0)
    clock.advance(5_000)
    for _ in range(2):
        store.enqueue("busy", _payload())
    store.enqueue("busy", _payload(), delay_ms=60_000)
    store.enqueue("busy", _payload(), id="done")
    store.enqueue("busy", _payload(), id="bad")
    leased = store.claim("busy", worker="w", count=3)
    assert [j.id for j in leased] == [first.id, *[j.id for j in leased[1:]]]
    store.ack(leased[0])
    store.nack(leased[1], error="no", dead=True)
    store.pause("busy")
    store.enqueue("calm", _payload())
    store.set_rate_limit("calm", "120/m")
    store.ack(store.claim("calm", worker="w")[0])
    clock.advance(250)

    # When scraped
    families = collect(store)

    # Then
    states = {"ready": 2, "scheduled": 1, "leased": 1, "completed": 1, "dead": 1, "cancelled": 0}
    for state, n in states.items():
        assert value(families, "redisq_queue_jobs", queue="busy", state=state) == n, state
    # The next claim takes "done", enqueued (due) 250 ms before the scrape.
    assert value(families, "redisq_queue_oldest_ready_age_seconds", queue="busy") == 0.25
    assert value(families, "redisq_queue_oldest_ready_age_seconds", queue="calm") == 0
    assert value(families, "redisq_queue_paused", queue="busy") == 1
    assert value(families, "redisq_queue_paused", queue="calm") == 0
    assert value(families, "redisq_queue_rate_limit_per_second", queue="calm") == 2
    assert value(families, "redisq_queue_rate_limit_per_second", queue="busy") is None
    held = value(families, "redisq_queue_rate_held_seconds", queue="calm")
    assert held is not None
    assert 0 <= held <= 0.5  # the next job may start half a second after the last one
    assert value(families, "redisq_queue_jobs_enqueued_total", queue="busy") == 6
    assert value(families, "redisq_queue_jobs_completed_total", queue="busy") == 1
    assert value(families, "redisq_queue_jobs_dead_total", queue="busy") == 1
    assert value(families, "redisq_queue_jobs_completed_total", queue="calm") == 1
    assert value(families, "redisq_queue_up") == 1
    assert value(families, "redisq_queue_queues") == 2


def test_the_age_is_the_head_jobs_time_since_due(clocked: redisq.Store, clock: TestClock) -> None:
    store = clocked
    store.enqueue("q", _payload())
    clock.advance(7_000)
    store.enqueue("q", _payload(), delay_ms=1_000)  # due later: not the head
    assert value(collect(store), "redisq_queue_oldest_ready_age_seconds", queue="q") == 7
    # A scheduled job that came due is what the next claim takes first once it is older.
    clock.advance(3_000)
    store.enqueue("r", _payload(), delay_ms=500)
    clock.advance(2_000)
    families = collect(store)
    assert value(families, "redisq_queue_oldest_ready_age_seconds", queue="q") == 12
    assert value(families, "redisq_queue_oldest_ready_age_seconds", queue="r") == 1.5
    assert value(families, "redisq_queue_jobs", queue="r", state="scheduled") == 1


def test_only_the_named_queues(clocked: redisq.Store) -> None:
    for queue in ("a", "b", "c"):
        clocked.enqueue(queue, _payload())
    families = collect(clocked, queues=["c", "a"])
    assert value(families, "redisq_queue_queues") == 2
    assert value(families, "redisq_queue_jobs", queue="b", state="ready") is None
    assert value(families, "redisq_queue_jobs", queue="a", state="ready") == 1
    capped = collect(clocked, max_queues=2)
    assert value(capped, "redisq_queue_queues") == 2
    assert value(capped, "redisq_queue_jobs", queue="c", state="ready") is None


def test_every_documented_name_is_served_and_nothing_else(clocked: redisq.Store) -> None:
    clocked.enqueue("q", _payload())
    clocked.set_rate_limit("q", "5/s")
    families = collect(clocked)
    expected = {spec.name.removesuffix("_total") for spec in QUEUE_METRICS}
    assert set(families) == expected
    for spec in QUEUE_METRICS:
        assert families[spec.name.removesuffix("_total")].type == spec.kind, spec.name


def test_an_unreachable_server_reports_down_and_no_queue(caplog: pytest.LogCaptureFixture) -> None:
    store = redisq.connect("redis://127.0.0.1:1", socket_connect_timeout=1)
    try:
        families = collect(store)
    finally:
        store.close()
    assert value(families, "redisq_queue_up") == 0
    assert value(families, "redisq_queue_queues") == 0
    assert "reading the queues for metrics failed" in caplog.text


def test_a_broken_queue_is_left_out_and_the_others_reported(
    clocked: redisq.Store, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a queue whose ready set is a string (a foreign writer), and a registry entry no
    # queue could have
    clocked.enqueue("good", _payload())
    clocked.enqueue("bad", _payload())
    client = clocked.redis
    ready = QueueKeys.build(prefix, "bad").ready
    client.delete(ready)
    client.set(ready, "not a zset")
    client.sadd(registry_key(prefix), "{no}")

    families = collect(clocked)

    assert value(families, "redisq_queue_up") == 1
    assert value(families, "redisq_queue_queues") == 1
    assert value(families, "redisq_queue_jobs", queue="good", state="ready") == 1
    assert value(families, "redisq_queue_jobs", queue="bad", state="ready") is None
    assert "metrics leave queue 'bad' out" in caplog.text


def test_a_scrape_costs_a_bounded_number_of_calls(
    make_server: Callable[..., ServerProcess], prefix: str
) -> None:
    # Given 3 queues holding 2,000 jobs each, in several states
    server = make_server("valkey")
    store = redisq.connect(server.url, prefix=prefix)
    for queue in ("a", "b", "c"):
        store.enqueue_many(queue, [_payload()] * 1_000)
        store.enqueue_many(queue, [_payload()] * 1_000, delay_ms=60_000)
        store.claim(queue, worker="w", count=100)
    client = server.client()
    transport: Any = store._transport
    sent: list[int] = []  # per round trip, the calls sent in it
    run, pipeline = transport.run, transport.pipeline

    def counted_run(call: Any) -> Any:
        sent.append(1)
        return run(call)

    def counted_pipeline(calls: list[Any]) -> Any:
        sent.append(len(calls))
        return pipeline(calls)

    transport.run, transport.pipeline = counted_run, counted_pipeline
    client.config_resetstat()

    # When scraped
    families = collect(store)

    # Then one SMEMBERS, then TIME and 5 calls per queue in one pipelined round trip, none of
    # them walking the keyspace
    assert sent == [1, 1 + 5 * 3]
    stats = client.info("commandstats")
    assert not {"keys", "scan", "zscan", "hscan", "sscan"} & {
        name.removeprefix("cmdstat_") for name in stats
    }
    assert value(families, "redisq_queue_jobs", queue="b", state="ready") == 900
    store.close()


@pytest.mark.cluster
def test_one_scrape_covers_queues_on_three_masters(
    redis_cluster: ClusterProcess, cluster_url: str, prefix: str
) -> None:
    chosen: dict[int, str] = {}
    for n in range(1000):
        slot = key_slot(f"{{{prefix}:q{n}}}:ready".encode())
        chosen.setdefault(redis_cluster.node_for_slot(slot).port, f"q{n}")
        if len(chosen) == 3:
            break
    queues = list(chosen.values())
    store = redisq.connect(cluster_url, prefix=prefix)
    try:
        for n, queue in enumerate(queues):
            store.enqueue_many(queue, [_payload()] * (n + 1))
        store.pause(queues[2])
        families = collect(store)
    finally:
        store.close()
    assert value(families, "redisq_queue_up") == 1
    assert value(families, "redisq_queue_queues") == 3
    for n, queue in enumerate(queues):
        assert value(families, "redisq_queue_jobs", queue=queue, state="ready") == n + 1
        age = value(families, "redisq_queue_oldest_ready_age_seconds", queue=queue)
        assert age is not None
        assert 0 <= age < 60
    assert value(families, "redisq_queue_paused", queue=queues[2]) == 1


def test_the_exporter_serves_over_http(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    store.enqueue("q", _payload())
    exporter = QueueExporter(store, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(exporter.url, timeout=10) as response:
            families = parse(response.read().decode())
    finally:
        exporter.close()
        store.close()
    assert value(families, "redisq_queue_jobs", queue="q", state="ready") == 1
    standard = {n.removesuffix("_total") for n in STANDARD_METRICS}
    queue_names = {spec.name.removesuffix("_total") for spec in QUEUE_METRICS}
    assert set(families) - queue_names <= standard


def test_the_command_serves_until_sigterm(real_url: str, prefix: str) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    store.enqueue_many("q", [_payload()] * 4)
    store.close()
    command = [sys.executable, "-m", "redisq", "metrics", "--url", real_url, "--prefix", prefix]
    command += ["--port", "0", "--host", "127.0.0.1", "--queue", "q"]
    process = subprocess.Popen(
        command, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[str] = []
    stream = process.stderr
    assert stream is not None
    reader = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    reader.start()
    try:
        found = wait_for(
            lambda: re.search(r"at (http://\S+/metrics)", "".join(lines)),
            20,
            message=lambda: "".join(lines),
        )
        with urllib.request.urlopen(found.group(1), timeout=10) as response:
            families = parse(response.read().decode())
        assert value(families, "redisq_queue_jobs", queue="q", state="ready") == 4
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        reader.join(5)
        stream.close()


def test_the_command_refuses_a_port_in_use(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["metrics", "--url", real_url, "--prefix", prefix, "--host", "127.0.0.1"]
        code = main([*argv, "--port", str(port)])
    assert code == 2
    assert f"cannot serve queue metrics on 127.0.0.1:{port}" in capsys.readouterr().err
