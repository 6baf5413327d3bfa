"""The worker's buffer: its size from the handlers' run times (on explicit times, a fake
clock), and what the State does with it: claim sizes, releases of what waits too long, and
pending jobs whose lease is gone."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from redisq._core.calls import MAX_CLAIM
from redisq.worker._sizing import (
    HORIZON_S,
    MAX_BUFFER,
    SLOW_AFTER_S,
    STALE_WAIT_S,
    Sizer,
)
from redisq.worker._state import Entry, Outcome, Phase, State

T0 = 1_000.0  # a fake monotonic clock's start


def _runs(sizer: Sizer, seconds: float, count: int, start: float = T0) -> float:
    """Feed `count` runs of `seconds` ending one after another; return the last end."""
    end = start
    for _ in range(count):
        end += seconds
        sizer.ran(seconds, end)
    return end


# ---------------------------------------------------------------------------------- Sizer


def test_no_buffer_before_a_handler_finished() -> None:
    sizer = Sizer(10, None)
    assert sizer.target(T0, False) == 0
    assert sizer.target(T0, True) == 0


def test_quick_jobs_get_the_whole_buffer() -> None:
    sizer = Sizer(10, None)
    end = _runs(sizer, 5e-6, 50)
    assert sizer.target(end, False) == MAX_BUFFER
    assert sizer.target(end + 0.001, True) == MAX_BUFFER


def test_slow_jobs_get_no_buffer() -> None:
    # 100 ms jobs on 10 handlers: 100 a second, 0.5 within the 5 ms horizon
    sizer = Sizer(10, None)
    end = _runs(sizer, 0.1, 20)
    assert sizer.target(end, False) == 0


def test_the_buffer_holds_what_the_handlers_finish_within_the_horizon() -> None:
    # 1 ms jobs on 10 handlers: 10,000 a second, 50 within 5 ms
    sizer = Sizer(10, None)
    end = _runs(sizer, 0.001, 200)
    assert sizer.target(end, False) == round(10 / 0.001 * HORIZON_S)
    # With 2 handlers: a fifth
    two = Sizer(2, None)
    assert two.target(_runs(two, 0.001, 200), False) == round(2 / 0.001 * HORIZON_S)


def test_a_fixed_prefetch_is_the_buffer_whatever_the_run_times() -> None:
    sizer = Sizer(10, 7)
    assert not sizer.adaptive
    assert sizer.target(T0, False) == 7
    end = _runs(sizer, 5e-6, 50)
    assert sizer.target(end, True) == 7
    assert Sizer(10, 0).target(_runs(Sizer(10, 0), 5e-6, 5), False) == 0


def test_handlers_that_stop_finishing_shrink_the_buffer_at_once() -> None:
    # Given quick jobs: the whole buffer
    sizer = Sizer(10, None)
    end = _runs(sizer, 5e-6, 50)
    # When the handlers run but none finishes for longer than SLOW_AFTER_S (long jobs started)
    later = end + 2 * SLOW_AFTER_S
    # Then the buffer is what one job per that time allows within the horizon: none
    assert sizer.target(later, True) == int(HORIZON_S / (2 * SLOW_AFTER_S))
    # But a pause shorter than SLOW_AFTER_S says nothing (a GIL switch, a collection)
    assert sizer.target(end + SLOW_AFTER_S / 2, True) == MAX_BUFFER
    # And with no handler running, the time since the last one says nothing either
    assert sizer.target(later, False) == MAX_BUFFER


def test_a_pause_while_idle_does_not_count_once_handlers_start_again() -> None:
    sizer = Sizer(10, None)
    end = _runs(sizer, 5e-6, 50)
    # Idle for a minute, then a handler starts: the minute is not a slow job
    sizer.busy(end + 60)
    assert sizer.target(end + 60.001, True) == MAX_BUFFER
    assert sizer.target(end + 60 + 2 * SLOW_AFTER_S, True) == 0


def test_one_run_paused_for_the_gil_does_not_shrink_the_buffer() -> None:
    sizer = Sizer(10, None)
    end = _runs(sizer, 5e-6, 50)
    end += 0.02
    sizer.ran(0.02, end)  # one no-op run that waited 20 ms for the GIL
    assert sizer.target(end, False) == MAX_BUFFER


def test_jobs_that_became_slow_move_the_estimate_within_a_few_runs() -> None:
    sizer = Sizer(10, None)
    end = _runs(sizer, 5e-6, 50)
    # A run counts for at most SPIKE times the average: 6x per run at first
    end = _runs(sizer, 0.1, 5, end)
    assert sizer.target(end, False) < 10
    end = _runs(sizer, 0.1, 15, end)
    assert sizer.target(end, False) == 0


# ---------------------------------------------------------------------------------- State


def _entry(job_id: str, claimed_at: float | None = None, lease_ms: int = 30_000) -> Entry:
    job: Any = SimpleNamespace(id=job_id, queue="q")  # Entry reads nothing else here
    return Entry(job, None, lease_ms, time.monotonic() if claimed_at is None else claimed_at)


def _state(concurrency: int = 2, prefetch: int | None = None) -> tuple[State, list[Any]]:
    settled: list[Any] = []
    return State(concurrency, prefetch, lambda: None, settled.append), settled


def _run(state: State, count: int) -> list[Entry]:
    """Start `count` pending entries (as handler threads would)."""
    return [entry for _ in range(count) if (entry := state.next(None, None, block=False))]


def test_claims_are_the_free_slots_until_the_run_times_are_known() -> None:
    state, _ = _state(concurrency=4)
    assert state.wait_capacity(0) == 4
    # Quick runs: the free slots and half the buffer (see the next test)
    _runs(state.sizer, 5e-6, 20, time.monotonic() - 1)
    assert state.wait_capacity(0) == min((4 + MAX_BUFFER) // 2, MAX_CLAIM)


def test_an_adaptive_claim_takes_half_the_buffer_so_the_next_goes_out_before_it_runs_dry() -> None:
    # Given quick runs (a full buffer) and an empty worker
    state, _ = _state(concurrency=10)
    _runs(state.sizer, 5e-6, 20, time.monotonic() - 1)
    # When the fetcher looks, then again once that claim was admitted
    first = state.wait_capacity(0)
    state.admit([_entry(f"a{i}") for i in range(first)])
    second = state.wait_capacity(0)
    # Then each claim is half of the slots and the buffer: the second is sent while the first
    # still keeps the handlers busy, instead of one claim of everything followed by a wait
    # for the buffer to empty (the fetcher and the handlers took turns)
    assert first == second == (10 + MAX_BUFFER) // 2
    state.admit([_entry(f"b{i}") for i in range(second)])
    assert state.capacity() == 0
    # And a worker whose buffer is empty (slow jobs) still claims for every free handler
    slow, _ = _state(concurrency=10)
    _runs(slow.sizer, 1.0, 20, time.monotonic() - 30)
    assert slow.wait_capacity(0) == 10


def test_claims_of_a_fixed_prefetch_worker_stay_as_set() -> None:
    state, _ = _state(concurrency=4, prefetch=3)
    _runs(state.sizer, 5e-6, 20, time.monotonic() - 1)
    assert state.wait_capacity(0) == 7


def test_what_waits_too_long_beyond_the_buffer_is_released_for_other_workers() -> None:
    # Given two busy handlers and five entries waiting, claimed STALE_WAIT_S ago
    state, settled = _state(concurrency=2)
    claimed = time.monotonic() - 2 * STALE_WAIT_S
    entries = [_entry(f"j{i}", claimed) for i in range(7)]
    state.admit(entries)
    running = _run(state, 2)
    assert [e.job.id for e in running] == ["j0", "j1"]
    # When the handlers turned slow (the buffer's size is now 0) and the keeper checks
    _runs(state.sizer, 0.5, 5, time.monotonic() - 3)
    now = time.monotonic()
    assert state.trim_at() == pytest.approx(claimed + STALE_WAIT_S)
    assert state.trim(now) == 5
    # Then the waiting ones are released (not started), the running ones go on
    released = [o for o in settled if isinstance(o, Outcome)]
    assert [(o.entry.job.id, o.kind) for o in released] == [
        (f"j{i}", "release") for i in range(2, 7)
    ]
    assert all(e.phase is Phase.DECIDED and e.released for e in entries[2:])
    assert not state.pending
    assert state.capacity() == 0  # two running, no buffer
    assert state.trim_at() == float("inf")


def test_nothing_is_released_before_the_oldest_waited_long_enough() -> None:
    state, settled = _state(concurrency=1)
    state.admit([_entry(f"j{i}") for i in range(3)])
    _run(state, 1)
    _runs(state.sizer, 0.5, 5, time.monotonic() - 3)
    assert state.trim(time.monotonic()) == 0
    assert len(state.pending) == 2
    assert not settled


def test_nothing_is_released_while_a_handler_slot_is_free() -> None:
    # A free slot means a handler is about to take the next entry: the buffer is moving.
    state, settled = _state(concurrency=2)
    state.admit([_entry(f"j{i}", time.monotonic() - 1) for i in range(3)])
    _run(state, 1)
    _runs(state.sizer, 0.5, 5, time.monotonic() - 3)
    now = time.monotonic()
    assert state.trim(now) == 0
    assert not settled
    # The keeper looks again in a while, not in a busy loop
    assert state.trim_at() == pytest.approx(now + STALE_WAIT_S / 2)


def test_a_fixed_prefetch_is_never_trimmed() -> None:
    state, settled = _state(concurrency=1, prefetch=5)
    state.admit([_entry(f"j{i}", time.monotonic() - 1) for i in range(6)])
    _run(state, 1)
    _runs(state.sizer, 0.5, 5, time.monotonic() - 3)
    assert state.trim_at() == float("inf")
    assert state.trim(time.monotonic()) == 0
    assert not settled


def test_a_waiting_entry_whose_lease_could_not_be_renewed_is_released_not_started() -> None:
    # Given an entry whose lease ends in less than a third of its length (renewals failed)
    state, settled = _state(concurrency=1)
    stale = _entry("stale", time.monotonic() - 0.25, lease_ms=300)
    fresh = _entry("fresh")
    state.admit([stale, fresh])
    # When a handler takes the next entry
    taken = state.next(None, None, block=False)
    # Then the stale one is released instead (the attempt does not count) and the next runs
    assert taken is fresh
    assert (stale.phase, stale.released) == (Phase.DECIDED, True)
    assert [(o.entry, o.kind) for o in settled] == [(stale, "release")]
    assert state.running == 1


def test_a_waiting_entry_whose_lease_was_lost_is_dropped_never_started() -> None:
    state, settled = _state(concurrency=1)
    first, lost, last = _entry("a"), _entry("lost"), _entry("c")
    state.admit([first, lost, last])
    assert state.next(None, None, block=False) is first
    # The keeper's renewal found the lease lost (the job was cancelled)
    assert state.lose(lost) is Phase.PENDING
    assert (lost.lost, lost.settled) == (True, True)
    assert lost not in state.entries
    assert list(state.pending) == [last]
    assert state.next(first, first, block=False) is last
    assert not [s for s in settled if s is lost or getattr(s, "entry", None) is lost]
