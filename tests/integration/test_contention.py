"""Many workers, one queue: every job is leased by one worker at a time and completed once.

Each thread has its own store (its own connections), as separate worker processes would, and a
barrier starts them together so their claims really overlap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TypeVar

import pytest

import redisq
from redisq import JobState, Retention

T = TypeVar("T")

RACERS = 16
RACE_ROUNDS = 5
DRAINERS = 8
JOBS = 10_000
#: memory:// runs the scripts in fakeredis, where each redis.call costs ~0.3 ms of Python:
#: 10,000 jobs would take ~15 s there. The race is the same with fewer jobs.
MEMORY_JOBS = JOBS
BATCH = 50
BARRIER_TIMEOUT = 30.0


@pytest.fixture
def stores(url: str, prefix: str) -> Iterator[Callable[..., list[redisq.Store]]]:
    """``stores(n, **options)``: n stores on ``url``, each with its own connections."""
    with ExitStack() as stack:

        def make(n: int, **options: object) -> list[redisq.Store]:
            made = []
            for _ in range(n):
                store = redisq.connect(url, prefix=prefix, **options)  # type: ignore[arg-type]
                stack.callback(store.close)
                made.append(store)
            return made

        yield make


def _in_threads(stores: list[redisq.Store], work: Callable[[int, redisq.Store], T]) -> list[T]:
    """Run ``work(i, store)`` for every store in its own thread; re-raise the first error."""
    with ThreadPoolExecutor(max_workers=len(stores)) as pool:
        futures = [pool.submit(work, i, store) for i, store in enumerate(stores)]
        return [future.result(timeout=60) for future in futures]


def test_one_job_one_winner(stores: Callable[..., list[redisq.Store]]) -> None:
    # Given one job in each of a few queues, and 16 workers with warm connections
    racers = stores(RACERS)
    for round_ in range(RACE_ROUNDS):
        racers[0].enqueue(f"race{round_}", round_, id=f"job{round_}")
    for store in racers:
        store.counts("race0")
    barrier = threading.Barrier(RACERS, timeout=BARRIER_TIMEOUT)

    def race(i: int, store: redisq.Store) -> list[list[redisq.Job]]:
        won = []
        for round_ in range(RACE_ROUNDS):
            barrier.wait()
            won.append(store.claim(f"race{round_}", worker=f"w{i}", lease_ms=60_000))
        return won

    # When all 16 claim each job at the same moment
    results = _in_threads(racers, race)

    # Then each job went to exactly one worker, once; every other worker got nothing
    for round_ in range(RACE_ROUNDS):
        claims = [results[i][round_] for i in range(RACERS)]
        winners = [i for i, jobs in enumerate(claims) if jobs]
        assert len(winners) == 1, f"round {round_}: {len(winners)} workers won"
        (job,) = claims[winners[0]]
        assert (job.id, job.token, job.attempts) == (f"job{round_}", 1, 1)
        assert job.worker == f"w{winners[0]}"
        stored = racers[0].get(f"race{round_}", job.id)
        assert stored is not None
        assert (stored.state, stored.token, stored.worker) == (
            JobState.LEASED,
            1,
            f"w{winners[0]}",
        )


def test_many_workers_drain_a_queue_exactly_once(
    stores: Callable[..., list[redisq.Store]], backend: str
) -> None:
    # Given 10,000 ready jobs and 8 workers
    total = MEMORY_JOBS if backend == "memory" else JOBS
    retention = Retention(completed=2 * total)
    drainers = stores(DRAINERS, retention=retention)
    enqueued = drainers[0].enqueue_many("work", list(range(total)))
    assert len({j.id for j in enqueued}) == total
    barrier = threading.Barrier(DRAINERS, timeout=BARRIER_TIMEOUT)

    def drain(i: int, store: redisq.Store) -> list[str]:
        done: list[str] = []
        barrier.wait()
        while jobs := store.claim("work", worker=f"w{i}", count=BATCH, lease_ms=60_000):
            acked = store.ack_many(jobs)
            assert all(j.state is JobState.COMPLETED for j in acked)
            done += [j.id for j in acked]
        return done

    # When they claim and ack in batches of 50 until the queue is empty
    per_worker = _in_threads(drainers, drain)

    # Then no job was lost and none was processed twice
    processed = [job_id for ids in per_worker for job_id in ids]
    twice = [job_id for job_id, n in Counter(processed).items() if n > 1]
    assert twice == []
    assert len(processed) == total
    assert set(processed) == {j.id for j in enqueued}
    counts = drainers[0].counts("work")
    assert counts == {
        JobState.READY: 0,
        JobState.SCHEDULED: 0,
        JobState.LEASED: 0,
        JobState.COMPLETED: total,
        JobState.DEAD: 0,
        JobState.CANCELLED: 0,
        JobState.WAITING: 0,
    }
    sample = drainers[0].get("work", enqueued[-1].id)
    assert sample is not None
    assert (sample.state, sample.attempts) == (JobState.COMPLETED, 1)
    # And the work was shared (a sanity check that the threads really overlapped)
    assert sum(1 for ids in per_worker if ids) >= 2
