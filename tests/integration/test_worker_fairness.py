"""Several queues: a busy queue never starves a quiet one; weights and strict order hold."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import redisq
from tests.support.polling import wait_for

from ._worker_support import running


@pytest.fixture
def app(url: str, prefix: str) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix)
    yield made
    made.close()


def _recording_tasks(app: redisq.App, queues: list[str]) -> tuple[list[str], threading.Lock]:
    order: list[str] = []
    lock = threading.Lock()
    for queue in queues:

        def run(n: int, queue: str = queue) -> None:
            with lock:
                order.append(queue)

        app.task(name=f"on_{queue}", queue=queue)(run)
    return order, lock


def test_a_busy_queue_does_not_starve_a_quiet_one(app: redisq.App) -> None:
    # Given 3,000 jobs on a busy queue, enqueued before 5 on a quiet one
    order, lock = _recording_tasks(app, ["busy", "quiet"])
    busy, quiet = app.tasks["on_busy"], app.tasks["on_quiet"]
    busy.enqueue_many([busy.call(n) for n in range(3_000)])
    quiet.enqueue_many([quiet.call(n) for n in range(5)])
    # When one worker works both queues (one handler slot, so that the jobs run in the order
    # they were claimed and admitted: with two, a thread that lost the GIL right after taking
    # a quiet job lets the other run a few hundred quick busy ones first)
    worker = redisq.Worker(app, queues=["busy", "quiet"], concurrency=1, idle_wait_ms=50)
    with running(worker):
        wait_for(lambda: order.count("quiet") == 5, timeout=20)
    # Then the quiet jobs ran among the first few, not after the busy backlog
    with lock:
        last_quiet = len(order) - 1 - order[::-1].index("quiet")
        busy_before = order[:last_quiet].count("busy")
    assert busy_before <= 20, f"{busy_before} busy jobs ran before the 5 quiet ones"


def test_weights_set_the_share_of_each_queue(app: redisq.App) -> None:
    order, _ = _recording_tasks(app, ["a", "b"])
    for name in ("a", "b"):
        task = app.tasks[f"on_{name}"]
        task.enqueue_many([task.call(n) for n in range(40)])
    worker = redisq.Worker(
        app, queues=["a", "b"], weights={"a": 3}, concurrency=1, prefetch=0, idle_wait_ms=50
    )
    with running(worker):
        wait_for(lambda: len(order) >= 40, timeout=20)
    # smooth weighted round-robin, one job per claim: a a b a, repeated
    assert order[:8] == ["a", "a", "b", "a", "a", "a", "b", "a"]
    assert (order[:40].count("a"), order[:40].count("b")) == (30, 10)


def test_weights_hold_inside_the_large_claims_of_quick_jobs(app: redisq.App) -> None:
    # Given quick jobs on two weighted queues, which the default buffer claims hundreds at once
    order, _ = _recording_tasks(app, ["a", "b"])
    for name in ("a", "b"):
        task = app.tasks[f"on_{name}"]
        task.enqueue_many([task.call(n) for n in range(600)])
    worker = redisq.Worker(app, queues=["a", "b"], weights={"a": 3}, concurrency=1, idle_wait_ms=50)
    with running(worker):
        wait_for(lambda: len(order) >= 600, timeout=20)
    # Then the handlers ran them in the rotation's order: 3 of a to 1 of b in every stretch
    # (a claim's jobs are interleaved by weight, not one queue's share after the other's)
    for start in range(0, 600, 40):
        window = order[start : start + 40]
        assert 28 <= window.count("a") <= 32, (start, window)


def test_strict_order_drains_earlier_queues_first(app: redisq.App) -> None:
    order, _ = _recording_tasks(app, ["low", "high"])
    low, high = app.tasks["on_low"], app.tasks["on_high"]
    low.enqueue_many([low.call(n) for n in range(10)])
    high.enqueue_many([high.call(n) for n in range(10)])
    worker = redisq.Worker(app, queues=["high", "low"], strict=True, concurrency=1, idle_wait_ms=50)
    with running(worker):
        wait_for(lambda: len(order) == 20, timeout=20)
    assert order == ["high"] * 10 + ["low"] * 10


def test_worker_options_are_validated(app: redisq.App) -> None:
    _recording_tasks(app, ["a"])
    cases = [
        ({"pool": "process"}, "pool"),
        ({"concurrency": 0}, "concurrency"),
        ({"queues": []}, "queues"),
        ({"queues": ["a", "a"]}, "queues"),
        ({"queues": ["a{"]}, "queues[0]"),
        ({"weights": {"zzz": 2}}, "weights['zzz']"),
        ({"weights": {"a": 0}}, "weights['a']"),
        ({"weights": {"a": 2}, "strict": True}, "weights"),
        ({"grace_ms": -1}, "grace_ms"),
        ({"idle_wait_ms": 0}, "idle_wait_ms"),
        ({"name": "w{1}"}, "name"),
    ]
    for options, field in cases:
        with pytest.raises(redisq.InvalidArgument) as info:
            redisq.Worker(app, **options)  # type: ignore[arg-type]
        assert info.value.field == field, options
    with pytest.raises(redisq.ConfigurationError, match="no tasks"):
        redisq.Worker(redisq.App(app.url, prefix=app.prefix))
    worker = redisq.Worker(app, idle_wait_ms=10)
    assert worker.queues == ["a"]
    with running(worker):
        pass
    with pytest.raises(RuntimeError, match="runs once"):
        worker.run()
