"""Stateful property test: the sync Store against a pure-Python model of the job lifecycle.

reliability.md 4.5: Hypothesis drives random sequences of enqueue, enqueue_many, claim, ack,
nack, renew, release, reap, cancel, retry_dead, peek and time passing against the real servers
and the memory backend, and tests/integration/_lifecycle_model.py predicts every reply. After
each step, every queue the step may have changed (at the end, every queue) is compared with
the model: counts, every job's snapshot in list order (so each job sits in exactly one state
set and none is lost), attempts <= max_attempts, and the lease bookkeeping of the stored
records (deadline after leased_at). The jobs a step acted on are read back with `get`.
Claims must return exactly the predicted jobs, in order, with strictly increasing tokens;
refused lease calls must raise LeaseLost with the predicted reason and change no byte.

Time moves only in the `advance_time` rule (TestClock). Leases are 1 s, so they expire often.
Each example uses fresh queue names under the test's prefix, which is deleted at teardown.
REDISQ_HYPOTHESIS_EXAMPLES sets the examples per backend (default 200, of 50 steps each).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import redisq
from redisq import Job, JobState, LeaseLost
from redisq._core.records import unpack_record
from redisq.keys import QueueKeys
from tests.integration._lifecycle_model import (
    EnqueueArgs,
    LifecycleModel,
    ModelJob,
    Refused,
)
from tests.support.clock import TestClock

EXAMPLES = int(os.environ.get("REDISQ_HYPOTHESIS_EXAMPLES", "200"))
STEPS = 50
LEASE_MS = 1_000
OWN_LEASE_MS = 1_500

IDS = [f"j{n}" for n in range(8)]
QUEUE_CHOICES = st.sampled_from([0, 1])
JOB_IDS = st.sampled_from(IDS)
ENQUEUE_ARGS = st.builds(
    EnqueueArgs,
    id=JOB_IDS,
    priority=st.sampled_from([0, -1, 5]),
    delay_ms=st.sampled_from([0, 0, 0, 500, LEASE_MS, 2_500]),
    max_attempts=st.sampled_from([1, 1, 2, 3]),  # 1 often: more jobs die, more retry_dead
    lease_ms=st.sampled_from([None, None, OWN_LEASE_MS]),
    unique_key=st.sampled_from([None, None, "u0", "u1"]),
)
#: Lease calls use a handle the caller still holds 3 times in 4 (its lease may have expired),
#: else any handle claim or renew ever returned (mostly stale ones).
HELD_MOSTLY = st.sampled_from([True, True, True, False])
TIME_STEPS = st.one_of(
    st.sampled_from([0, 1, LEASE_MS - 1, LEASE_MS, LEASE_MS + 1, OWN_LEASE_MS]),
    st.integers(0, 3 * LEASE_MS),
)


def _attempt(call: Callable[[], Any]) -> Any:
    """Run a lease transition; return its result, or the LeaseLost it raised."""
    try:
        return call()
    except LeaseLost as exc:
        return exc


def _predict(call: Callable[[], ModelJob]) -> Job | Refused:
    """Run the model's transition; return the job's snapshot, or the refusal."""
    try:
        return call().snapshot()
    except Refused as refusal:
        return refusal


def build_machine(url: str, prefix: str) -> type[RuleBasedStateMachine]:
    """A state machine class bound to one backend and the test's prefix."""
    example_numbers = itertools.count()

    class StoreMatchesModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            n = next(example_numbers)
            self.queues = [f"sm{n}a", f"sm{n}b"]
            self.keys = {q: QueueKeys.build(prefix, q) for q in self.queues}
            self.clock = TestClock()
            self.store = redisq.connect(url, prefix=prefix, clock=self.clock, lease_ms=LEASE_MS)
            self.model = LifecycleModel(self.clock.now_ms, self.queues, LEASE_MS)
            self.payloads = itertools.count()
            #: Every Job snapshot claim and renew returned: current, expired and stale leases.
            self.handles: list[Job] = []
            self.claims = 0
            self.last_token = dict.fromkeys(self.queues, 0)
            #: Jobs a step acted on (read back with get) and queues it may have changed.
            self.touched: set[tuple[str, str]] = set()
            self.dirty: set[str] = set()

        def teardown(self) -> None:
            try:
                if sys.exc_info()[1] is None:  # a failed step has already reported the divergence
                    for queue in self.queues:
                        self._check_queue(queue)
            finally:
                self.store.close()

        # ------------------------------------------------------------------------ helpers

        def _held(self) -> list[Job]:
            """Handles whose token is the job's current one while it is leased."""
            out = []
            for h in self.handles:
                job = self.model.job(h.queue, h.id)
                assert job is not None
                if job.state is JobState.LEASED and job.token == h.token:
                    out.append(h)
            return out

        def _pick(self, data: st.DataObject, current: bool) -> Job:
            held = self._held() if current else []
            handle: Job = data.draw(st.sampled_from(held or self.handles), label="lease")
            self.touched.add((handle.queue, handle.id))
            self.dirty.add(handle.queue)
            return handle

        def _raw(self, handle: Job) -> bytes | None:
            """The job's stored record, byte for byte."""
            raw: bytes | None = self.store.redis.hget(self.keys[handle.queue].jobs, handle.id)
            return raw

        def _check_transition(self, handle: Job, got: Any, expected: Job | Refused) -> None:
            if isinstance(expected, Refused):
                assert isinstance(got, LeaseLost), f"expected LeaseLost, got {got!r}"
                assert (got.job_id, got.token) == (handle.id, handle.token)
                assert (got.reason, got.state) == (expected.reason, expected.state)
            else:
                assert got == expected

        def _lease_call(
            self,
            handle: Job,
            call: Callable[[], Any],
            model_call: Callable[[], ModelJob],
        ) -> Any:
            before = self._raw(handle)
            got = _attempt(call)
            expected = _predict(model_call)
            self._check_transition(handle, got, expected)
            if isinstance(got, LeaseLost):
                assert self._raw(handle) == before, "a refused call changed the job"
            return got

        def _check_tokens(self, jobs: list[Job]) -> None:
            for job in jobs:
                assert job.token is not None
                assert job.token > self.last_token[job.queue], "token not strictly increasing"
                self.last_token[job.queue] = job.token

        # -------------------------------------------------------------------------- rules

        @rule(q=QUEUE_CHOICES, args=ENQUEUE_ARGS)
        def enqueue(self, q: int, args: EnqueueArgs) -> None:
            queue = self.queues[q]
            payload = {"n": next(self.payloads)}
            got = self.store.enqueue(
                queue,
                payload,
                id=args.id,
                priority=args.priority,
                delay_ms=args.delay_ms,
                max_attempts=args.max_attempts,
                lease_ms=args.lease_ms,
                unique_key=args.unique_key,
            )
            expected = self.model.enqueue(queue, args, payload)
            assert got == expected.snapshot()
            self.touched.add((queue, expected.id))
            self.dirty.add(queue)

        @rule(q=QUEUE_CHOICES, items=st.lists(ENQUEUE_ARGS, min_size=1, max_size=3))
        def enqueue_many(self, q: int, items: list[EnqueueArgs]) -> None:
            queue = self.queues[q]
            specs = [
                redisq.Spec(
                    {"n": next(self.payloads)},
                    id=a.id,
                    priority=a.priority,
                    delay_ms=a.delay_ms,
                    max_attempts=a.max_attempts,
                    lease_ms=a.lease_ms,
                    unique_key=a.unique_key,
                )
                for a in items
            ]
            got = self.store.enqueue_many(queue, specs)
            expected = self.model.enqueue_many(
                queue, [(a, s.payload) for a, s in zip(items, specs, strict=True)]
            )
            assert [j.id for j in got] == [j.id for j in expected]
            assert got == [j.snapshot() for j in expected]
            self.touched.update((queue, j.id) for j in expected)
            self.dirty.add(queue)

        @rule(
            which=st.sampled_from([[0], [1], [0, 1], [1, 0]]),
            count=st.integers(1, 3),
            lease_ms=st.sampled_from([None, None, 2 * LEASE_MS]),
            worker=st.sampled_from(["w1", "w2"]),
        )
        def claim(self, which: list[int], count: int, lease_ms: int | None, worker: str) -> None:
            names = [self.queues[i] for i in which]
            got = self.store.claim(names, worker=worker, lease_ms=lease_ms, count=count)
            expected = self.model.claim(names, count, lease_ms, worker, self.claims)
            self.claims += 1
            assert [(j.queue, j.id) for j in got] == [(j.queue, j.id) for j in expected]
            assert got == [j.snapshot() for j in expected]
            self._check_tokens(got)
            self.handles.extend(got)
            self.touched.update((j.queue, j.id) for j in got)
            self.dirty.update(names)

        @rule(q=QUEUE_CHOICES, count=st.integers(1, 3))
        def claim_one_queue(self, q: int, count: int) -> None:
            """claim(queue_name): the plain-string form, the store's default lease."""
            queue = self.queues[q]
            got = self.store.claim(queue, worker="w3", count=count)
            expected = self.model.claim([queue], count, None, "w3", self.claims)
            self.claims += 1
            assert got == [j.snapshot() for j in expected]
            self._check_tokens(got)
            self.handles.extend(got)
            self.touched.update((j.queue, j.id) for j in got)
            self.dirty.add(queue)

        @precondition(lambda self: self.handles)
        @rule(data=st.data(), current=HELD_MOSTLY, result=st.sampled_from([None, 7, "ok"]))
        def ack(self, data: st.DataObject, current: bool, result: Any) -> None:
            h = self._pick(data, current)
            self._lease_call(
                h,
                lambda: self.store.ack(h, result=result),
                lambda: self.model.ack(h.queue, h.id, h.token, result),
            )

        @precondition(lambda self: self.handles)
        @rule(
            data=st.data(),
            current=HELD_MOSTLY,
            error=st.sampled_from(["", "boom"]),
            delay_ms=st.sampled_from([0, 0, 700, 2_000, None]),
            dead=st.sampled_from([False, False, True]),
        )
        def nack(
            self, data: st.DataObject, current: bool, error: str, delay_ms: int | None, dead: bool
        ) -> None:
            """delay_ms=None is the backoff, 1 s x 2^(attempt-1) +-25%: its due time is bounded."""
            h = self._pick(data, current)
            if delay_ms is not None:
                self._lease_call(
                    h,
                    lambda: self.store.nack(h, error=error, delay_ms=delay_ms, dead=dead),
                    lambda: self.model.nack(h.queue, h.id, h.token, error, delay_ms, dead),
                )
                return
            before = self._raw(h)
            got = _attempt(lambda: self.store.nack(h, error=error, dead=dead))
            try:
                again = self.model.check_lease(h.queue, h.id, h.token, "nack")
            except Refused as refusal:
                self._check_transition(h, got, refusal)
                assert self._raw(h) == before, "a refused nack changed the job"
                return
            assert isinstance(got, Job), f"expected a nacked job, got {got!r}"
            delay = 0
            if not again and not self.model.nack_goes_dead(h.queue, h.id, dead):
                base = 1_000 * 2 ** (h.attempts - 1)
                delay = got.run_at_ms - self.model.now
                assert round(base * 0.75) <= delay <= round(base * 1.25), delay
            expected = self.model.nack(h.queue, h.id, h.token, error, delay, dead)
            assert got == expected.snapshot()

        @precondition(lambda self: self.handles)
        @rule(data=st.data(), current=HELD_MOSTLY, lease_ms=st.sampled_from([None, 2_500]))
        def renew(self, data: st.DataObject, current: bool, lease_ms: int | None) -> None:
            h = self._pick(data, current)
            got = self._lease_call(
                h,
                lambda: self.store.renew(h, lease_ms=lease_ms),
                lambda: self.model.renew(h.queue, h.id, h.token, lease_ms),
            )
            if isinstance(got, Job):
                self.handles.append(got)

        @precondition(lambda self: self.handles)
        @rule(data=st.data(), current=HELD_MOSTLY)
        def release(self, data: st.DataObject, current: bool) -> None:
            h = self._pick(data, current)
            self._lease_call(
                h,
                lambda: self.store.release(h),
                lambda: self.model.release(h.queue, h.id, h.token),
            )

        @rule(q=QUEUE_CHOICES)
        def reap(self, q: int) -> None:
            queue = self.queues[q]
            assert self.store.reap(queue) == self.model.reap(queue)
            self.dirty.add(queue)

        @rule(q=QUEUE_CHOICES, job_id=JOB_IDS)
        def cancel(self, q: int, job_id: str) -> None:
            queue = self.queues[q]
            assert self.store.cancel(queue, job_id) is self.model.cancel(queue, job_id)
            self.touched.add((queue, job_id))
            self.dirty.add(queue)

        @rule(
            q=QUEUE_CHOICES,
            data=st.data(),
            by_id=st.booleans(),
            limit=st.sampled_from([1_000, 1]),
        )
        def retry_dead(self, q: int, data: st.DataObject, by_id: bool, limit: int) -> None:
            """The oldest dead jobs, or given ids: mostly dead ones, repeats and others too."""
            queue = self.queues[q]
            ids = None
            if by_id:
                dead = [j.id for j in self.model.listing(queue) if j.state is JobState.DEAD]
                choices = st.sampled_from(dead + IDS)
                ids = data.draw(st.lists(choices, min_size=1, max_size=4), label="ids")
            got = self.store.retry_dead(queue, ids, limit=limit)
            assert got == self.model.retry_dead(queue, ids, limit)
            self.touched.update((queue, job_id) for job_id in ids or [])
            self.dirty.add(queue)

        @rule(q=QUEUE_CHOICES, limit=st.integers(1, 4))
        def peek(self, q: int, limit: int) -> None:
            queue = self.queues[q]
            expected = [j.snapshot() for j in self.model.peek(queue, limit)]
            assert self.store.peek(queue, limit) == expected

        @rule(ms=TIME_STEPS)
        def advance_time(self, ms: int) -> None:
            self.clock.advance(ms)
            self.model.advance(ms)

        # --------------------------------------------------------------------- invariants

        @invariant()
        def store_matches_model(self) -> None:
            """Compare each queue the step may have changed (teardown compares them all)."""
            assert self.clock.now_ms == self.model.now
            for queue in sorted(self.dirty):
                self._check_queue(queue)
            for queue, job_id in sorted(self.touched):
                model_job = self.model.job(queue, job_id)
                expected_job = None if model_job is None else model_job.snapshot()
                assert self.store.get(queue, job_id) == expected_job
            self.dirty.clear()
            self.touched.clear()

        def _check_queue(self, queue: str) -> None:
            assert self.store.counts(queue) == self.model.counts(queue)
            listed = self.store.list(queue)
            expected = self.model.listing(queue)
            # each job in exactly one state set, in that set's order; none lost
            assert [(j.id, j.state) for j in listed] == [(j.id, j.state) for j in expected]
            assert len({j.id for j in listed}) == len(listed)
            assert {j.id for j in listed} == set(self.model.queues[queue].jobs)
            assert listed == [j.snapshot() for j in expected]
            assert all(0 <= j.attempts <= j.max_attempts for j in listed)
            self._check_leases(queue, [j for j in expected if j.state is JobState.LEASED])

        def _check_leases(self, queue: str, leased: list[ModelJob]) -> None:
            if not leased:
                return
            raw = self.store.redis.hmget(self.keys[queue].jobs, [j.id for j in leased])
            for job, record in zip(leased, raw, strict=True):
                fields = unpack_record(record)
                leased_at, deadline = int(fields["leased_at"]), int(fields["deadline"])
                assert (leased_at, deadline) == (job.leased_at, job.deadline)
                assert deadline > leased_at

    return StoreMatchesModel


# A passing run takes well under a minute per backend; a failing one then shrinks its example
# for up to Hypothesis's own 5-minute limit, which the default 120 s timeout would cut short
# before the minimal failing steps are printed.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_store_follows_the_lifecycle_model(url: str, prefix: str) -> None:
    machine = build_machine(url, prefix)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            # In CI the same examples run every time, so a red run always means a real change;
            # locally each run explores new ones.
            derandomize=bool(os.environ.get("CI")),
        ),
    )
