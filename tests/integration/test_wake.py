"""Blocking waits: which transitions wake a waiting worker, and when `wait` returns.

Each queue has a wake set holding at most one member. Enqueue and every transition that makes a
job ready or scheduled signal it; a claim that leaves ready jobs behind signals it for the next
worker; `wait` blocks on it (BZPOPMIN) and also returns when a scheduled job that the last short
claim saw comes due. A signalled wait returns True at once; an unsignalled one returns False
when its (short) timeout runs out, so each assertion below fails if a signal is missing or extra.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import redisq
from redisq import JobState
from tests.support.clock import TestClock
from tests.support.polling import wait_for

#: Long enough that a signalled wait returning True cannot be a timeout.
SIGNALLED_MS = 5_000
#: Short: an unsignalled wait just times out.
QUIET_MS = 30


def signalled(client: Any, queues: Any = "q") -> bool:
    """Tell whether a wake signal is waiting (consuming it), without a long block."""
    started = time.monotonic()
    woke = bool(client.wait(queues, timeout_ms=SIGNALLED_MS))
    assert time.monotonic() - started < SIGNALLED_MS / 1000 / 2, "woke only by its timeout"
    return woke


def quiet(client: Any, queues: Any = "q") -> bool:
    """Tell whether no wake signal is waiting."""
    return not client.wait(queues, timeout_ms=QUIET_MS)


def test_enqueue_signals_once_per_call(client: Any) -> None:
    assert quiet(client)
    client.enqueue_many("q", [1, 2, 3])
    assert signalled(client)
    assert quiet(client)  # one member: a burst of jobs is one signal, not one per job


def test_a_claim_that_leaves_jobs_behind_wakes_the_next_worker(client: Any) -> None:
    # Given three ready jobs and the enqueue signal consumed by the first worker
    client.enqueue_many("q", [1, 2, 3])
    assert signalled(client)
    # When it claims two, one is left for somebody else: the signal is passed on
    assert len(client.claim("q", worker="w1", count=2)) == 2
    assert signalled(client)
    # When the next worker takes the last one, nothing is left and nobody else is woken
    assert len(client.claim("q", worker="w2", count=1)) == 1
    assert quiet(client)


def test_every_transition_back_to_ready_or_scheduled_signals(client: Any, clock: TestClock) -> None:
    client.enqueue_many("q", ["a", "b", "c", "d"], max_attempts=1)
    assert signalled(client)
    a, b, c, d = client.claim("q", worker="w", count=4)
    assert quiet(client)

    client.nack(a, error="boom", delay_ms=0)  # max_attempts 1: straight to dead, no signal
    assert client.get("q", a.id).state is JobState.DEAD
    assert quiet(client)
    assert client.retry_dead("q") == 1
    assert signalled(client)

    client.release(b)
    assert signalled(client)
    client.release(c, delay_ms=1_000)
    assert signalled(client)

    clock.advance(60_000)  # d's lease expires
    assert client.reap("q") >= 1
    assert signalled(client)

    client.update("q", b.id, priority=5)
    assert signalled(client)

    client.pause("q")
    assert quiet(client)
    client.resume("q")
    assert signalled(client)
    assert client.get("q", d.id).state in (JobState.READY, JobState.DEAD)


def test_a_retry_signals_but_a_dead_letter_does_not(client: Any) -> None:
    client.enqueue("q", "x", max_attempts=2)
    assert signalled(client)
    job = client.claim("q", worker="w")[0]
    client.nack(job, error="retry me", delay_ms=10)
    assert signalled(client)


def test_wait_returns_when_the_earliest_scheduled_job_is_due(client: Any) -> None:
    # Given a job due in 200 ms and a claim that came up short (it reports the due time)
    client.enqueue("q", "later", delay_ms=200)
    assert signalled(client)
    assert client.claim("q", worker="w") == []
    # When the worker waits with a long timeout, it is woken by the due time, not the timeout
    started = time.monotonic()
    assert client.wait("q", timeout_ms=SIGNALLED_MS) is True
    waited = time.monotonic() - started
    assert 0.1 <= waited < SIGNALLED_MS / 1000 / 2


def test_a_short_claim_of_an_empty_queue_leaves_no_due_time(client: Any) -> None:
    client.enqueue("q", "now")
    assert signalled(client)
    assert len(client.claim("q", worker="w", count=5)) == 1
    assert quiet(client)


def test_wait_on_several_queues_wakes_for_any_of_them(client: Any) -> None:
    assert quiet(client, ["a", "b"])
    client.enqueue("b", 1)
    assert signalled(client, ["a", "b"])


def test_wait_validates_before_blocking(client: Any) -> None:
    with pytest.raises(redisq.InvalidArgument, match="timeout_ms"):
        client.wait("q", timeout_ms=-1)
    with pytest.raises(redisq.InvalidArgument, match="queues"):
        client.wait([], timeout_ms=10)
    with pytest.raises(redisq.InvalidArgument, match="queue"):
        client.wait("bad{name}", timeout_ms=10)


def test_a_blocked_worker_wakes_when_another_client_enqueues(real_url: str, prefix: str) -> None:
    producer = redisq.connect(real_url, prefix=prefix)
    consumer = redisq.connect(real_url, prefix=prefix)
    try:
        waiter = Blocked(producer, lambda: consumer.wait(["q", "other"], timeout_ms=SIGNALLED_MS))
        sent = time.monotonic()
        producer.enqueue("q", "hello")
        woke, returned = waiter.result()
        assert woke is True
        assert returned - sent < SIGNALLED_MS / 1000 / 2
        assert [j.payload for j in consumer.claim("q", worker="w")] == ["hello"]
    finally:
        producer.close()
        consumer.close()


# ------------------------------------------------------------------ claim with wait_ms


def test_a_waiting_claim_takes_ready_jobs_at_once(client: Any) -> None:
    client.enqueue_many("q", [1, 2])
    started = time.monotonic()
    jobs = client.claim("q", worker="w", count=5, wait_ms=SIGNALLED_MS)
    assert [j.payload for j in jobs] == [1, 2]
    assert time.monotonic() - started < SIGNALLED_MS / 1000 / 2


def test_a_waiting_claim_of_an_empty_queue_returns_nothing_after_its_wait(client: Any) -> None:
    started = time.monotonic()
    assert client.claim("q", worker="w", wait_ms=QUIET_MS) == []
    assert time.monotonic() - started >= QUIET_MS / 1000 * 0.9
    # The next one starts by waiting (the last claim was short), and still finds nothing
    assert client.claim("q", worker="w", wait_ms=QUIET_MS) == []


def test_a_waiting_claim_is_woken_by_the_due_time_of_a_scheduled_job(
    store: redisq.Store,
) -> None:
    # (Redis time here, not the test clock: the job must really come due while waiting.)
    store.enqueue("q", "later", delay_ms=200)
    assert store.claim("q", worker="w") == []  # short: it reports when the job is due
    started = time.monotonic()
    jobs = store.claim("q", worker="w", wait_ms=SIGNALLED_MS)
    assert [j.payload for j in jobs] == ["later"]
    assert 0.1 <= time.monotonic() - started < SIGNALLED_MS / 1000 / 2


def test_a_waiting_claim_finds_a_job_whose_signal_was_lost(client: Any, raw: Any) -> None:
    # Given a short claim, then a job whose wake signal is lost (its key deleted)
    assert client.claim("q", worker="w") == []
    client.enqueue("q", "unsignalled")
    raw.delete(f"{{{client.prefix}:q}}:wake")
    # When the next waiting claim starts by waiting, nothing wakes it; but the claim that
    # follows the timed-out wait still takes the job
    jobs = client.claim("q", worker="w", wait_ms=QUIET_MS)
    assert [j.payload for j in jobs] == ["unsignalled"]


def test_waiting_claims_of_several_queues_find_a_lost_signal_in_turn(client: Any, raw: Any) -> None:
    # A timed-out wait checks only the round's first queue (idle cost); the round rotates
    assert client.claim(["a", "b"], worker="w") == []
    client.enqueue("b", "unsignalled")
    raw.delete(f"{{{client.prefix}:b}}:wake")
    found = [client.claim(["a", "b"], worker="w", wait_ms=QUIET_MS) for _ in range(2)]
    assert sorted(len(jobs) for jobs in found) == [0, 1]
    assert [j.payload for jobs in found for j in jobs] == ["unsignalled"]


def test_a_waiting_claim_validates_before_blocking(client: Any, raw: Any) -> None:
    with pytest.raises(redisq.InvalidArgument, match="wait_ms"):
        client.claim("q", worker="w", wait_ms=-1)
    with pytest.raises(redisq.InvalidArgument, match="wait_ms"):
        client.claim("q", worker="w", wait_ms=86_400_001)
    assert raw.keys(f"{{{client.prefix}:q}}*") == []


def test_a_waiting_claim_takes_a_job_enqueued_by_another_client(real_url: str, prefix: str) -> None:
    producer = redisq.connect(real_url, prefix=prefix)
    consumer = redisq.connect(real_url, prefix=prefix)
    try:
        assert consumer.claim(["q", "other"], worker="w") == []  # short: the next one waits
        waiter = Blocked(
            producer,
            lambda: consumer.claim(["q", "other"], worker="w", count=10, wait_ms=SIGNALLED_MS),
        )
        sent = time.monotonic()
        producer.enqueue("q", "hello")
        jobs, returned = waiter.result()
        assert [(j.payload, j.state, j.worker) for j in jobs] == [("hello", JobState.LEASED, "w")]
        assert returned - sent < SIGNALLED_MS / 1000 / 2
        assert consumer.ack(jobs[0]).state is JobState.COMPLETED
    finally:
        producer.close()
        consumer.close()


def test_totals_only_grow_while_counts_are_trimmed(client_factory: Any, clock: TestClock) -> None:
    client = client_factory(retention=redisq.Retention(completed=1))
    client.enqueue_many("q", list(range(5)), max_attempts=2)
    jobs = client.claim("q", worker="w", count=5)
    client.ack_many(jobs[:2])
    client.nack(jobs[2], error="again", delay_ms=0)
    client.nack(jobs[3], error="give up", dead=True)
    clock.advance(60_000)  # jobs[4]'s lease expires: reaped back to ready, a retry
    assert client.reap("q") == 1
    assert client.counts("q")[JobState.COMPLETED] == 1  # retention keeps one
    assert client.totals("q") == {
        "enqueued": 5,
        "completed": 2,
        "retried": 2,
        "dead": 1,
        "expired": 0,
    }

    # The expired lease of a job on its last attempt is dead-lettered and counted as dead
    again = client.claim("q", worker="w", count=5)
    assert {j.attempts for j in again} == {2}
    clock.advance(60_000)
    assert client.reap("q") == 2
    assert client.totals("q") == {
        "enqueued": 5,
        "completed": 2,
        "retried": 2,
        "dead": 3,
        "expired": 0,
    }
    assert client.totals("never-used") == {
        "enqueued": 0,
        "completed": 0,
        "retried": 0,
        "dead": 0,
        "expired": 0,
    }


def test_release_with_a_delay_schedules_without_counting_the_attempt(
    client: Any, clock: TestClock
) -> None:
    client.enqueue("q", "snooze me", max_attempts=1)
    job = client.claim("q", worker="w")[0]
    released = client.release(job, delay_ms=1_000)
    assert released.state is JobState.SCHEDULED
    assert released.attempts == 0
    assert released.run_at_ms == clock.now_ms + 1_000
    assert client.claim("q", worker="w") == []
    clock.advance(1_000)
    again = client.claim("q", worker="w")
    assert [j.id for j in again] == [job.id]
    assert again[0].attempts == 1
    with pytest.raises(redisq.InvalidArgument, match="delay_ms"):
        client.release(again[0], delay_ms=-5)
    assert client.get("q", job.id).state is JobState.LEASED


# --------------------------------------------------------------------------- stop_waiting


@pytest.mark.parametrize("how", ["claim", "wait"])
def test_stop_waiting_unblocks_a_wait_under_way_and_those_to_come(
    real_url: str, prefix: str, how: str
) -> None:
    store = redisq.connect(real_url, prefix=prefix)
    other = redisq.connect(real_url, prefix=prefix)
    try:
        assert store.claim("q", worker="w") == []  # short: the waiting claim starts by waiting
        waiter = Blocked(
            other,
            (lambda: store.claim("q", worker="w", wait_ms=SIGNALLED_MS))
            if how == "claim"
            else (lambda: store.wait("q", timeout_ms=SIGNALLED_MS)),
        )
        started = time.monotonic()
        store.stop_waiting()
        # Then it returned long before its timeout, having found nothing
        result, returned = waiter.result()
        assert returned - started < SIGNALLED_MS / 1000 / 2
        assert result == ([] if how == "claim" else False)
        # And later waits return at once; a waiting claim still claims what is ready
        started = time.monotonic()
        assert store.wait("q", timeout_ms=SIGNALLED_MS) is False
        other.enqueue("q", "late")
        (job,) = store.claim("q", worker="w", wait_ms=SIGNALLED_MS)
        assert job.payload == "late"
        assert store.claim("q", worker="w", wait_ms=SIGNALLED_MS) == []
        assert time.monotonic() - started < SIGNALLED_MS / 1000 / 2
    finally:
        store.close()
        other.close()


class Blocked:
    """Runs a blocking call in a thread and returns once the server shows it blocked (INFO
    blocked_clients, seen through `observer`); `result()` gives its value and when it returned."""

    def __init__(self, observer: redisq.Store, call: Callable[[], Any]) -> None:
        self._out: list[tuple[Any, float]] = []
        before = _blocked_clients(observer)
        self._thread = threading.Thread(target=lambda: self._out.append((call(), time.monotonic())))
        self._thread.start()
        wait_for(lambda: _blocked_clients(observer) > before, 5)

    def result(self) -> tuple[Any, float]:
        self._thread.join(SIGNALLED_MS / 1000 + 5)
        assert self._out, "the call is still blocked"
        return self._out[0]


def _blocked_clients(store: redisq.Store) -> int:
    return int(store.redis.info("clients")["blocked_clients"])
