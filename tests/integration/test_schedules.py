"""Periodic schedules on every backend (valkey, redis7, memory; sync and async stores).

Time moves on the test clock (`clock=` on connect): the scripts decide on its value as they
would on the Redis clock, so outages and DST changes take no waiting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import redisq
from redisq import InvalidArgument, JobState, ScheduleNotFound
from redisq._core import schedules as sched
from redisq._core.calls import Call
from redisq.keys import QueueKeys
from tests.support.clock import TestClock

Q = "periodic"
MIN = 60_000
PARIS = ZoneInfo("Europe/Paris")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def job_ids(raw: Any, prefix: str, queue: str = Q) -> list[str]:
    keys = QueueKeys.build(prefix, queue)
    return sorted(k.decode() for k in raw.hkeys(keys.jobs))


def ticks_of(ids: list[str], schedule_id: str = "s") -> list[int]:
    return sorted(int(i.split("@", 1)[1]) for i in ids if i.startswith(f"{schedule_id}@"))


# ------------------------------------------------------------------------- upsert and ticks


def test_a_tick_becomes_one_job_with_a_deterministic_id(client: Any, clock: TestClock) -> None:
    # Given a schedule every minute from now
    start = clock.now_ms
    s = client.upsert_schedule("s", every_ms=MIN, queue=Q, name="t", payload={"x": 1})
    assert s.next_run_ms == start + MIN
    assert s.runs == 0
    assert s.last_run_ms is None
    # When nothing is due yet, a pass enqueues nothing
    assert client.tick_schedules(Q).enqueued == []
    # When the tick is due
    clock.advance(MIN)
    t = client.tick_schedules(Q)
    # Then exactly that tick's job is there, ready, with the schedule's payload and name
    assert t.enqueued == [f"s@{start + MIN}"]
    assert t.next_due_ms == start + 2 * MIN
    job = client.get(Q, f"s@{start + MIN}")
    assert (job.state, job.payload, job.name) == (JobState.READY, {"x": 1}, "t")
    # And a second pass at the same time enqueues nothing more
    assert client.tick_schedules(Q).enqueued == []
    [stored] = client.schedules(Q)
    assert (stored.runs, stored.last_run_ms, stored.next_run_ms) == (
        1,
        start + MIN,
        start + 2 * MIN,
    )


def test_upsert_of_the_same_definition_writes_nothing(client: Any, raw: Any, prefix: str) -> None:
    first = client.upsert_schedule("s", cron="*/5 * * * *", queue=Q, payload=[1, 2])
    key = QueueKeys.build(prefix, Q).schedules
    stored = raw.hget(key, "s")
    events = raw.xlen(QueueKeys.build(prefix, Q).schedule_events)
    again = client.upsert_schedule("s", cron="*/5 * * * *", queue=Q, payload=[1, 2])
    assert again == first
    assert raw.hget(key, "s") == stored
    assert raw.xrevrange(QueueKeys.build(prefix, Q).schedule_events, count=1)
    assert raw.xlen(QueueKeys.build(prefix, Q).schedule_events) == events


def test_a_changed_definition_takes_effect_from_its_next_tick(
    client: Any, clock: TestClock
) -> None:
    start = clock.now_ms
    client.upsert_schedule("s", every_ms=MIN, queue=Q, payload="v1")
    clock.advance(MIN)
    assert client.tick_schedules(Q).enqueued == [f"s@{start + MIN}"]
    # A new payload keeps the timing: the pending tick stays and carries the new payload.
    changed = client.upsert_schedule("s", every_ms=MIN, queue=Q, payload="v2")
    assert changed.next_run_ms == start + 2 * MIN
    assert changed.runs == 1
    clock.advance(MIN)
    [job_id] = client.tick_schedules(Q).enqueued
    assert client.get(Q, job_id).payload == "v2"
    assert client.get(Q, f"s@{start + MIN}").payload == "v1"
    # A new timing moves the pending tick to the new timing's first tick after now.
    retimed = client.upsert_schedule("s", every_ms=10 * MIN, queue=Q, payload="v2")
    assert retimed.next_run_ms == start + 10 * MIN
    assert retimed.runs == 2


def test_pause_resume_remove_and_run_now(client: Any, clock: TestClock) -> None:
    start = clock.now_ms
    client.upsert_schedule("s", every_ms=MIN, queue=Q)
    paused = client.pause_schedule("s", queue=Q)
    assert paused.paused
    clock.advance(5 * MIN + 1)
    assert client.tick_schedules(Q).enqueued == []
    # Resume runs from the first tick after now: the ticks of the pause are not run.
    resumed = client.resume_schedule("s", queue=Q)
    assert not resumed.paused
    assert resumed.next_run_ms == start + 6 * MIN
    job_id = client.run_schedule_now("s", queue=Q)
    assert client.get(Q, job_id).state is JobState.READY
    [s] = client.schedules(Q)
    assert s.last_run_ms == clock.now_ms
    assert s.runs == 0  # run-now is outside the ticks
    assert client.remove_schedule("s", queue=Q) is True
    assert client.remove_schedule("s", queue=Q) is False
    assert client.schedules(Q) == []
    for call in (client.pause_schedule, client.resume_schedule, client.run_schedule_now):
        with pytest.raises(ScheduleNotFound) as info:
            call("s", queue=Q)
        assert (info.value.queue, info.value.schedule_id) == (Q, "s")


def test_limit_and_end_at_finish_a_schedule(client: Any, clock: TestClock) -> None:
    start = clock.now_ms
    client.upsert_schedule("lim", every_ms=MIN, queue=Q, limit=2, missed="all")
    client.upsert_schedule("end", every_ms=MIN, queue=Q, end_at=start + 3 * MIN, missed="all")
    clock.advance(10 * MIN)
    ids = client.tick_schedules(Q).enqueued
    assert ticks_of(ids, "lim") == [start + MIN, start + 2 * MIN]
    assert ticks_of(ids, "end") == [start + MIN, start + 2 * MIN, start + 3 * MIN]
    assert all(s.next_run_ms is None for s in client.schedules(Q))
    clock.advance(10 * MIN)
    assert client.tick_schedules(Q).enqueued == []


# ---------------------------------------------------------------------- missed ticks, DST


@pytest.mark.parametrize(
    ("missed", "expected"), [("skip", []), ("once", [11]), ("all", list(range(1, 12)))]
)
def test_each_missed_policy_after_a_ten_minute_outage(
    client: Any, clock: TestClock, missed: str, expected: list[int]
) -> None:
    # Given a schedule every minute whose first tick (1 min) is the last one seen on time
    start = clock.now_ms
    client.upsert_schedule("s", every_ms=MIN, queue=Q, missed=missed)
    # When no driver runs for 10 minutes and 45 seconds (the latest tick, at 11 min, is then
    # 45 s late: more than half its interval, so missed as well)
    clock.advance(11 * MIN + 45_000)
    ids = client.tick_schedules(Q).enqueued
    # Then the policy decides what the drivers enqueue when they come back
    assert [(t - start) // MIN for t in ticks_of(ids)] == expected
    [s] = client.schedules(Q)
    assert s.next_run_ms == start + 12 * MIN
    # And the schedule runs on time from there
    clock.advance(15_000)
    assert ticks_of(client.tick_schedules(Q).enqueued) == [start + 12 * MIN]


def test_a_cron_schedule_across_both_dst_changes(client: Any, clock: TestClock) -> None:
    # A daily 02:30 in Paris: the spring-forward day has no 02:30 (runs at 03:00), the
    # fall-back day has two (runs once, at the first).
    clock.now_ms = ms(datetime(2026, 3, 28, 12, 0, tzinfo=PARIS))
    s = client.upsert_schedule("s", cron="30 2 * * *", tz="Europe/Paris", queue=Q)
    assert s.next_run_ms == ms(datetime(2026, 3, 29, 3, 0, tzinfo=PARIS))
    clock.now_ms = s.next_run_ms
    assert client.tick_schedules(Q).enqueued == [f"s@{s.next_run_ms}"]
    [s] = client.schedules(Q)
    assert s.next_run_ms == ms(datetime(2026, 3, 30, 2, 30, tzinfo=PARIS))
    assert s.next_run_ms - s.last_run_ms == 23 * 60 * MIN + 30 * MIN

    clock.now_ms = ms(datetime(2026, 10, 24, 12, 0, tzinfo=PARIS))
    s = client.resume_schedule("s", queue=Q)  # (not paused: unchanged)
    client.pause_schedule("s", queue=Q)
    s = client.resume_schedule("s", queue=Q)
    first = ms(datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=0))
    assert s.next_run_ms == first
    clock.now_ms = first
    assert client.tick_schedules(Q).enqueued == [f"s@{first}"]
    # The repeated 02:30 (an hour later) is not a tick; the next one is the next day's.
    clock.now_ms = first + 60 * MIN
    assert client.tick_schedules(Q).enqueued == []
    [s] = client.schedules(Q)
    assert s.next_run_ms == ms(datetime(2026, 10, 26, 2, 30, tzinfo=PARIS))


def test_jitter_delays_the_job_and_not_the_tick(client: Any, clock: TestClock) -> None:
    start = clock.now_ms
    client.upsert_schedule("s", every_ms=MIN, queue=Q, jitter_ms=30_000)
    clock.advance(MIN)
    [job_id] = client.tick_schedules(Q).enqueued
    job = client.get(Q, job_id)
    assert job_id == f"s@{start + MIN}"
    assert start + MIN <= job.run_at_ms <= start + MIN + 30_000
    assert job.run_at_ms == start + MIN + sched.jitter_of("s", start + MIN, 30_000)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "*/5 * * * *", "tz": "Nowhere/City"}, "tz"),
        ({"every_ms": 0}, "every_ms"),
        ({"every_ms": MIN, "start_at": 2_000, "end_at": 1_000}, "end_at"),
        ({"every_ms": MIN, "missed": "sometimes"}, "missed"),
        ({"every_ms": MIN, "options": {"unique_key": "k"}}, "options.unique_key"),
        ({"every_ms": MIN, "jitter_ms": -1}, "jitter_ms"),
        ({}, "cron"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    client: Any, raw: Any, prefix: str, kw: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.upsert_schedule("s", queue=Q, **kw)
    assert info.value.field == field
    assert raw.keys(f"{{{prefix}:*") == []
    with pytest.raises(InvalidArgument) as info:
        client.upsert_schedule("bad{id}", queue=Q, every_ms=MIN)
    assert info.value.field == "id"


def test_the_schedules_cap_per_queue_is_enforced_by_the_script(
    client: Any, raw: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = QueueKeys.build(prefix, Q)
    raw.hset(keys.schedules, mapping={f"x{i}": b"junk" for i in range(sched.MAX_SCHEDULES)})
    with pytest.raises(InvalidArgument) as info:
        client.upsert_schedule("one-more", every_ms=MIN, queue=Q)
    assert info.value.field == "schedules"
    assert raw.hlen(keys.schedules) == sched.MAX_SCHEDULES


# ---------------------------------------------------------------------------- retry safety


@pytest.fixture
def resent(url: str, prefix: str, clock: TestClock) -> Iterator[tuple[Any, list[Any]]]:
    """A sync store whose every schedule script runs twice on the server (a client retry
    after a lost reply): the caller gets the second reply; the first ones are collected."""
    store = redisq.connect(url, prefix=prefix, clock=clock)
    transport = store._transport
    first_replies: list[Any] = []
    original = transport.run

    def run(call: Call[Any]) -> Any:
        if call.spec is not None and "schedule" in call.spec.name:
            first_replies.append(original(Call(call.spec, call.keys, call.args, lambda r: r)))
        return original(call)

    transport.run = run  # type: ignore[method-assign]
    yield store, first_replies
    store.close()


def test_every_schedule_script_is_safe_when_resent(
    resent: tuple[Any, list[Any]], raw: Any, prefix: str, clock: TestClock
) -> None:
    store, first = resent
    start = clock.now_ms
    s = store.upsert_schedule("s", every_ms=MIN, queue=Q, payload=1)
    assert first[-1][1] == b"written"
    assert s.runs == 0
    changed = store.upsert_schedule("s", every_ms=MIN, queue=Q, payload=2)
    assert first[-1][1] == b"written"
    assert changed.payload == 2
    clock.advance(MIN)
    t = store.tick_schedules(Q)
    # The first run enqueued the tick; the re-sent one found it moved on: one job.
    assert [r[1] for r in first if r[1] in (b"ticked", b"moved")][-1] == b"ticked"
    assert t.enqueued == []
    assert job_ids(raw, prefix) == [f"s@{start + MIN}"]
    [s] = store.schedules(Q)
    assert s.runs == 1
    job_id = store.run_schedule_now("s", queue=Q)
    assert first[-1][1] == b"created"
    assert job_ids(raw, prefix) == sorted([f"s@{start + MIN}", job_id])
    store.pause_schedule("s", queue=Q)
    assert store.schedules(Q)[0].paused
    store.resume_schedule("s", queue=Q)
    assert not store.schedules(Q)[0].paused
    assert store.remove_schedule("s", queue=Q) is False  # the first run removed it
    assert first[-1][1] == 1
    assert store.schedules(Q) == []
    assert len(job_ids(raw, prefix)) == 2


# ------------------------------------------------------------------ racing drivers, deploys


def test_racing_drivers_enqueue_each_tick_once(
    url: str, prefix: str, raw: Any, clock: TestClock
) -> None:
    # Given 5 stores (drivers) on one schedule, all passing at every tick time at once
    stores = [redisq.connect(url, prefix=prefix, clock=clock) for _ in range(5)]
    try:
        start = clock.now_ms
        stores[0].upsert_schedule("s", every_ms=1_000, queue=Q, missed="all")
        won = [0] * len(stores)
        for _ in range(40):
            clock.advance(1_000)
            barrier = threading.Barrier(len(stores))

            def drive(i: int, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                won[i] += len(stores[i].tick_schedules(Q).enqueued)

            threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(stores))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
        # Then each of the 40 ticks is one job, enqueued by exactly one driver
        assert ticks_of(job_ids(raw, prefix)) == [start + 1_000 * k for k in range(1, 41)]
        assert sum(won) == 40
    finally:
        for s in stores:
            s.close()


def _deploy(url: str, prefix: str, clock: TestClock, version: int) -> redisq.App:
    app = redisq.App(url, prefix=prefix, clock=clock)

    @app.periodic(every_ms=MIN if version == 1 else 2 * MIN, args=(version,))
    @app.task(queue=Q, name="report")
    def report(version: int) -> int:
        return version

    return app


def test_two_deploys_of_different_versions(
    url: str, prefix: str, raw: Any, clock: TestClock
) -> None:
    # Given the old deploy storing and driving its schedule
    start = clock.now_ms
    old, new = _deploy(url, prefix, clock, 1), _deploy(url, prefix, clock, 2)
    try:
        [s1] = old.declare_schedules()
        assert s1.every_ms == MIN
        clock.advance(MIN)
        assert old.store.tick_schedules(Q).enqueued == [f"report@{start + MIN}"]
        # When the new deploy starts (stores its version) while the old one still runs
        [s2] = new.declare_schedules()
        assert s2.every_ms == 2 * MIN
        assert s2.runs == 1
        # Then from the next tick both drive the new definition, and no tick is doubled
        for _ in range(6):
            clock.advance(MIN)
            old.store.tick_schedules(Q)
            new.store.tick_schedules(Q)
        ticks = ticks_of(job_ids(raw, prefix), "report")
        assert ticks == [start + MIN, start + 2 * MIN, start + 4 * MIN, start + 6 * MIN]
        payloads = [old.store.get(Q, f"report@{t}").payload["args"] for t in ticks]
        assert payloads == [[1], [2], [2], [2]]
        # A restarted old process declares its version again: the last one stored wins
        # (docs/schedules.md), still without doubling a tick.
        assert old.declare_schedules()[0].every_ms == MIN
        assert new.declare_schedules()[0].every_ms == 2 * MIN
        assert len(set(ticks)) == len(ticks)
    finally:
        old.close()
        new.close()


# --------------------------------------------------------------------------------- drivers


def test_a_schedule_change_wakes_a_waiting_driver(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    other = redisq.connect(url, prefix=prefix)
    try:
        store.tick_schedules(Q)
        woke: list[bool] = []
        t = threading.Thread(
            target=lambda: woke.append(store.wait_schedules(Q, timeout_ms=20_000)), daemon=True
        )
        t.start()
        other.upsert_schedule("s", every_ms=MIN, queue=Q)
        t.join(10)
        assert woke == [True]
        # Waits after a pass only count changes after it
        store.tick_schedules(Q)
        assert store.wait_schedules(Q, timeout_ms=50) is False
    finally:
        store.close()
        other.close()


def test_a_worker_drives_the_declared_schedules(url: str, prefix: str) -> None:
    from tests.support.polling import wait_for

    app = redisq.App(url, prefix=prefix)
    seen: list[int] = []

    @app.periodic(every_ms=100, missed="all", limit=5, args=(7,))
    @app.task(queue=Q)
    def tick(n: int) -> None:
        seen.append(n)

    worker = redisq.Worker(app, handle_signals=False, concurrency=2)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(seen) >= 5, 20)
        [s] = app.store.schedules(Q)
        assert s.runs == 5
        assert s.next_run_ms is None
        assert seen == [7] * 5
    finally:
        worker.stop()
        assert worker.wait_stopped(20)
        app.close()


def test_a_schedule_added_at_run_time_wakes_an_idle_worker(url: str, prefix: str) -> None:
    from tests.support.polling import wait_for

    app = redisq.App(url, prefix=prefix)
    seen: list[str] = []

    @app.task(queue=Q, name="added")
    def added(tag: str) -> None:
        seen.append(tag)

    worker = redisq.Worker(app, handle_signals=False)
    threading.Thread(target=worker.run, daemon=True).start()
    try:
        # Given an idle worker whose driver has nothing to wait for: it blocks for 60 s
        wait_for(lambda: worker.running, 10)
        if not url.startswith("memory://"):
            wait_for(
                lambda: any(c.get("cmd") == "xread" for c in app.store.redis.client_list()), 10
            )
        # When a schedule is added at run time
        app.store.upsert_schedule(
            "rt", every_ms=100, limit=2, queue=Q, name="added",
            payload={"args": ["rt"], "kwargs": {}},
        )  # fmt: skip
        # Then its ticks run long before the driver's 60 s wait would have ended
        wait_for(lambda: len(seen) == 2, 15)
    finally:
        worker.stop()
        assert worker.wait_stopped(20)
        app.close()


def test_a_worker_without_schedules_leaves_them_alone(url: str, prefix: str) -> None:
    app = redisq.App(url, prefix=prefix)

    @app.periodic(every_ms=100)
    @app.task(queue=Q)
    def tick() -> None:
        pass

    worker = redisq.Worker(app, handle_signals=False, schedules=False)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        assert worker.wait_stopped(0.5) is False
        assert app.store.schedules(Q) == []
    finally:
        worker.stop()
        assert worker.wait_stopped(20)
        app.close()


def test_periodic_refuses_bad_declarations() -> None:
    app = redisq.App()
    with pytest.raises(InvalidArgument) as info:
        app.periodic(cron="every day")
    assert info.value.field == "cron"

    def plain() -> None:
        pass

    with pytest.raises(InvalidArgument) as info:
        app.periodic(every_ms=5)(plain)  # type: ignore[arg-type]
    assert info.value.field == "task"
    task = app.task(queue=Q)(plain)
    app.periodic(every_ms=5)(task)
    with pytest.raises(InvalidArgument) as info:
        app.periodic(every_ms=10)(task)
    assert info.value.field == "id"
    assert [p.id for p in app.periodic_schedules] == [task.name]


# --------------------------------------------------------------------------------- cluster


@pytest.mark.cluster
def test_schedules_on_a_cluster_live_in_their_queue_slot(cluster_url: str) -> None:
    clock = TestClock()
    store = redisq.connect(cluster_url, prefix="schedc", clock=clock)
    try:
        queues = [f"cq{i}" for i in range(6)]  # spread over the masters
        start = clock.now_ms
        for q in queues:
            store.upsert_schedule("s", every_ms=MIN, queue=q)
        clock.advance(MIN)
        for q in queues:
            assert store.tick_schedules(q).enqueued == [f"s@{start + MIN}"]
        assert [s.queue for s in store.schedules()] == queues
        assert store.wait_schedules(queues, timeout_ms=10) is False
        for q in queues:
            store.remove_schedule("s", queue=q)
            store.purge(q)
    finally:
        store.close()


@pytest.mark.cluster
def test_a_worker_on_a_cluster_drives_each_queue_in_its_slot(cluster_url: str) -> None:
    from tests.support.polling import wait_for

    prefix = f"schedw{os.getpid()}"
    app = redisq.App(cluster_url, prefix=prefix)
    seen: list[str] = []
    queues = ["wa", "wb", "wc"]
    for q in queues:

        @app.periodic(every_ms=100, limit=2, args=(q,))
        @app.task(queue=q, name=f"beat-{q}")
        def beat(tag: str) -> None:
            seen.append(tag)

    worker = redisq.Worker(app, handle_signals=False)
    threading.Thread(target=worker.run, daemon=True).start()
    try:
        wait_for(lambda: len(seen) == 6, 30)
        assert sorted(seen) == sorted(queues * 2)
        assert all(s.runs == 2 for s in app.store.schedules())
    finally:
        worker.stop()
        assert worker.wait_stopped(20)
        # The drivers' threads end with the worker: a read under way on a cluster is cut by
        # the closing of their store, and redis-py does not reconnect it
        driving = [t for t in threading.enumerate() if "schedules" in t.name]
        wait_for(lambda: not any(t.is_alive() for t in driving), 5)
        for q in queues:
            app.store.remove_schedule(f"beat-{q}", queue=q)
            app.store.purge(q)
        app.close()
