"""Dependencies across queues (and cluster slots): each step is atomic in its own slot and
idempotent, and a process killed (kill -9) between two steps loses no release and makes none
twice.

Enqueue: deps_link in each parent's queue (checks the parents, records the child), then
enqueue_deps in the child's queue. Release: the parent's end writes an outbox entry in its own
slot; reap of the parent's queue delivers it (deps_deliver in the child's slot, idempotent) and
then removes it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis.crc

import redisq
from redisq import JobState
from redisq._core import deps
from redisq.errors import DependencyNotFound
from redisq.keys import QueueKeys


def _state(store: Any, queue: str, jid: str) -> JobState:
    job = store.get(queue, jid)
    assert job is not None
    return job.state


def test_a_child_waits_for_a_parent_in_another_queue(client: Any) -> None:
    a = client.enqueue("up", "a", id="a")
    b = client.enqueue("down", "b", id="b")
    child = client.enqueue("down", "c", id="c", depends_on=[a, b])
    assert child.state is JobState.WAITING
    (job,) = client.claim("up", worker="w")
    client.ack(job)
    # The release waits in the parent queue's outbox until its reap delivers it.
    assert _state(client, "down", "c") is JobState.WAITING
    client.reap("up")
    assert _state(client, "down", "c") is JobState.WAITING  # b still runs
    (job,) = client.claim("down", worker="w")
    assert job.id == "b"
    client.ack(job)
    assert _state(client, "down", "c") is JobState.READY


def test_a_failed_parent_in_another_queue_cancels_the_child(client: Any) -> None:
    client.enqueue("up", "x", id="x", max_attempts=1)
    client.enqueue("down", "c", id="c", depends_on=[("up", "x")])
    client.enqueue("down", "d", id="d", depends_on=["c"])
    (job,) = client.claim("up", worker="w")
    client.nack(job, dead=True)
    client.reap("up")
    got = client.get("down", "c")
    assert got.state is JobState.CANCELLED
    assert got.last_error == "parent x (queue up) ended dead"
    client.reap("down")  # the cascade
    assert _state(client, "down", "d") is JobState.CANCELLED


def test_a_missing_parent_in_another_queue_writes_nothing(client: Any) -> None:
    client.enqueue("up", "a", id="a")
    with pytest.raises(DependencyNotFound) as missing:
        client.enqueue("down", "c", id="c", depends_on=[("up", "a"), ("up", "nope")])
    assert (missing.value.queue, missing.value.job_id) == ("up", "nope")
    assert client.get("down", "c") is None
    (job,) = client.claim("up", worker="w")
    client.ack(job)
    assert client.reap("up") == 0


def test_a_parent_that_ends_between_the_two_enqueue_steps(url: str, prefix: str) -> None:
    # The parent completes and its release is delivered after the link, before the child
    # exists: the release is kept (an early record) and read by the child's enqueue.
    with redisq.connect(url, prefix=prefix) as store, redisq.connect(url, prefix=prefix) as other:
        store.enqueue("up", "a", id="a")

        def finish_parent(point: str) -> None:
            if point == "linked":
                (job,) = other.claim("up", worker="w")
                other.ack(job)
                other.reap("up")

        deps.crash_point = finish_parent
        try:
            child = store.enqueue("down", "c", id="c", depends_on=[("up", "a")])
        finally:
            deps.crash_point = None
        assert child.state is JobState.READY
        keys = QueueKeys.build(prefix, "down")
        assert store.redis.hlen(keys.deps_prefix + "early") == 0


_KILLED = """
import os, signal, sys
import redisq
from redisq._core import deps

url, prefix, point, what = sys.argv[1:5]

def die(at):
    if at == point:
        os.kill(os.getpid(), signal.SIGKILL)

deps.crash_point = die
store = redisq.connect(url, prefix=prefix)
if what == "reap":
    store.reap("up")
