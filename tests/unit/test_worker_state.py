"""The worker state's hand-offs between its threads, and the frozen heap of a worker."""

from __future__ import annotations

import gc
import threading
import time
from types import SimpleNamespace
from typing import Any

from redisq.worker._state import Entry, Handoff, Phase, State
from redisq.worker._support import frozen_heap
from tests.support.polling import wait_for


def _entry(job_id: str) -> Entry:
    job: Any = SimpleNamespace(id=job_id, queue="q")  # Entry reads nothing else here
    return Entry(job, None, 30_000, time.monotonic())


def _state() -> tuple[State, list[Any]]:
    settled: list[Any] = []
    return State(2, 0, lambda: None, settled.append), settled


def test_yield_returns_once_the_woken_thread_holds_its_entry() -> None:
    state, _ = _state()
    taken: list[Entry | None] = []
    hold = threading.Event()

    def handler() -> None:
        taken.append(state.next(None, None, block=True))
        hold.wait(10)

    thread = threading.Thread(target=handler, daemon=True)
    thread.start()
    # The thread is idle (waiting for work) once the state counts it.
    wait_for(lambda: state._idle == 1, timeout=10)
    entry = _entry("a")
    assert state.admit([entry]) == []
    state.yield_to_woken(10.0)
    # The woken thread took the entry before the fetcher could go on.
    assert entry.phase is Phase.RUNNING
    assert state.running == 1
    assert not state.pending
    hold.set()
    thread.join(10)
    assert taken == [entry]


def test_yield_does_not_wait_when_no_thread_was_woken() -> None:
    state, _ = _state()
    entry = _entry("a")
    state.admit([entry])  # no handler thread idles: nobody is woken
    state.yield_to_woken(3600.0)  # returns at once (pytest-timeout would stop a hang)
    assert entry.phase is Phase.PENDING
    assert list(state.pending) == [entry]


def test_yield_ends_when_the_state_closes() -> None:
    state, _ = _state()
    state._waking = 1  # a thread was notified but never comes up
    closer = threading.Thread(target=state.close, daemon=True)
    done = threading.Event()

    def yielder() -> None:
        state.yield_to_woken(3600.0)
        done.set()

    thread = threading.Thread(target=yielder, daemon=True)
    thread.start()
    wait_for(lambda: state._woken_waiting, timeout=10)
    assert not done.is_set()
    closer.start()
    assert done.wait(10)


def test_yield_gives_up_after_its_timeout() -> None:
    state, _ = _state()
    state._waking = 1  # a thread was notified but does not come up in time
    state.yield_to_woken(0.01)
    assert not state._woken_waiting


def test_frozen_heap_freezes_while_workers_run_and_unfreezes_after_the_last() -> None:
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # a second worker in the same process
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # the first one still runs
    assert gc.get_freeze_count() == 0


def test_frozen_heap_leaves_a_heap_frozen_by_someone_else() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def _idle_handler(state: State, got: list[Any]) -> threading.Thread:
    """A handler thread waiting for work; records what `next` gives it first."""

    def handler() -> None:
        got.append(state.next(None, None, block=True))

    thread = threading.Thread(target=handler, daemon=True)
    thread.start()
    wait_for(lambda: state._idle == 1, timeout=10)
    return thread


def test_hand_over_keeps_the_first_job_and_passes_the_fetch_loop_to_an_idle_thread() -> None:
    state, _ = _state()
    got: list[Any] = []
    thread = _idle_handler(state, got)
    first, second = _entry("a"), _entry("b")
    assert state.hand_over([first, second]) is first
    # The caller runs the first at once; the second waits for a handler.
    assert first.phase is Phase.RUNNING
    assert state.running == 1
    assert list(state.pending) == [second]
    assert state.entries == {first, second}
    assert state.capacity() == 0  # both count against concurrency + prefetch
    thread.join(10)
    # The idle thread was told to run the fetcher's loop, not to take the pending entry.
    assert got == [Handoff.FETCH]
    assert list(state.pending) == [second]


def test_hand_over_declines_when_no_handler_thread_idles() -> None:
    state, _ = _state()
    entry = _entry("a")
    assert state.hand_over([entry]) is None
    # Nothing was admitted: the caller admits as usual.
    assert entry.phase is Phase.PENDING
    assert not state.entries
    assert not state.pending
    assert state.capacity() == 2


def test_hand_over_declines_while_the_worker_stops() -> None:
    state, _ = _state()
    got: list[Any] = []
    thread = _idle_handler(state, got)
    state.begin_stop()
    entry = _entry("a")
    assert state.hand_over([entry]) is None
    assert not state.entries
    state.close()
    thread.join(10)
    assert got == [None]


# ------------------------------------------------------------------------------ cancels


def _tokened(job_id: str, token: int) -> Entry:
    job: Any = SimpleNamespace(id=job_id, queue="q", token=token)
    return Entry(job, None, 30_000, time.monotonic())


def test_a_cancel_finds_only_the_lease_it_ended() -> None:
    state, _ = _state()
    a, b = _tokened("a", 1), _tokened("b", 2)
    state.admit([a, b])
    assert state.holding({("q", "a", 1)}) == [a]
    # an earlier run of the same job, another queue, an unknown job: nothing
    assert state.holding({("q", "b", 1), ("other", "a", 1), ("q", "c", 3)}) == []


def test_a_cancelled_pending_entry_never_starts_and_frees_its_room() -> None:
    # Given two entries pending
    state, settled = _state()
    a, b = _tokened("a", 1), _tokened("b", 2)
    state.admit([a, b])
    held = state.capacity()
    # When one is cancelled
    assert state.cancel(a) is Phase.PENDING
    # Then it leaves at once, and only the other starts; nothing is settled for it
    assert a.settled
    assert a.lost
    assert a.cancelled
    assert a not in state.entries
    assert state.capacity() == held + 1
    assert state.next(None, None, block=False) is b
    assert state.next(None, None, block=False) is None
    assert settled == []


def test_a_cancelled_running_entry_frees_its_slot_when_its_handler_returns() -> None:
    # Given an entry running
    state, settled = _state()
    a = _tokened("a", 1)
    state.admit([a])
    assert state.next(None, None, block=False) is a
    # When it is cancelled
    assert state.cancel(a) is Phase.RUNNING
    # Then it is forgotten at once (not renewed, not waited for at stop), its slot busy
    assert a not in state.entries
    assert a.phase is Phase.DECIDED
    assert state.running == 1
    # and when its handler returns, the slot frees and what it returned is dropped
    b = _tokened("b", 2)
    state.admit([b])
    assert state.next(a, a, block=False) is b
    assert state.running == 1
    assert settled == []
    # a second cancel (a re-read signal) changes nothing
    assert state.cancel(a) is None


def test_a_cancel_after_the_outcome_was_decided_leaves_it_on_its_way() -> None:
    state, settled = _state()
    a = _tokened("a", 1)
    state.admit([a])
    assert state.next(None, None, block=False) is a
    assert state.next(a, a, block=False) is None  # the handler returned: an ack to send
    assert settled == [a]
    assert state.cancel(a) is Phase.DECIDED
    assert a.cancelled
    assert a in state.entries
