"""A queue's event stream (issue 13 point 2): off by default, written by the scripts themselves.

Each test runs on every backend (valkey, redis7, memory) and on both stores (the `client`
fixture), on the test clock, so an event's `at_ms` is the transition's own time.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import redisq
from redisq.cli import main
from redisq.errors import InvalidArgument
from redisq.keys import QueueKeys
from tests.support.polling import wait_for


def _life(client: Any, clock: Any) -> dict[str, redisq.Job]:
    """Run three jobs through every transition that writes an event."""
    a = client.enqueue("q", {"n": 1}, name="t.a", max_attempts=3)
    (c,) = client.claim("q", worker="w1", lease_ms=1_000)
    client.progress(c, 50)
    client.nack(c, error="boom", delay_ms=0)  # retried
    (c,) = client.claim("q", worker="w2", lease_ms=1_000)
    clock.advance(5_000)
    assert client.reap("q") == 1  # lease-lost, then reaped
    (c,) = client.claim("q", worker="w3", lease_ms=1_000)
    client.ack(c, "ok")
    b = client.enqueue("q", {"n": 2}, name="t.b")
    (c,) = client.claim("q", worker="w1")
    client.nack(c, error="fatal", dead=True)
    d = client.enqueue("q", {"n": 3}, name="t.d")
    assert client.cancel("q", d.id)
    return {"a": a, "b": b, "d": d}


def test_events_are_off_by_default_and_write_no_key(
    client: Any, clock: Any, raw: Any, prefix: str
) -> None:
    _life(client, clock)
    keys = QueueKeys.build(prefix, "q")
    assert raw.exists(keys.events) == 0
    assert client.events("q") == []
    assert raw.keys(keys.wait_prefix + "*") == []
    assert raw.hget(keys.meta, "events") is None


def test_every_event_of_a_job_s_life_in_order(client: Any, clock: Any) -> None:
    client.set_events("q", maxlen=1_000)
    start = clock()
    jobs = _life(client, clock)
    got = client.events("q", count=1_000)
    by_job: dict[str, list[tuple[str, int, str]]] = {}
    for e in got:
        assert e.queue == "q"
        by_job.setdefault(e.job_id, []).append((e.event, e.attempt, e.worker))
    assert by_job[jobs["a"].id] == [
        ("enqueued", 0, ""),
        ("started", 1, "w1"),
        ("progress", 1, "w1"),
        ("retried", 1, "w1"),
        ("started", 2, "w2"),
        ("lease-lost", 2, "w2"),
        ("reaped", 2, "w2"),
        ("started", 3, "w3"),
        ("completed", 3, "w3"),
    ]
    assert by_job[jobs["b"].id] == [("enqueued", 0, ""), ("started", 1, "w1"), ("dead", 1, "w1")]
    assert by_job[jobs["d"].id] == [("enqueued", 0, ""), ("cancelled", 0, "")]
    assert {e.name for e in got if e.job_id == jobs["a"].id} == {"t.a"}
    # The times are the scripts' clock (the test clock), in order.
    ats = [e.at_ms for e in got]
    assert ats == sorted(ats)
    assert ats[0] == start
    assert ats[-1] == start + 5_000
    # Reading on from an entry gives what follows it.
    assert client.events("q", since=got[3].id, count=1_000) == got[4:]
    assert client.events("q", since=got[-1].id) == []


def test_a_re_sent_ack_or_nack_writes_no_second_event(client: Any) -> None:
    client.set_events("q")
    client.enqueue("q", 1)
    (c,) = client.claim("q", worker="w")
    client.ack(c, "r")
    client.ack(c, "r")  # the client's retry of the same ack (same token): no second completion
    client.enqueue("q", 2)
    (d,) = client.claim("q", worker="w")
    client.nack(d, dead=True)
    client.nack(d, dead=True)
    kinds = [e.event for e in client.events("q")]
    assert kinds == ["enqueued", "started", "completed", "enqueued", "started", "dead"]


def test_enqueue_many_claim_many_and_ack_many_write_one_event_per_job(client: Any) -> None:
    client.set_events("q")
    jobs = client.enqueue_many("q", list(range(5)))
    claimed = client.claim("q", worker="w", count=5)
    client.ack_many(claimed)
    got = client.events("q", count=100)
    for kind in ("enqueued", "started", "completed"):
        assert sorted(e.job_id for e in got if e.event == kind) == sorted(j.id for j in jobs)


def test_turning_events_off_stops_the_writes_and_keeps_the_entries(
    client: Any, raw: Any, prefix: str
) -> None:
    client.set_events("q")
    client.enqueue("q", 1)
    client.set_events("q", False)
    client.enqueue("q", 2)
    assert [e.event for e in client.events("q")] == ["enqueued"]
    assert raw.hget(QueueKeys.build(prefix, "q").meta, "events") is None


def test_the_stream_is_capped(client: Any, raw: Any, prefix: str) -> None:
    client.set_events("q", maxlen=10)
    client.enqueue_many("q", list(range(500)))
    # MAXLEN ~ trims whole stream nodes (100 entries by default), so about 10 stay.
    assert raw.xlen(QueueKeys.build(prefix, "q").events) < 250


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.set_events("q", maxlen=0), "maxlen"),
        (lambda c: c.set_events("q", maxlen=10**8), "maxlen"),
        (lambda c: c.set_events("q", on=1), "on"),
        (lambda c: c.events("q", since="latest"), "since"),
        (lambda c: c.events("q", count=0), "count"),
        (lambda c: c.events("q", block_ms=-1), "block_ms"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(
    client: Any, raw: Any, prefix: str, call: Any, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        call(client)
    assert caught.value.field == field
    assert raw.exists(QueueKeys.build(prefix, "q").meta) == 0


def test_a_blocking_read_returns_the_next_event(store: redisq.Store, url: str, prefix: str) -> None:
    store.set_events("q")
    got: list[redisq.Event] = []
    follower = redisq.connect(url, prefix=prefix)

    def read() -> None:
        while not got:
            got.extend(follower.events("q", since="$", block_ms=1_000))

    reader = threading.Thread(target=read)
    reader.start()
    # Enqueue until the reader's blocking read has seen one (a read that began after an
    # enqueue waits for the next).
    wait_for(lambda: got or not store.enqueue("q", 1), timeout=30)
    reader.join(30)
    follower.close()
    assert got
    assert got[0].event == "enqueued"


def test_events_on_a_cluster(cluster_url: str, prefix: str) -> None:
    with redisq.connect(cluster_url, prefix=prefix) as store:
        store.set_events("q")
        store.enqueue("q", 1)
        (c,) = store.claim("q", worker="w")
        store.ack(c)
        assert [e.event for e in store.events("q")] == ["enqueued", "started", "completed"]


def test_the_events_command_turns_the_stream_on_and_reads_it(
    url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--url", url, "--prefix", prefix]
    assert main(["events", "q", "--on", "--maxlen", "500", *common]) == 0
    with redisq.connect(url, prefix=prefix) as store:
        job = store.enqueue("q", 1, name="t")
    capsys.readouterr()
    assert main(["events", "q", "--json", *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    (doc,) = (json.loads(line) for line in lines)
    assert (doc["event"], doc["job_id"], doc["name"]) == ("enqueued", job.id, "t")
    assert main(["events", "q", "--since", doc["id"], *common]) == 0
    assert capsys.readouterr().out == ""
    assert main(["events", "q", "--off", *common]) == 0
    assert main(["events", "nope", *common]) != 0


def test_a_stream_key_of_another_type_loses_events_not_transitions(
    client: Any, raw: Any, prefix: str
) -> None:
    keys = QueueKeys.build(prefix, "q")
    client.set_events("q")
    raw.set(keys.events, "not a stream")
    job = client.enqueue("q", 1)
    client.enqueue_many("q", [2, 3])
    claimed = client.claim("q", worker="w", count=3)
    client.ack_many(claimed)
    assert client.get("q", job.id).state is redisq.JobState.COMPLETED
    assert raw.get(keys.events) == b"not a stream"


def test_a_job_that_expires_is_cancelled_in_the_stream(client: Any, clock: Any) -> None:
    client.set_events("q")
    late = client.enqueue("q", 1, expires_ms=1_000)
    clock.advance(2_000)
    assert client.claim("q", worker="w") == []
    got = [(e.event, e.job_id) for e in client.events("q")]
    assert got == [("enqueued", late.id), ("cancelled", late.id)]


def test_events_follow_prints_new_events_until_ctrl_c(real_url: str, prefix: str) -> None:
    with redisq.connect(real_url, prefix=prefix) as store:
        store.set_events("q")
        store.enqueue("q", 0)  # the queue exists; --follow starts after this one
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redisq",
                "events",
                "q",
                "--follow",
                "--json",
                *_at(real_url, prefix),
            ],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True
        ).start()
        try:
            # Enqueue until the follower, once it reads, prints one (it starts from '$').
            first = wait_for(lambda: (store.enqueue("q", 1) and None) or _next(lines), timeout=30)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    assert json.loads(first)["event"] == "enqueued"
    assert process.returncode == 0, err


def _at(url: str, prefix: str) -> list[str]:
    return ["--url", url, "--prefix", prefix]


def _next(lines: queue.Queue[str]) -> str | None:
    try:
        return lines.get(timeout=0.05)
    except queue.Empty:
        return None
