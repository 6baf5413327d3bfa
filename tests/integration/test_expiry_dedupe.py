"""Expiry (expires_ms) and dedupe windows (throttle_ms, debounce_ms): lua/lib/expire_due.lua
and enqueue.lua's flow options.

Each test runs on every backend (valkey, redis7, memory) with both clients (sync, async), on
the test clock: time moves only when the test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq import InvalidArgument, JobState, Spec
from redisq._core import enqueue as enq
from redisq._core.calls import queue_keys, script_call
from redisq._version import __version__
from tests.support.clock import TestClock

Q = "flow"


def _key(raw: Any, prefix: str, part: str) -> str:
    return f"{{{prefix}:{Q}}}:{part}"


# ------------------------------------------------------------------------------------- expiry


def test_a_job_expiring_behind_a_backlog_is_cancelled_without_being_claimed(
    client: Any, clock: TestClock
) -> None:
    # Given a backlog of 300 ready jobs, and behind it a job that expires in one second
    backlog = [j.id for j in client.enqueue_many(Q, list(range(300)))]
    late = client.enqueue(Q, "late", expires_ms=1_000)
    assert client.expires_at(Q, late.id) == clock.now_ms + 1_000

    # When its expiry passes and one worker claims one job (the backlog is far from drained)
    clock.advance(1_001)
    (first,) = client.claim(Q, worker="w", count=1)

    # Then the claim's housekeeping cancelled it, never leased, with the reason
    assert first.id == backlog[0]
    job = client.get(Q, late.id)
    assert (job.state, job.attempts, job.last_error) == (JobState.CANCELLED, 0, "expired")
    assert job.finished_at_ms == clock.now_ms
    assert client.expires_at(Q, late.id) is None
    assert client.counts(Q)[JobState.READY] == 299
    assert client.counts(Q)[JobState.CANCELLED] == 1
    assert client.totals(Q)["expired"] == 1


def test_the_reaper_cancels_expired_jobs_of_a_queue_nobody_claims(
    client: Any, clock: TestClock
) -> None:
    # Given a ready and a scheduled job that both expire before anyone claims
    ready = client.enqueue(Q, 1, expires_ms=500)
    scheduled = client.enqueue(Q, 2, delay_ms=10_000, expires_ms=600)
    keeps = client.enqueue(Q, 3, expires_ms=5_000)

    # When the reaper runs past their expiry (workers run it periodically)
    clock.advance(601)
    client.reap(Q)

    # Then both are cancelled as expired, and the one still in time waits on
    for job_id in (ready.id, scheduled.id):
        job = client.get(Q, job_id)
        assert (job.state, job.last_error) == (JobState.CANCELLED, "expired")
    assert client.get(Q, keeps.id).state is JobState.READY
    assert client.counts(Q)[JobState.SCHEDULED] == 0
    assert client.totals(Q)["expired"] == 2


def test_claim_never_returns_an_expired_job(client: Any, clock: TestClock) -> None:
    # Given more expired jobs than one call's housekeeping batch (100), ahead of good ones
    expired = {j.id for j in client.enqueue_many(Q, list(range(150)), expires_ms=100)}
    good = [j.id for j in client.enqueue_many(Q, ["a", "b"], priority=-1)]
    clock.advance(101)

    # When a worker claims them all
    leased = client.claim(Q, worker="w", count=200)

    # Then it gets only the good ones: every expired one was cancelled first
    assert [j.id for j in leased] == good
    assert not expired & {j.id for j in leased}
    assert client.counts(Q)[JobState.CANCELLED] == 150
    assert client.totals(Q)["expired"] == 150


def test_claim_and_ack_never_completes_an_expired_job(client: Any, clock: TestClock) -> None:
    late = client.enqueue(Q, 1, expires_ms=100)
    on_time = client.enqueue(Q, 2)
    clock.advance(100)
    done = client.claim_and_ack(Q)
    assert done is not None
    assert done.id == on_time.id
    assert client.get(Q, late.id).state is JobState.CANCELLED


def test_a_started_job_is_no_longer_subject_to_its_expiry(client: Any, clock: TestClock) -> None:
    # Given a job claimed before its expiry
    job = client.enqueue(Q, 1, expires_ms=1_000)
    (leased,) = client.claim(Q, worker="w", lease_ms=60_000)
    assert client.expires_at(Q, job.id) is None

    # When its expiry passes while it runs, and housekeeping sweeps
    clock.advance(2_000)
    client.reap(Q)

    # Then it runs to completion
    assert client.ack(leased).state is JobState.COMPLETED
    assert client.totals(Q)["expired"] == 0


def test_an_expiry_entry_never_cancels_a_new_job_that_reuses_the_id(
    client: Any, clock: TestClock
) -> None:
    # Given an expiring job that was deleted, and a new job (no expiry) under the same id
    client.enqueue(Q, 1, id="same", expires_ms=1_000)
    assert client.delete(Q, "same")
    client.enqueue(Q, 2, id="same")

    # When the old expiry passes
    clock.advance(1_001)
    (leased,) = client.claim(Q, worker="w")

    # Then the new job is claimed as usual
    assert (leased.id, leased.payload) == ("same", 2)


def test_expiring_jobs_without_expiry_pay_nothing_and_keys_stay_bounded(
    client: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    # A queue that never uses the options has no expiring set, no windows
    client.enqueue_many(Q, list(range(10)))
    client.enqueue(Q, "one")
    client.claim(Q, worker="w", count=20)
    assert raw.exists(_key(raw, prefix, "expiring")) == 0
    assert raw.keys(f"{{{prefix}:{Q}}}:window:*") == []
    # And the entries of expiring jobs go once their time passes, whatever became of them
    for i in range(5):
        job = client.enqueue(Q, i, expires_ms=100)
        client.cancel(Q, job.id)
    assert raw.zcard(_key(raw, prefix, "expiring")) == 5
    clock.advance(101)
    client.reap(Q)
    assert raw.zcard(_key(raw, prefix, "expiring")) == 0
    assert client.totals(Q)["expired"] == 0  # they were cancelled on purpose, not expired


def test_enqueue_many_takes_expiry_per_job(client: Any, clock: TestClock) -> None:
    jobs = client.enqueue_many(Q, [Spec(1, expires_ms=100), Spec(2), 3], priority=1)
    clock.advance(100)
    leased = client.claim(Q, worker="w", count=5)
    assert [j.payload for j in leased] == [2, 3]
    assert client.get(Q, jobs[0].id).last_error == "expired"


# ----------------------------------------------------------------------------------- throttle


def test_throttle_ignores_repeats_even_after_the_job_completed(
    client: Any, clock: TestClock
) -> None:
    # Given a throttled job that ran and completed
    first = client.enqueue(Q, 1, unique_key="report", throttle_ms=60_000)
    (leased,) = client.claim(Q, worker="w")
    client.ack(leased)

    # When it is enqueued again within the window
    clock.advance(30_000)
    again = client.enqueue(Q, 2, unique_key="report", throttle_ms=60_000)

    # Then the repeat is ignored: it gets the completed job, and nothing waits
    assert (again.id, again.state, again.payload) == (first.id, JobState.COMPLETED, 1)
    assert client.counts(Q)[JobState.READY] == 0
    assert client.totals(Q)["enqueued"] == 1

    # And once the window has passed, a repeat makes a new job
    clock.advance(30_000)
    later = client.enqueue(Q, 3, unique_key="report", throttle_ms=60_000)
    assert later.id != first.id
    assert later.state is JobState.READY
    assert client.totals(Q)["enqueued"] == 2


def test_a_throttle_window_outlives_its_jobs_record(client: Any, clock: TestClock) -> None:
    # Given a throttled job deleted within its window (or trimmed by retention)
    first = client.enqueue(Q, 1, unique_key="k", throttle_ms=10_000)
    assert client.delete(Q, first.id)

    # When it is repeated within the window
    again = client.enqueue(Q, 2, unique_key="k", throttle_ms=10_000)

    # Then the window still holds: the repeat is ignored, reported as a cancelled job
    assert (again.id, again.state, again.last_error) == (first.id, JobState.CANCELLED, "throttled")
    assert client.get(Q, first.id) is None
    assert client.counts(Q)[JobState.READY] == 0


# ----------------------------------------------------------------------------------- debounce


def test_debounce_replaces_the_payload_and_pushes_the_due_time_back(
    client: Any, clock: TestClock
) -> None:
    # Given a debounced job, waiting 1 s
    first = client.enqueue(Q, {"v": 1}, unique_key="save:7", debounce_ms=1_000)
    assert first.state is JobState.SCHEDULED
    assert first.run_at_ms == clock.now_ms + 1_000

    # When it is repeated twice while it waits
    clock.advance(800)
    second = client.enqueue(Q, {"v": 2}, unique_key="save:7", debounce_ms=1_000)
    clock.advance(800)
    third = client.enqueue(Q, {"v": 3}, unique_key="save:7", debounce_ms=1_000)

    # Then one job waits, with the last payload, due 1 s after the last repeat
    assert second.id == third.id == first.id
    assert (third.payload, third.run_at_ms) == ({"v": 3}, clock.now_ms + 1_000)
    assert client.get(Q, first.id) == third
    clock.advance(999)
    assert client.claim(Q, worker="w") == []
    clock.advance(1)
    (leased,) = client.claim(Q, worker="w")
    assert (leased.id, leased.payload) == (first.id, {"v": 3})
    assert client.totals(Q)["enqueued"] == 1


def test_a_debounced_job_that_became_ready_is_still_pushed_back(
    client: Any, clock: TestClock
) -> None:
    first = client.enqueue(Q, 1, unique_key="k", debounce_ms=100)
    clock.advance(100)
    client.reap(Q)  # promoted to ready, not claimed yet
    assert client.get(Q, first.id).state is JobState.READY
    again = client.enqueue(Q, 2, unique_key="k", debounce_ms=100)
    assert (again.id, again.state, again.payload) == (first.id, JobState.SCHEDULED, 2)
    assert client.claim(Q, worker="w") == []


def test_a_repeat_after_the_job_started_makes_a_new_job(client: Any, clock: TestClock) -> None:
    # Given a debounced job that a worker has started
    first = client.enqueue(Q, 1, unique_key="k", debounce_ms=100)
    clock.advance(100)
    (running,) = client.claim(Q, worker="w")

    # When it is repeated
    second = client.enqueue(Q, 2, unique_key="k", debounce_ms=100)

    # Then a new job waits, and the running one finishing does not free its key
    assert second.id != first.id
    assert second.state is JobState.SCHEDULED
    client.ack(running)
    third = client.enqueue(Q, 3, unique_key="k", debounce_ms=100)
    assert (third.id, third.payload) == (second.id, 3)


def test_the_repeats_expiry_replaces_the_debounced_jobs(client: Any, clock: TestClock) -> None:
    first = client.enqueue(Q, 1, unique_key="k", debounce_ms=100, expires_ms=150)
    clock.advance(90)
    client.enqueue(Q, 2, unique_key="k", debounce_ms=100, expires_ms=1_000)
    assert client.expires_at(Q, first.id) == clock.now_ms + 1_000
    clock.advance(100)
    (leased,) = client.claim(Q, worker="w")
    assert (leased.id, leased.payload) == (first.id, 2)


# ------------------------------------------------------------------------- keys of other types


def test_an_expiring_key_of_another_type_is_refused_before_any_write(
    client: Any, raw: Any, prefix: str
) -> None:
    # Given a queue whose expiring key holds a string
    client.enqueue(Q, "seed", id="seed")
    raw.set(_key(raw, prefix, "expiring"), "not a zset")

    # Then an enqueue with an expiry, and a claim, refuse it and write nothing
    with pytest.raises(redisq.WrongKeyType):
        client.enqueue(Q, 1, id="e", expires_ms=100)
    assert client.get(Q, "e") is None
    with pytest.raises(redisq.WrongKeyType):
        client.claim(Q, worker="w")
    assert client.get(Q, "seed").state is JobState.READY
    # A plain enqueue does not touch it
    assert client.enqueue(Q, 2, id="plain").state is JobState.READY


def test_a_window_key_of_another_type_is_refused_before_any_write(
    client: Any, raw: Any, prefix: str
) -> None:
    client.enqueue(Q, "seed")
    raw.hset(_key(raw, prefix, "window:k"), "a", "b")
    with pytest.raises(redisq.WrongKeyType):
        client.enqueue(Q, 1, id="t", unique_key="k", throttle_ms=100)
    assert client.get(Q, "t") is None
    assert client.counts(Q)[JobState.READY] == 1


# --------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"expires_ms": 0}, "expires_ms"),
        ({"expires_ms": -5}, "expires_ms"),
        ({"expires_ms": "10"}, "expires_ms"),
        ({"expires_ms": 366 * 86_400_000 + 1}, "expires_ms"),
        ({"throttle_ms": 0, "unique_key": "k"}, "throttle_ms"),
        ({"debounce_ms": 1.5, "unique_key": "k"}, "debounce_ms"),
        ({"throttle_ms": 1_000}, "unique_key"),
        ({"debounce_ms": 1_000}, "unique_key"),
        ({"throttle_ms": 1_000, "debounce_ms": 1_000, "unique_key": "k"}, "debounce_ms"),
        ({"debounce_ms": 1_000, "unique_key": "k", "delay_ms": 5}, "delay_ms"),
        ({"debounce_ms": 1_000, "unique_key": "k", "run_at_ms": 5}, "run_at_ms"),
    ],
)
def test_bad_flow_options_are_refused_before_anything_is_written(
    client: Any, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.enqueue(Q, 1, **options)
    assert caught.value.field == field
    with pytest.raises(InvalidArgument) as caught:
        client.enqueue_many(Q, [Spec(1), Spec(2, **options)])
    assert caught.value.field == f"payloads[1].{field}"
    assert client.queues() == []


def test_one_call_may_not_repeat_a_debounced_key(client: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.enqueue_many(Q, [1, 2], unique_key="k", debounce_ms=100)
    assert caught.value.field == "options.unique_key"
    assert client.queues() == []


def test_the_script_refuses_bad_flow_arguments_itself(client: Any) -> None:
    # A client that skipped validation: the script checks the same rules before writing
    client.enqueue(Q, "seed")  # the queue exists and is registered
    for flow in [("", "100", ""), ("0", "", ""), ("x", "", ""), ("", "", "1.5")]:
        bad = enq._Options(None, "", 0, None, 0, 3, None, "", (), flow)
        with pytest.raises(InvalidArgument):
            client._run(_raw_enqueue(client, [enq._Prepared("x", b"\xc0", None, bad)]))
    assert client.get(Q, "x") is None
    assert client.counts(Q)[JobState.READY] == 1


def _raw_enqueue(client: Any, prepared: list[Any]) -> Any:
    return script_call(
        "enqueue",
        queue_keys(client.settings.prefix, Q),
        enq._enqueued(Q, prepared),
        now_ms=client.settings.now_arg(),
        lib_version=__version__,
        count="1",
        jobs=enq._enqueue_args(prepared),
    )


# -------------------------------------------------------------------------------- task and CLI


def test_task_options_carry_the_flow_options(url: str, prefix: str, clock: TestClock) -> None:
    app = redisq.App(url, prefix=prefix, clock=clock)

    @app.task(queue=Q)
    def save(n: int) -> int:
        return n

    first = save.options(unique_key="s", debounce_ms=500).enqueue(1)
    second = save.options(unique_key="s", debounce_ms=500).enqueue(2)
    assert first.id == second.id
    late = save.options(expires_ms=10).enqueue(3)
    clock.advance(600)
    leased = app.store.claim(Q, worker="w", count=5)
    assert [j.payload["args"] for j in leased] == [[2]]
    assert app.store.get(Q, late.id).last_error == "expired"
    with pytest.raises(InvalidArgument) as caught:
        save.options(throttle_ms=0)
    assert caught.value.field == "throttle_ms"
    app.close()


# ------------------------------------------------------------------------------------ cluster


@pytest.mark.cluster
def test_expiry_and_windows_on_a_cluster_live_in_their_queue_slot(
    cluster_url: str, prefix: str
) -> None:
    clock = TestClock()
    store = redisq.connect(cluster_url, prefix=prefix, clock=clock)
    try:
        queues = [f"xq{i}" for i in range(6)]  # spread over the masters
        for q in queues:
            store.enqueue_many(q, list(range(5)))
            store.enqueue(q, "late", id="late", expires_ms=100)
            store.enqueue(q, 1, unique_key="t", throttle_ms=10_000)
            store.enqueue(q, 1, unique_key="d", debounce_ms=500)
        clock.advance(100)
        for q in queues:
            assert len(store.claim(q, worker="w", count=1)) == 1
            late = store.get(q, "late")
            assert late is not None
            assert (late.state, late.last_error) == (JobState.CANCELLED, "expired")
            again = store.enqueue(q, 2, unique_key="t", throttle_ms=10_000)
            assert again.payload == 1
            pushed = store.enqueue(q, 2, unique_key="d", debounce_ms=500)
            assert (pushed.payload, pushed.run_at_ms) == (2, clock.now_ms + 500)
            assert store.totals(q)["expired"] == 1
    finally:
        store.close()