else:
    store.enqueue("down", "c", id="c", depends_on=[("up", "a")])
raise SystemExit("not killed")
"""


def _killed(tmp_path: Path, url: str, prefix: str, point: str, what: str) -> None:
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(_KILLED))
    done = subprocess.run(
        [sys.executable, str(script), url, prefix, point, what],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def _slots_differ(prefix: str) -> None:
    up = redis.crc.key_slot(QueueKeys.build(prefix, "up").meta.encode())
    down = redis.crc.key_slot(QueueKeys.build(prefix, "down").meta.encode())
    assert up != down


@pytest.mark.cluster
def test_kill_between_delivery_and_outbox_removal_releases_once(
    cluster_url: str, prefix: str, tmp_path: Path
) -> None:
    _slots_differ(prefix)
    with redisq.connect(cluster_url, prefix=prefix) as store:
        store.enqueue("up", "a", id="a")
        store.enqueue("down", "c", id="c", depends_on=[("up", "a")])
        (job,) = store.claim("up", worker="w")
        store.ack(job)
        outbox = QueueKeys.build(prefix, "up").deps_prefix + "outbox"
        assert store.redis.zcard(outbox) == 1
        # When a process delivers the release and is killed before removing the entry,
        _killed(tmp_path, cluster_url, prefix, "delivered", "reap")
        # then the child was released, and the entry is still there.
        assert _state(store, "down", "c") is JobState.READY
        assert store.redis.zcard(outbox) == 1
        # The child runs and completes; the next reap delivers the entry again, which
        # changes nothing (no second release), and removes it.
        (job,) = store.claim("down", worker="w")
        store.ack(job)
        store.reap("up")
        assert store.redis.zcard(outbox) == 0
        assert _state(store, "down", "c") is JobState.COMPLETED
        assert store.counts("down")[JobState.READY] == 0
        assert store.get("down", "c").attempts == 1


@pytest.mark.cluster
def test_kill_before_delivery_loses_no_release(
    cluster_url: str, prefix: str, tmp_path: Path
) -> None:
    # The entry is written by the parent's ack itself, in the parent's slot: a deliverer
    # killed after reading it, before sending it, leaves it for the next.
    _slots_differ(prefix)
    with redisq.connect(cluster_url, prefix=prefix) as store:
        store.enqueue("up", "a", id="a")
        store.enqueue("down", "c", id="c", depends_on=[("up", "a")])
        (job,) = store.claim("up", worker="w")
        store.ack(job)
        _killed(tmp_path, cluster_url, prefix, "read", "reap")
        assert _state(store, "down", "c") is JobState.WAITING
        store.reap("up")
        assert _state(store, "down", "c") is JobState.READY
        assert store.get("down", "c").attempts == 0


@pytest.mark.cluster
def test_kill_between_link_and_create_then_a_retry(
    cluster_url: str, prefix: str, tmp_path: Path
) -> None:
    _slots_differ(prefix)
    with redisq.connect(cluster_url, prefix=prefix) as store:
        store.enqueue("up", "a", id="a")
        # The enqueue's process is killed after the link, before the child exists.
        _killed(tmp_path, cluster_url, prefix, "linked", "enqueue")
        assert store.get("down", "c") is None
        # The parent completes; its release finds no child and is kept as an early record.
        (job,) = store.claim("up", worker="w")
        store.ack(job)
        store.reap("up")
        early = QueueKeys.build(prefix, "down").deps_prefix + "early"
        assert store.redis.hlen(early) == 1
        # The client's retry of the enqueue creates the child once, released.
        child = store.enqueue("down", "c", id="c", depends_on=[("up", "a")])
        assert child.state is JobState.READY
        assert store.redis.hlen(early) == 0
        again = store.enqueue("down", "c", id="c", depends_on=[("up", "a")])
        assert again == child
        assert store.counts("down")[JobState.READY] == 1
        assert store.totals("down")["enqueued"] == 1
