"""Concurrency groups under worker processes: four `redisq worker` processes on many groups
(a ledger of lease intervals shows no group ever over its limit), and kill -9 of a holder
(its group's slot comes back when its lease is reaped)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import redisq
from tests.integration._groups_app import GROUP_LIMIT
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration._groups_app:app"


@contextmanager
def _workers(url: str, prefix: str, n: int, *extra: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "REDISQ_PROC_URL": url, "REDISQ_PROC_PREFIX": prefix}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "redisq", "worker", APP, *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(n)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def test_four_workers_never_run_more_of_a_group_than_its_limit(real_url: str, prefix: str) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    ledger = f"{prefix}:ledger"
    groups = [f"tenant-{i}" for i in range(12)]
    # One big tenant and eleven small ones, interleaved at enqueue.
    specs = [
        redisq.Spec({"args": [ledger, g, 20], "kwargs": {}}, group=g)
        for g in groups
        for _ in range(60 if g == "tenant-0" else 8)
    ]
    store.enqueue_many("gq", specs, name="work")
    total = len(specs)
    with _workers(real_url, prefix, 4, "--queues", "gq"):
        wait_for(
            lambda: store.redis.llen(ledger) >= total,
            180,
            0.2,
            message=lambda: f"{store.redis.llen(ledger)} of {total} jobs ran",
        )
    by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for entry in store.redis.lrange(ledger, 0, -1):
        group, start, end = entry.decode().split()
        by_group[group].append((float(start), float(end)))
    assert sorted(by_group) == sorted(groups)
    most = {g: _most_at_once(iv) for g, iv in by_group.items()}
    assert max(most.values()) <= GROUP_LIMIT, most
    # The limit was reached (the check is not vacuous): the big tenant ran two at once.
    assert most["tenant-0"] == GROUP_LIMIT, most
    state = store.concurrency("gq")
    assert (state.grouped_ready, state.grouped_leased, state.leased) == (0, 0, 0)
    store.close()


def test_kill_9_of_a_holder_gives_its_groups_slot_back_when_its_lease_is_reaped(
    real_url: str, prefix: str
) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    ledger = f"{prefix}:ledger"
    first, second = store.enqueue_many(
        "hq", [{"args": [ledger], "kwargs": {}}] * 2, name="hold", group="g", lease_ms=1_000
    )
    with _workers(real_url, prefix, 1, "--queues", "hq") as (holder,):
        wait_for(lambda: store.redis.llen(ledger) == 1, 30, 0.05, message="no job started")
        # The group's limit is one: its second job waits while the first is held.
        assert store.concurrency("hq", second.id).group_leased == 1
        assert store.get("hq", second.id).state == redisq.JobState.READY
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)

    # The holder is gone without a word: its lease (1 s) runs out, a claim reaps it, and the
    # group's slot serves its jobs again (the reaped one first: it is first in its group).
    def taken() -> list[redisq.Job]:
        return list(store.claim("hq", worker="rescuer", count=5, lease_ms=60_000))

    jobs = wait_for(
        taken,
        20,
        0.05,
        message=lambda: (
            f"the group's slot back: {store.concurrency('hq', first.id)},"
            f" {store.get('hq', first.id)}"
        ),
    )
    assert [j.id for j in jobs] == [first.id]
    assert jobs[0].attempts == 2
    assert store.concurrency("hq", first.id).group_leased == 1
    store.ack(jobs[0])
    assert [j.id for j in taken()] == [second.id]
    store.close()


KEY_RATE = 10


@pytest.mark.slow
def test_two_workers_keep_each_keys_own_rate_limit(real_url: str, prefix: str) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    ledger = f"{prefix}:ledger"
    keys = ["a", "b"]
    for key in keys:
        store.set_rate_limit("kq", f"{KEY_RATE}/s", key=key)
    per_key = KEY_RATE * 4
    specs = [
        redisq.Spec({"args": [ledger, key], "kwargs": {}}, group=key)
        for _ in range(per_key)
        for key in keys
    ]
    store.enqueue_many("kq", specs, name="tick")
    with _workers(real_url, prefix, 2, "--queues", "kq"):
        wait_for(
            lambda: store.redis.llen(ledger) >= len(specs),
            60,
            0.2,
            message=lambda: f"{store.redis.llen(ledger)} of {len(specs)} jobs started",
        )
    starts: dict[str, list[float]] = defaultdict(list)
    for entry in store.redis.lrange(ledger, 0, -1):
        key, at = entry.decode().split()
        starts[key].append(float(at))
    for key in keys:
        times = sorted(starts[key])
        busiest = max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))
        assert busiest <= KEY_RATE + 1, f"key {key}: {busiest} starts in one second"
        # Each key used its own budget: 40 jobs at 10/s take about 4 s, not 8 (shared).
        assert times[-1] - times[0] < 6.0, f"key {key} took {times[-1] - times[0]:.1f} s"
    store.close()
