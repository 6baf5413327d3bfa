"""Seed parity: the behaviours of thingd's QueueStore and qml's Storage, expressed in redisq.

Every example and behaviour mapped in docs/seeds.md has a test here. Where redisq deliberately
differs from a seed, the test asserts redisq's documented behaviour and its name says so
(``..._returns_original``, ``..._raises_job_not_found``, ``..._not_overwritten``...). The
helpers at the top are the facade snippets of docs/seeds.md section 7, so the page's code is
tested too.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

import redisq
from redisq import Job, JobState, Spec
from redisq.errors import InvalidArgument, InvalidTransition, JobNotFound, LeaseLost
from tests.support.clock import TestClock
from tests.support.polling import wait_for

T = TypeVar("T")

Q = "q"
W = "w1"
#: A payload that cjson-based scripts used to corrupt: [] became {} and big ints lost digits.
BIG = 12345678901234567


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def cstore(url: str, prefix: str, clock: TestClock) -> Iterator[redisq.Store]:
    """A sync store whose scripts use `clock` (tests/integration/conftest.py) as "now"."""
    s = redisq.connect(url, prefix=prefix, clock=clock)
    yield s
    s.close()


# ---------------------------------------------------------- facades (docs/seeds.md section 7)


def count_active_jobs(store: redisq.Store) -> int:
    """thingd count_active_jobs: every job that is not DEAD, completed jobs included."""
    return sum(n for s, n in store.counts().items() if s is not JobState.DEAD)


def count_dead_jobs(store: redisq.Store) -> int:
    """thingd count_dead_jobs."""
    return store.counts()[JobState.DEAD]


def qml_enqueue(
    store: redisq.Store,
    queue: str,
    method: str,
    arguments: list[str],
    *,
    id: str | None = None,
    priority: int = 0,
    max_retries: int = 0,
    run_at_ms: int | None = None,
) -> Job:
    """qml enqueue: max_retries 0 means the policy limit (5 retries by default)."""
    retries = max_retries or 5
    return store.enqueue(
        queue,
        arguments,
        id=id,
        name=method,
        priority=priority,
        max_attempts=retries + 1,
        run_at_ms=run_at_ms,
    )


def qml_list(
    store: redisq.Store, state: JobState | None = None, limit: int | None = None, offset: int = 0
) -> list[Job]:
    """qml list: newest first, then offset and limit."""
    jobs = sorted(store.list(state=state), key=lambda j: j.created_at_ms, reverse=True)
    return jobs[offset:] if limit is None else jobs[offset : offset + limit]


def get_available_jobs(store: redisq.Store, limit: int = 10) -> list[Job]:
    """qml get_available_jobs across every queue: priority desc, then created asc."""
    jobs = (j for q in store.queues() for j in store.peek(q, limit))
    return sorted(jobs, key=lambda j: (-j.priority, j.created_at_ms))[:limit]


def fetch_and_lock_job(
    store: redisq.Store, worker_id: str, queues: list[str] | None = None
) -> Job | None:
    """qml fetch_and_lock_job: None or [] means every queue."""
    names = queues or store.queues()
    jobs = store.claim(names, worker=worker_id, count=1) if names else []
    return jobs[0] if jobs else None


def fetch_available_jobs_atomic(
    store: redisq.Store, worker_id: str, limit: int | None = None, queues: list[str] | None = None
) -> list[Job]:
    """qml fetch_available_jobs_atomic: one claim script per queue, default limit 10."""
    names = queues or store.queues()
    return store.claim(names, worker=worker_id, count=limit or 10) if names else []


def claim_one(store: redisq.Store, queue: str = Q, **options: Any) -> Job:
    """Claim exactly one job, failing the test when there is none."""
    jobs = store.claim(queue, worker=options.pop("worker", W), **options)
    assert len(jobs) == 1, f"expected one job from {queue!r}, got {jobs!r}"
    return jobs[0]


def stored(store: redisq.Store, job_id: str, queue: str = Q) -> Job:
    """Read a job that must exist."""
    job = store.get(queue, job_id)
    assert job is not None, f"job {job_id!r} of {queue!r} is missing"
    return job


def server_ms(store: redisq.Store) -> int:
    """The Redis server's clock in ms."""
    seconds, micros = store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def in_threads(n: int, work: Callable[[int], T]) -> list[T]:
    """Run work(0..n-1) in n threads released together by a barrier; return the results."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=10)
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


# ======================================================================= thingd QueueStore


def test_thingd_push_job_duplicate_returns_original(cstore: redisq.Store) -> None:
    # Given a pushed job
    first = cstore.enqueue(Q, "body-1", id="j1", max_attempts=4)
    # When the same (queue, id) is pushed again with another body and options
    again = cstore.enqueue(Q, "body-2", id="j1", max_attempts=1, priority=7, delay_ms=5_000)
    # Then the stored job comes back unchanged and nothing was added
    assert again == first
    assert stored(cstore, "j1") == first
    assert cstore.counts(Q)[JobState.READY] == 1
    assert cstore.counts(Q)[JobState.SCHEDULED] == 0


@pytest.mark.parametrize("finish", ["completed", "dead"])
def test_thingd_push_job_duplicate_of_finished_job_returns_original(
    cstore: redisq.Store, clock: TestClock, finish: str
) -> None:
    cstore.enqueue(Q, "orig", id="j1", max_attempts=1)
    job = claim_one(cstore)
    if finish == "completed":
        cstore.ack(job)
    else:
        cstore.nack(job, error="boom", delay_ms=0)
    before = stored(cstore, "j1")
    clock.advance(10)

    again = cstore.enqueue(Q, "new", id="j1")

    assert again == before
    assert again.state is JobState(finish)
    assert again.payload == "orig"
    assert cstore.counts(Q)[JobState.READY] == 0


def test_thingd_push_jobs_batch_results_in_input_order(cstore: redisq.Store) -> None:
    existing = cstore.enqueue(Q, "old", id="b")

    jobs = cstore.enqueue_many(
        Q, [Spec("x", id="a"), Spec("new", id="b"), Spec("z", id="c"), Spec("dup", id="a")]
    )

    assert [j.id for j in jobs] == ["a", "b", "c", "a"]
    assert jobs[1] == existing
    assert jobs[3] == jobs[0]
    assert jobs[0].payload == "x"
    assert cstore.counts(Q)[JobState.READY] == 3


def test_thingd_push_jobs_batch_bad_item_writes_nothing(cstore: redisq.Store) -> None:
    with pytest.raises(InvalidArgument, match=r"payloads\[1\]\.priority"):
        cstore.enqueue_many(Q, [Spec("ok", id="a"), Spec("bad", id="b", priority=5_000)])

    assert cstore.get(Q, "a") is None
    assert cstore.counts(Q)[JobState.READY] == 0


def test_thingd_claim_leases_first_job_fifo_with_lease_fields(
    cstore: redisq.Store, clock: TestClock
) -> None:
    for i in range(3):
        cstore.enqueue(Q, i, id=f"j{i}")
        clock.advance(1)

    job = claim_one(cstore, lease_ms=5_000)

    assert job.id == "j0"
    assert job.state is JobState.LEASED
    assert job.attempts == 1
    assert job.worker == W
    assert job.token is not None
    assert job.lease_deadline_ms == clock.now_ms + 5_000
    assert stored(cstore, "j0") == job
    assert [claim_one(cstore).id for _ in range(2)] == ["j1", "j2"]


def test_thingd_claim_job_default_lease_is_30000_ms(cstore: redisq.Store, clock: TestClock) -> None:
    cstore.enqueue(Q, 1, id="a")
    cstore.enqueue(Q, 2, id="b", lease_ms=5_000)

    a, b = cstore.claim(Q, worker=W, count=2)

    assert a.lease_deadline_ms == clock.now_ms + 30_000
    # A job's own lease_ms wins over the claim's (redisq extra).
    assert b.lease_deadline_ms == clock.now_ms + 5_000


def test_thingd_claim_unknown_queue_returns_empty(cstore: redisq.Store) -> None:
    assert cstore.claim("never-used", worker=W) == []
    assert cstore.claim_and_ack("never-used") is None


def test_thingd_delayed_jobs_not_claimable_early(cstore: redisq.Store, clock: TestClock) -> None:
    start = clock.now_ms
    delayed = cstore.enqueue(Q, 1, id="delayed", delay_ms=1_000)
    at = cstore.enqueue(Q, 2, id="at", run_at_ms=start + 2_000)
    assert delayed.state is JobState.SCHEDULED
    assert delayed.run_at_ms == start + 1_000
    assert at.run_at_ms == start + 2_000

    assert cstore.claim(Q, worker=W) == []
    clock.advance(999)
    assert cstore.claim(Q, worker=W) == []
    clock.advance(1)
    assert claim_one(cstore).id == "delayed"
    assert cstore.claim(Q, worker=W) == []
    clock.advance(1_000)
    assert claim_one(cstore).id == "at"


def test_thingd_lease_zero_is_reclaimed_with_attempts_2(
    cstore: redisq.Store, clock: TestClock
) -> None:
    # thingd's lease_ms=0 is redisq's minimum lease (1 ms) plus 1 ms of time.
    cstore.enqueue(Q, "x", id="j1")
    first = claim_one(cstore, lease_ms=1)
    clock.advance(1)

    second = claim_one(cstore, worker="w2")

    assert second.id == "j1"
    assert second.attempts == 2
    assert second.worker == "w2"
    assert second.token is not None
    assert first.token is not None
    assert second.token > first.token


def test_thingd_lease_ms_zero_is_refused_minimum_is_1(cstore: redisq.Store) -> None:
    cstore.enqueue(Q, "x", id="j1")
    with pytest.raises(InvalidArgument, match="lease_ms"):
        cstore.claim(Q, worker=W, lease_ms=0)
    assert stored(cstore, "j1").state is JobState.READY


def test_thingd_claim_reaps_only_its_own_queue(cstore: redisq.Store, clock: TestClock) -> None:
    cstore.enqueue("a", 1, id="ja")
    cstore.enqueue("b", 2, id="jb")
    claim_one(cstore, "a", lease_ms=1)
    clock.advance(1)

    claim_one(cstore, "b")

    assert stored(cstore, "ja", "a").state is JobState.LEASED
    assert cstore.counts("a")[JobState.LEASED] == 1
    again = claim_one(cstore, "a")
    assert again.id == "ja"
    assert again.attempts == 2


def test_thingd_lease_expiry_with_attempts_used_up_dead_letters_unlike_thingd(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "x", id="j1", max_attempts=1)
    claim_one(cstore, lease_ms=10)
    clock.advance(10)

    assert cstore.claim(Q, worker=W) == []

    dead = stored(cstore, "j1")
    assert dead.state is JobState.DEAD
    assert dead.attempts == 1
    assert dead.last_error == "lease expired on attempt 1 of 1"
    assert dead.finished_at_ms == clock.now_ms
    assert count_dead_jobs(cstore) == 1


def test_thingd_attempts_never_exceed_max_attempts_unlike_thingd(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "x", id="j1", max_attempts=2)
    for attempt in (1, 2):
        assert claim_one(cstore, lease_ms=1).attempts == attempt
        clock.advance(1)

    assert cstore.claim(Q, worker=W) == []
    assert stored(cstore, "j1").attempts == 2
    assert stored(cstore, "j1").state is JobState.DEAD


def test_thingd_ack_completes_with_completed_at(cstore: redisq.Store, clock: TestClock) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    clock.advance(7)

    done = cstore.ack(job, result={"ok": True})

    assert done.state is JobState.COMPLETED
    assert done.finished_at_ms == clock.now_ms
    assert done.lease_deadline_ms is None
    assert done.attempts == 1
    assert done.result == {"ok": True}
    assert stored(cstore, "j1") == done


def test_thingd_ack_missing_job_raises_job_not_found_unlike_thingd_none(
    cstore: redisq.Store,
) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    assert cstore.delete(Q, "j1") is True

    with pytest.raises(JobNotFound, match="j1"):
        cstore.ack(job)
    with pytest.raises(JobNotFound, match="j1"):
        cstore.nack(job, delay_ms=0)


def test_thingd_ack_of_nacked_ready_job_raises_lease_lost_as_conflict(
    cstore: redisq.Store,
) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    cstore.nack(job, delay_ms=0)
    before = stored(cstore, "j1")

    with pytest.raises(LeaseLost) as caught:
        cstore.ack(job)

    assert caught.value.state == "ready"  # thingd's not_leased
    assert stored(cstore, "j1") == before


def test_thingd_ack_of_never_claimed_job_raises_lease_lost_as_conflict(
    cstore: redisq.Store,
) -> None:
    job = cstore.enqueue(Q, "x", id="j1")
    # A Job without a token is refused before anything is sent.
    with pytest.raises(InvalidArgument, match="token"):
        cstore.ack(job)
    # A forged token is refused by the script.
    with pytest.raises(LeaseLost) as caught:
        cstore.ack(dataclasses.replace(job, token=1))
    assert caught.value.state == "ready"
    assert stored(cstore, "j1") == job


def test_thingd_ack_or_nack_of_dead_job_raises_lease_lost_terminal(
    cstore: redisq.Store,
) -> None:
    cstore.enqueue(Q, "x", id="j1", max_attempts=1)
    job = claim_one(cstore)
    cstore.nack(job, error="boom", delay_ms=0)

    with pytest.raises(LeaseLost) as caught:
        cstore.ack(job)
    assert caught.value.state == "dead"  # thingd's terminal


def test_thingd_nack_of_completed_job_raises_lease_lost_terminal(cstore: redisq.Store) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    done = cstore.ack(job)

    with pytest.raises(LeaseLost) as caught:
        cstore.nack(job, delay_ms=0)
    assert caught.value.state == "completed"
    assert stored(cstore, "j1") == done


def test_thingd_ack_twice_is_idempotent_not_conflict(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    first = cstore.ack(job, result="r1")
    clock.advance(5)

    again = cstore.ack(job, result="r2")

    # No second completion: the stored job is the first completion, and the returned
    # snapshot is the job as Redis holds it.
    assert stored(cstore, "j1") == first
    assert again == first
    assert cstore.counts(Q)[JobState.COMPLETED] == 1


def test_thingd_nack_twice_is_idempotent_not_conflict(cstore: redisq.Store) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    first = cstore.nack(job, error="boom", delay_ms=0)

    again = cstore.nack(job, error="other", delay_ms=0)

    assert again == first
    assert stored(cstore, "j1") == first
    assert stored(cstore, "j1").last_error == "boom"


def test_thingd_ack_by_old_holder_after_relet_raises_lease_lost_unlike_thingd(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "x", id="j1")
    old = claim_one(cstore, lease_ms=1)
    clock.advance(1)
    new = claim_one(cstore, worker="w2")

    with pytest.raises(LeaseLost) as caught:
        cstore.ack(old)
    assert caught.value.reason == "stale token"
    assert stored(cstore, "j1") == new
    assert cstore.ack(new).state is JobState.COMPLETED


def test_thingd_ack_after_lease_expiry_before_reap_raises_lease_lost_unlike_thingd(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore, lease_ms=10)
    clock.advance(10)

    with pytest.raises(LeaseLost) as caught:
        cstore.ack(job)

    assert caught.value.reason == "lease expired"
    assert stored(cstore, "j1") == job  # not reaped yet, and unchanged
    assert claim_one(cstore).attempts == 2


def test_thingd_nack_job_defaults_ready_now_at_original_position(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "a", id="a")
    clock.advance(1)
    cstore.enqueue(Q, "b", id="b")
    job = claim_one(cstore)
    clock.advance(3)

    back = cstore.nack(job, delay_ms=0)  # thingd's QueueNackOptions::default()

    assert back.state is JobState.READY
    assert back.run_at_ms == clock.now_ms
    assert back.attempts == 1  # nack does not change attempts
    assert back.lease_deadline_ms is None
    again = claim_one(cstore)
    assert again.id == "a"  # a retried job keeps its FIFO place, ahead of b
    assert again.attempts == 2


def test_thingd_nack_with_delay_hides_job_until_due(cstore: redisq.Store, clock: TestClock) -> None:
    cstore.enqueue(Q, "a", id="a")
    job = claim_one(cstore)

    later = cstore.nack(job, delay_ms=500)

    assert later.state is JobState.SCHEDULED  # thingd: Ready with a future available_at_ms
    assert later.run_at_ms == clock.now_ms + 500
    assert cstore.claim(Q, worker=W) == []
    clock.advance(499)
    assert cstore.claim(Q, worker=W) == []
    clock.advance(1)
    assert claim_one(cstore).id == "a"


def test_thingd_nack_error_sets_last_error_and_empty_keeps_previous(
    cstore: redisq.Store,
) -> None:
    cstore.enqueue(Q, "a", id="a", max_attempts=5)

    assert cstore.nack(claim_one(cstore), error="first", delay_ms=0).last_error == "first"
    assert cstore.nack(claim_one(cstore), error="", delay_ms=0).last_error == "first"
    assert cstore.nack(claim_one(cstore), error="second", delay_ms=0).last_error == "second"
    assert stored(cstore, "a").last_error == "second"


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_thingd_max_attempts_counts_first_run_then_dead(
    cstore: redisq.Store, clock: TestClock, max_attempts: int
) -> None:
    cstore.enqueue(Q, "a", id="a", max_attempts=max_attempts)
    last = None
    for attempt in range(1, max_attempts + 1):
        job = claim_one(cstore)
        assert job.attempts == attempt
        clock.advance(1)
        last = cstore.nack(job, error=f"fail {attempt}", delay_ms=0)

    assert last is not None
    assert last.state is JobState.DEAD
    assert last.attempts == max_attempts
    assert last.finished_at_ms == clock.now_ms  # thingd's dead_at_ms
    assert last.last_error == f"fail {max_attempts}"
    assert cstore.claim(Q, worker=W) == []
    assert [j.id for j in cstore.list(Q, state=JobState.DEAD)] == ["a"]


def test_thingd_nack_dead_true_dead_letters_at_once(cstore: redisq.Store) -> None:
    cstore.enqueue(Q, "a", id="a", max_attempts=5)

    dead = cstore.nack(claim_one(cstore), error="fatal", dead=True)

    assert dead.state is JobState.DEAD
    assert dead.attempts == 1


def test_thingd_claim_and_ack_returns_completed_with_attempts(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, "a", id="a")
    clock.advance(1)
    cstore.enqueue(Q, "b", id="b")

    done = cstore.claim_and_ack(Q)

    assert done is not None
    assert done.id == "a"
    assert done.state is JobState.COMPLETED
    assert done.attempts == 1
    assert done.token is not None
    assert done.finished_at_ms == clock.now_ms
    assert stored(cstore, "a") == done
    assert cstore.counts(Q)[JobState.READY] == 1
    assert cstore.claim_and_ack(Q) is not None
    assert cstore.claim_and_ack(Q) is None


def test_thingd_state_machine_walk(cstore: redisq.Store, clock: TestClock) -> None:
    # push -> Ready
    assert cstore.enqueue(Q, "a", id="a", max_attempts=3).state is JobState.READY
    # claim -> Leased; nack (attempts < max) -> Ready
    job = claim_one(cstore, lease_ms=100)
    assert job.state is JobState.LEASED
    assert cstore.nack(job, delay_ms=0).state is JobState.READY
    # claim -> Leased; lease expired -> Ready on the next claim (attempts kept), re-leased
    claim_one(cstore, lease_ms=100)
    clock.advance(100)
    job = claim_one(cstore, lease_ms=100)
    assert job.attempts == 3
    # ack -> Completed
    assert cstore.ack(job).state is JobState.COMPLETED
    # A second job: nack with attempts >= max -> Dead
    cstore.enqueue(Q, "b", id="b", max_attempts=1)
    assert cstore.nack(claim_one(cstore), delay_ms=0).state is JobState.DEAD
    assert [(j.id, j.state) for j in cstore.list(Q)] == [
        ("a", JobState.COMPLETED),
        ("b", JobState.DEAD),
    ]


def test_thingd_list_jobs_every_state_grouped_by_state(
    cstore: redisq.Store, clock: TestClock
) -> None:
    # Given one job in each state, created in an order unlike the state order
    for job_id in ("d", "c", "l", "x", "s", "r"):
        cstore.enqueue(Q, job_id, id=job_id, max_attempts=1)
        clock.advance(1)
    cstore.nack(claim_one(cstore), delay_ms=0)  # d -> dead
    cstore.ack(claim_one(cstore))  # c -> completed
    claim_one(cstore)  # l -> leased
    assert cstore.cancel(Q, "x") is True
    assert cstore.update(Q, "s", run_at_ms=clock.now_ms + 60_000).state is JobState.SCHEDULED

    # When listed
    jobs = cstore.list(Q)

    # Then grouped by state (ready, scheduled, leased, completed, dead, cancelled)
    assert [(j.id, j.state.value) for j in jobs] == [
        ("r", "ready"),
        ("s", "scheduled"),
        ("l", "leased"),
        ("c", "completed"),
        ("d", "dead"),
        ("x", "cancelled"),
    ]
    # and thingd's creation order is a client-side sort
    by_creation = sorted(jobs, key=lambda j: j.created_at_ms)
    assert [j.id for j in by_creation] == ["d", "c", "l", "x", "s", "r"]
    assert cstore.list("never-used") == []


def test_thingd_list_dead_jobs_in_order_of_death(cstore: redisq.Store, clock: TestClock) -> None:
    cstore.enqueue(Q, "a", id="a", max_attempts=1)
    cstore.enqueue(Q, "b", id="b", max_attempts=1)
    cstore.enqueue(Q, "c", id="c")
    a, b = cstore.claim(Q, worker=W, count=2)
    cstore.nack(b, error="b died", delay_ms=0)
    clock.advance(1)
    cstore.nack(a, error="a died", delay_ms=0)

    dead = cstore.list(Q, state=JobState.DEAD)

    assert [j.id for j in dead] == ["b", "a"]
    assert [j.last_error for j in dead] == ["b died", "a died"]


def test_thingd_list_queues_sorted_and_only_non_empty(cstore: redisq.Store) -> None:
    assert cstore.queues() == []
    for queue in ("zeta", "alpha", "mid", "done"):
        cstore.enqueue(queue, 1, id="j")
    assert cstore.claim_and_ack("done") is not None

    assert cstore.queues() == ["alpha", "done", "mid", "zeta"]
    assert cstore.delete("mid", "j") is True
    assert cstore.queues() == ["alpha", "done", "zeta"]


def test_thingd_count_active_jobs_includes_completed(cstore: redisq.Store) -> None:
    # thingd's own example: push 3 jobs, dead-letter 1, leaves active = 2
    for i in range(3):
        cstore.enqueue("a", i, id=f"j{i}", max_attempts=1)
    cstore.nack(claim_one(cstore, "a"), delay_ms=0)
    assert count_active_jobs(cstore) == 2
    assert count_dead_jobs(cstore) == 1

    # A completed job is still active; counts sum over every queue.
    assert cstore.claim_and_ack("a") is not None
    cstore.enqueue("b", "x", id="k")
    assert count_active_jobs(cstore) == 3
    assert count_dead_jobs(cstore) == 1
    assert cstore.counts()[JobState.COMPLETED] == 1


def test_thingd_count_active_jobs_drops_trimmed_completed_jobs(url: str, prefix: str) -> None:
    with redisq.connect(url, prefix=prefix, retention=redisq.Retention(completed=1)) as s:
        s.enqueue(Q, 1, id="a")
        s.enqueue(Q, 2, id="b")
        assert s.claim_and_ack(Q) is not None
        assert s.claim_and_ack(Q) is not None

        assert count_active_jobs(s) == 1
        assert s.get(Q, "a") is None


# =========================================================================== qml Storage


def test_qml_enqueue_existing_id_returns_stored_job_not_overwritten(
    cstore: redisq.Store,
) -> None:
    first = cstore.enqueue("default", ["arg1"], id="job-1", name="send_email", priority=1)

    again = cstore.enqueue("default", ["changed"], id="job-1", name="other", priority=9)

    assert again == first
    assert stored(cstore, "job-1", "default").payload == ["arg1"]
    assert cstore.counts()[JobState.READY] == 1  # not double-counted


def test_qml_enqueue_scheduled_job_is_run_at_ms(cstore: redisq.Store, clock: TestClock) -> None:
    job = cstore.enqueue(Q, [], id="s", run_at_ms=clock.now_ms + 1_000)

    assert job.state is JobState.SCHEDULED
    assert get_available_jobs(cstore) == []
    clock.advance(1_000)
    assert [j.id for j in get_available_jobs(cstore)] == ["s"]


@pytest.mark.parametrize(("max_retries", "runs"), [(2, 3), (0, 6)])
def test_qml_max_retries_maps_to_max_attempts(
    cstore: redisq.Store, max_retries: int, runs: int
) -> None:
    job = qml_enqueue(cstore, Q, "method", [], max_retries=max_retries)
    assert job.max_attempts == runs

    seen = 0
    last = None
    while jobs := cstore.claim(Q, worker=W):
        seen += 1
        last = cstore.nack(jobs[0], error="retry me", delay_ms=0)

    assert seen == runs
    assert last is not None
    assert last.state is JobState.DEAD


def test_qml_get_returns_none_when_missing(cstore: redisq.Store) -> None:
    assert cstore.get(Q, "missing") is None
    assert cstore.find("missing") is None
    cstore.enqueue(Q, 1, id="j1")
    assert cstore.get("other", "j1") is None


def test_qml_get_finds_job_by_id_in_any_queue(cstore: redisq.Store) -> None:
    cstore.enqueue("alpha", 1, id="a1")
    job = cstore.enqueue("beta", ["x"], id="b1", name="m")

    assert cstore.find("b1") == job
    assert cstore.get("beta", "b1") == job


def test_qml_update_changes_only_given_fields_of_waiting_job(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, {"v": 1}, id="j1", name="m")

    raised = cstore.update(Q, "j1", priority=5)
    assert raised.priority == 5
    assert raised.payload == {"v": 1}
    assert raised.name == "m"

    replaced = cstore.update(Q, "j1", payload=[])
    assert replaced.payload == []
    assert replaced.priority == 5

    later = cstore.update(Q, "j1", run_at_ms=clock.now_ms + 1_000)
    assert later.state is JobState.SCHEDULED
    assert cstore.claim(Q, worker=W) == []
    now = cstore.update(Q, "j1", run_at_ms=clock.now_ms)
    assert now.state is JobState.READY
    assert stored(cstore, "j1") == now
    assert claim_one(cstore).payload == []


def test_qml_update_missing_raises_job_not_found(cstore: redisq.Store) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        cstore.update(Q, "nope", priority=1)


@pytest.mark.parametrize("state", ["leased", "completed"])
def test_qml_update_of_leased_or_finished_job_raises_invalid_transition_unlike_qml(
    cstore: redisq.Store, state: str
) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)
    if state == "completed":
        cstore.ack(job)
    before = stored(cstore, "j1")

    with pytest.raises(InvalidTransition) as caught:
        cstore.update(Q, "j1", priority=9, payload="new")

    assert caught.value.actual == state
    assert stored(cstore, "j1") == before


def test_qml_delete_is_hard_delete_true_then_false(cstore: redisq.Store) -> None:
    cstore.enqueue(Q, "x", id="j1")
    job = claim_one(cstore)

    assert cstore.delete(Q, "j1") is True

    assert cstore.get(Q, "j1") is None
    assert set(cstore.counts(Q).values()) == {0}
    assert cstore.delete(Q, "j1") is False
    with pytest.raises(JobNotFound):
        cstore.ack(job)


def test_qml_list_state_filter_limit_offset(cstore: redisq.Store, clock: TestClock) -> None:
    for job_id in ("a", "b", "c"):
        cstore.enqueue(Q, job_id, id=job_id)
        clock.advance(1)
    claim_one(cstore)  # a is leased

    assert [j.id for j in cstore.list(state=JobState.READY)] == ["b", "c"]
    assert [j.id for j in cstore.list(state=JobState.READY, limit=1, offset=1)] == ["c"]
    assert [j.id for j in cstore.list(state=JobState.LEASED)] == ["a"]
    assert cstore.list(state=JobState.DEAD) == []
    assert cstore.list(state=JobState.READY, offset=5) == []
    # redisq order: by state, then the set's order (not newest first)
    assert [j.id for j in cstore.list()] == ["b", "c", "a"]
    assert [j.id for j in cstore.list(limit=2)] == ["b", "c"]


def test_qml_list_newest_first_is_a_client_side_sort(
    cstore: redisq.Store, clock: TestClock
) -> None:
    for job_id in ("a", "b", "c"):
        cstore.enqueue(Q, job_id, id=job_id)
        clock.advance(1)
    claim_one(cstore)

    assert [j.id for j in qml_list(cstore)] == ["c", "b", "a"]
    assert [j.id for j in qml_list(cstore, state=JobState.READY, limit=1)] == ["c"]
    assert [j.id for j in qml_list(cstore, limit=2, offset=1)] == ["b", "a"]
    assert qml_list(cstore, offset=3) == []


def test_qml_get_job_counts_has_every_state(cstore: redisq.Store, clock: TestClock) -> None:
    assert cstore.counts() == dict.fromkeys(JobState, 0)
    cstore.enqueue("a", 1, id="r")
    cstore.enqueue("a", 2, id="s", delay_ms=1_000)
    cstore.enqueue("b", 3, id="l")
    cstore.enqueue("b", 4, id="c")
    claim_one(cstore, "b")
    assert cstore.claim_and_ack("b") is not None

    counts = cstore.counts()

    assert counts == {
        JobState.READY: 1,
        JobState.SCHEDULED: 1,
        JobState.LEASED: 1,
        JobState.COMPLETED: 1,
        JobState.DEAD: 0,
        JobState.CANCELLED: 0,
        JobState.WAITING: 0,
    }
    assert cstore.counts("a")[JobState.READY] == 1
    assert cstore.counts("a")[JobState.LEASED] == 0


def test_qml_get_available_jobs_is_peek_read_only(cstore: redisq.Store, clock: TestClock) -> None:
    # Given an awaiting-retry job (prio 3), a delayed job (prio 5) and ready jobs
    cstore.enqueue(Q, "r", id="r", priority=3)
    cstore.nack(claim_one(cstore), error="retry", delay_ms=50)
    cstore.enqueue(Q, "s", id="s", priority=5, delay_ms=100)
    cstore.enqueue(Q, "a", id="a")
    cstore.enqueue(Q, "lo", id="lo", priority=-1)
    cstore.enqueue(Q, "b", id="b")

    # Before they are due: only the ready jobs, priority desc then FIFO
    assert [j.id for j in cstore.peek(Q, 10)] == ["a", "b", "lo"]
    clock.advance(100)

    # Once due: AwaitingRetry and Scheduled jobs are included, in claim order
    assert [j.id for j in cstore.peek(Q, 10)] == ["s", "r", "a", "b", "lo"]
    assert [j.id for j in cstore.peek(Q, 5)] == ["s", "r", "a", "b", "lo"]  # no off-by-one
    assert [j.id for j in cstore.peek(Q, 2)] == ["s", "r"]
    # Read-only: nothing promoted or leased
    assert cstore.counts(Q)[JobState.SCHEDULED] == 2
    assert cstore.counts(Q)[JobState.LEASED] == 0
    assert [j.id for j in cstore.claim(Q, worker=W, count=10)] == ["s", "r", "a", "b", "lo"]


def test_qml_get_available_jobs_across_queues(cstore: redisq.Store, clock: TestClock) -> None:
    cstore.enqueue("one", 1, id="a")
    clock.advance(1)
    cstore.enqueue("two", 2, id="x", priority=4)
    clock.advance(1)
    cstore.enqueue("one", 3, id="b")
    cstore.enqueue("two", 4, id="later", delay_ms=1_000)

    jobs = get_available_jobs(cstore, limit=10)

    assert [(j.queue, j.id) for j in jobs] == [("two", "x"), ("one", "a"), ("one", "b")]
    assert [j.id for j in get_available_jobs(cstore, limit=2)] == ["x", "a"]


def test_qml_fetch_and_lock_job_leases_with_worker_token_and_lease(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue("one", 1, id="hi", priority=9)
    cstore.enqueue("two", 2, id="lo")

    job = fetch_and_lock_job(cstore, "server:worker:0", ["two"])

    assert job is not None
    assert (job.queue, job.id) == ("two", "lo")
    assert job.state is JobState.LEASED  # qml Processing
    assert job.worker == "server:worker:0"
    assert job.token is not None
    assert job.lease_deadline_ms == clock.now_ms + 30_000
    assert fetch_and_lock_job(cstore, "w", ["two"]) is None
    # None means every queue
    other = fetch_and_lock_job(cstore, "w")
    assert other is not None
    assert other.id == "hi"
    assert fetch_and_lock_job(cstore, "w") is None


def test_qml_fetch_and_lock_job_includes_due_scheduled_and_retry(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, 1, id="retry")
    cstore.nack(claim_one(cstore), error="e", delay_ms=10)
    cstore.enqueue(Q, 2, id="sched", delay_ms=20)
    assert fetch_and_lock_job(cstore, "w", [Q]) is None

    clock.advance(20)

    first = fetch_and_lock_job(cstore, "w", [Q])
    second = fetch_and_lock_job(cstore, "w", [Q])
    assert first is not None
    assert second is not None
    assert (first.id, first.attempts) == ("retry", 2)
    assert (second.id, second.attempts) == ("sched", 1)


def test_qml_fetched_job_of_crashed_worker_comes_back_after_lease(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, 1, id="j1")
    assert fetch_and_lock_job(cstore, "crashed", [Q]) is not None
    assert fetch_and_lock_job(cstore, "w2", [Q]) is None

    clock.advance(30_000)

    back = fetch_and_lock_job(cstore, "w2", [Q])
    assert back is not None
    assert (back.id, back.worker, back.attempts) == ("j1", "w2", 2)


def test_qml_claim_does_not_skip_locked_jobs_unlike_qml_memory(cstore: redisq.Store) -> None:
    cstore.enqueue(Q, 1, id="j1")
    assert cstore.lock(Q, "j1", "someone", ttl_ms=60_000) is True

    job = fetch_and_lock_job(cstore, "w", [Q])

    assert job is not None
    assert job.id == "j1"


def test_qml_fetch_available_jobs_returns_short_batch(cstore: redisq.Store) -> None:
    for i in range(3):
        cstore.enqueue(Q, i, id=f"j{i}")

    jobs = fetch_available_jobs_atomic(cstore, "w", limit=10, queues=[Q])

    assert [j.id for j in jobs] == ["j0", "j1", "j2"]
    assert fetch_available_jobs_atomic(cstore, "w", queues=[Q]) == []


def test_qml_fetch_available_jobs_default_limit_is_10(cstore: redisq.Store) -> None:
    cstore.enqueue_many(Q, list(range(12)))

    assert len(fetch_available_jobs_atomic(cstore, "w")) == 10
    assert len(fetch_available_jobs_atomic(cstore, "w")) == 2


def test_qml_fetch_available_jobs_is_one_atomic_batch(url: str, prefix: str) -> None:
    # Given 40 jobs and 8 fetchers released together, each asking for 5
    order = [f"j{i:02d}" for i in range(40)]
    with redisq.connect(url, prefix=prefix) as setup:
        setup.enqueue_many(Q, [Spec(i, id=i) for i in order])
    stores = [redisq.connect(url, prefix=prefix) for _ in range(8)]
    try:
        # When they fetch concurrently
        batches = in_threads(
            8,
            lambda i: fetch_available_jobs_atomic(stores[i], f"w{i}", limit=5, queues=[Q]),
        )
    finally:
        for s in stores:
            s.close()

    # Then each batch was leased by one script: consecutive tokens, one lease deadline and a
    # contiguous run of the FIFO order, with no job in two batches
    for batch in batches:
        assert len(batch) == 5
        tokens = [j.token for j in batch]
        assert tokens[0] is not None
        assert tokens == list(range(tokens[0], tokens[0] + 5))
        assert len({j.lease_deadline_ms for j in batch}) == 1
        start = order.index(batch[0].id)
        assert [j.id for j in batch] == order[start : start + 5]
    assert sorted(j.id for batch in batches for j in batch) == order


def test_qml_try_acquire_job_lock_not_reentrant(store: redisq.Store) -> None:
    assert store.lock(Q, "j1", "w1", ttl_ms=60_000) is True
    assert store.lock(Q, "j1", "w1", ttl_ms=60_000) is False
    assert store.lock(Q, "j1", "w2", ttl_ms=60_000) is False


def test_qml_job_lock_independent_of_job_state_and_existence(store: redisq.Store) -> None:
    assert store.lock(Q, "missing", "w1", ttl_ms=60_000) is True
    job = store.enqueue(Q, 1, id="j1")

    assert store.lock(Q, "j1", "w1", ttl_ms=60_000) is True

    assert stored(store, "j1") == job
    assert store.claim(Q, worker=W)[0].id == "j1"
    assert store.lock(Q, "j1", "w2", ttl_ms=60_000) is False


def test_qml_job_locks_are_per_queue(store: redisq.Store) -> None:
    assert store.lock("one", "j1", "w1", ttl_ms=60_000) is True
    assert store.lock("two", "j1", "w2", ttl_ms=60_000) is True


def test_qml_release_job_lock_owner_only(store: redisq.Store) -> None:
    assert store.unlock(Q, "j1", "w1") is False  # never held
    assert store.lock(Q, "j1", "w1", ttl_ms=60_000) is True

    assert store.unlock(Q, "j1", "w2") is False
    assert store.unlock(Q, "j1", "w1") is True
    assert store.unlock(Q, "j1", "w1") is False
    assert store.lock(Q, "j1", "w2", ttl_ms=60_000) is True


def test_qml_job_lock_expires_after_ttl(store: redisq.Store) -> None:
    assert store.lock(Q, "j1", "w1", ttl_ms=200) is True
    assert store.lock(Q, "j1", "w2", ttl_ms=60_000) is False

    # The lock expires on the server; w2 gets it then (polling, never sleeping to order).
    wait_for(lambda: store.lock(Q, "j1", "w2", ttl_ms=60_000), timeout=5)

    assert store.unlock(Q, "j1", "w1") is False  # expired: w1 no longer owns it
    assert store.unlock(Q, "j1", "w2") is True


def test_qml_job_lock_expiry_uses_redis_key_expiry_not_test_clock(
    cstore: redisq.Store, clock: TestClock
) -> None:
    assert cstore.lock(Q, "j1", "w1", ttl_ms=60_000) is True
    clock.advance(120_000)

    assert cstore.lock(Q, "j1", "w2", ttl_ms=60_000) is False
    assert cstore.unlock(Q, "j1", "w1") is True


def test_qml_default_retry_is_exponential_1s_x2_with_25pct_jitter(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, 1, id="r", max_attempts=10)
    for attempt in (1, 2, 3):
        job = claim_one(cstore)
        assert job.attempts == attempt

        retry = cstore.nack(job, error="e")  # delay_ms=None: the default policy

        base = 1_000 * 2 ** (attempt - 1)
        delay = retry.run_at_ms - clock.now_ms
        assert retry.state is JobState.SCHEDULED  # qml AwaitingRetry
        assert 0.75 * base <= delay <= 1.25 * base
        clock.advance(delay)


def test_qml_retry_backoff_caps_at_15_minutes_then_jitter(
    cstore: redisq.Store, clock: TestClock
) -> None:
    cstore.enqueue(Q, 1, id="r", max_attempts=20)
    for _ in range(10):
        cstore.nack(claim_one(cstore), delay_ms=0)
    job = claim_one(cstore)
    assert job.attempts == 11  # 1 s * 2^10 = 1,024 s, over the 900 s cap

    retry = cstore.nack(job, error="e")

    delay = retry.run_at_ms - clock.now_ms
    assert 0.75 * 900_000 <= delay <= 1.25 * 900_000


# ============================================================== checklist shared by both


def test_priority_order_then_fifo_within_priority(cstore: redisq.Store, clock: TestClock) -> None:
    for job_id, priority in [("l1", -5), ("n1", 0), ("h1", 10), ("n2", 0), ("h2", 10), ("l2", -5)]:
        cstore.enqueue(Q, job_id, id=job_id, priority=priority)
        clock.advance(1)

    order = [claim_one(cstore).id for _ in range(6)]

    assert order == ["h1", "h2", "n1", "n2", "l1", "l2"]


def test_queue_filter_claims_only_named_queues(cstore: redisq.Store) -> None:
    cstore.enqueue("emails", 1, id="e1", priority=10)
    cstore.enqueue("reports", 2, id="r1")
    cstore.enqueue("reports", 3, id="r2")

    jobs = cstore.claim("reports", worker=W, count=10)

    assert [j.id for j in jobs] == ["r1", "r2"]
    assert cstore.counts("emails")[JobState.READY] == 1


def test_payload_empty_list_and_big_int_round_trip(cstore: redisq.Store) -> None:
    nested = {"args": [], "n": BIG, "deep": [[], {"k": -BIG}]}
    cstore.enqueue(Q, [], id="empty")
    cstore.enqueue(Q, BIG, id="big")
    cstore.enqueue(Q, nested, id="nested")

    assert stored(cstore, "empty").payload == []
    assert stored(cstore, "big").payload == BIG
    assert [j.payload for j in cstore.peek(Q, 10)] == [[], BIG, nested]
    assert [j.payload for j in cstore.list(Q)] == [[], BIG, nested]
    claimed = cstore.claim(Q, worker=W, count=3)
    assert [j.payload for j in claimed] == [[], BIG, nested]

    # A nack, re-claim and ack go through scripts that never decode the payload.
    cstore.nack(claimed[0], delay_ms=0)
    again = claim_one(cstore)
    assert again.payload == []
    done = cstore.ack(again, result=[BIG, []])
    assert stored(cstore, "empty").result == [BIG, []]
    assert done.result == [BIG, []]
    assert type(stored(cstore, "big").payload) is int


def test_time_is_redis_server_clock(store: redisq.Store) -> None:
    before = server_ms(store)
    job = store.enqueue(Q, 1, id="j1", delay_ms=60_000)
    store.enqueue(Q, 2, id="j2")
    leased = claim_one(store, lease_ms=5_000)
    after = server_ms(store)

    assert before <= job.created_at_ms <= after
    assert job.run_at_ms == job.created_at_ms + 60_000
    assert leased.id == "j2"
    assert leased.lease_deadline_ms is not None
    assert before <= leased.lease_deadline_ms - 5_000 <= after


def test_n_concurrent_fetchers_one_job_one_winner(url: str, prefix: str) -> None:
    fetchers = 10
    stores = [redisq.connect(url, prefix=prefix) for _ in range(fetchers)]
    try:
        for round_no in range(3):
            job = stores[0].enqueue(Q, round_no, id=f"job{round_no}")

            results = in_threads(
                fetchers, lambda i: stores[i].claim(Q, worker=f"w{i}", lease_ms=60_000)
            )

            winners = [jobs for jobs in results if jobs]
            assert len(winners) == 1, results
            assert winners[0][0].id == job.id
            assert winners[0][0].attempts == 1
            stores[0].ack(winners[0][0])
    finally:
        for s in stores:
            s.close()


def test_100_jobs_20_workers_no_duplicates(url: str, prefix: str) -> None:
    ids = [f"job{i:03d}" for i in range(100)]
    workers = 20
    stores = [redisq.connect(url, prefix=prefix) for _ in range(workers)]
    try:
        stores[0].enqueue_many(Q, [Spec(i, id=i) for i in ids])

        def work(i: int) -> list[tuple[str, int | None]]:
            done = []
            while jobs := stores[i].claim(Q, worker=f"w{i}", lease_ms=60_000):
                stores[i].ack(jobs[0])
                done.append((jobs[0].id, jobs[0].token))
            return done

        per_worker = in_threads(workers, work)
        counts = stores[0].counts(Q)
    finally:
        for s in stores:
            s.close()

    handled = [job_id for done in per_worker for job_id, _ in done]
    tokens = [token for done in per_worker for _, token in done]
    assert sorted(handled) == ids
    assert len(set(tokens)) == 100
    assert counts[JobState.COMPLETED] == 100
    assert counts[JobState.READY] == counts[JobState.LEASED] == 0
