"""The worker's side of a cancel, without Redis: the keeper stops the right handler, and an
ack that crossed the cancel is refused quietly (issue 12 point 3)."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from redisq.errors import LeaseLost
from redisq.models import CancelNotice
from redisq.worker._keeper import Keeper
from redisq.worker._settler import Settler
from redisq.worker._state import Entry, Phase, State
from redisq.worker._support import WorkerMetrics


def _entry(job_id: str, token: int, is_async: bool = False) -> Entry:
    job: Any = SimpleNamespace(id=job_id, queue="q", token=token)
    task: Any = SimpleNamespace(is_async=is_async, timeout_ms=None)
    return Entry(job, task, 30_000, time.monotonic())


def _keeper(state: State, stopped: list[Entry]) -> tuple[Keeper, WorkerMetrics]:
    metrics = WorkerMetrics()
    store: Any = SimpleNamespace(settings=SimpleNamespace(cluster=False))
    keeper = Keeper(store, state, ["q"], 10_000, metrics, stopped.append, lambda e: 0, "k")
    return keeper, metrics


def test_the_keeper_stops_the_holder_of_the_cancelled_lease_only() -> None:
    # Given an async and a sync handler running, and one job waiting in the buffer
    state = State(2, 1, lambda: None, lambda s: None)
    a, b, c = _entry("a", 1, is_async=True), _entry("b", 2), _entry("c", 3)
    state.admit([a, b, c])
    assert state.next(None, None, block=False) is a
    assert state.next(None, None, block=False) is b
    stopped: list[Entry] = []
    keeper, metrics = _keeper(state, stopped)

    # When cancels arrive for each, and for leases this worker does not hold
    keeper.cancelled(
        [
            CancelNotice("q", "a", 1),
            CancelNotice("q", "b", 2),
            CancelNotice("q", "c", 3),
            CancelNotice("q", "a", 7),  # another run of the same job
            CancelNotice("other", "b", 2),
            CancelNotice("q", "zz", 9),
        ]
    )

    # Then the async handler's task is cancelled, the sync one is told, the waiting one dropped
    assert stopped == [a]
    assert a.cancelled_event().is_set()
    assert b.cancelled_event().is_set()
    assert c.cancelled
    assert not state.pending
    assert metrics.cancelled == 3
    # And the same cancels read again change nothing
    keeper.cancelled([CancelNotice("q", "a", 1), CancelNotice("q", "b", 2)])
    assert stopped == [a]
    assert metrics.cancelled == 3


def test_an_ack_that_crossed_the_cancel_is_refused_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a handler that returned (its ack queued) when the cancel arrived
    state = State(1, 0, lambda: None, lambda s: None)
    entry = _entry("a", 1)
    state.admit([entry])
    assert state.next(None, None, block=False) is entry
    state.next(entry, entry, block=False)
    stopped: list[Entry] = []
    keeper, _ = _keeper(state, stopped)
    keeper.cancelled([CancelNotice("q", "a", 1)])
    assert entry.phase is Phase.DECIDED
    assert entry.cancelled

    def ack_many(*args: Any, **kwargs: Any) -> None:
        raise LeaseLost("a", 1, "stale token", "cancelled")

    store: Any = SimpleNamespace(settings=SimpleNamespace(cluster=False), ack_many=ack_many)
    metrics = WorkerMetrics()
    settler = Settler(store, metrics, "s")
    settler.bind(state)

    # When the store refuses the ack
    caplog.set_level(logging.DEBUG, logger="redisq")
    settler._ack("q", [entry])

    # Then it is counted and forgotten, without a warning
    assert metrics.refused == 1
    assert entry.settled
    assert entry not in state.entries
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert stopped == []
