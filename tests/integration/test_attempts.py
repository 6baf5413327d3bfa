"""A job's attempt history (lua/lib/attempt_entry.lua, `Store.attempts`).

Each failed attempt leaves one entry, written by the script that ends it (nack, the reaping of an
expired lease by reap or claim, a cancel of a leased job); the last 10 are kept, 4 KiB of error
text each; they go with the job's record, by every path that removes it. Runs on valkey, redis7
and memory, sync and async (the `client` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import redisq
from redisq import Attempt, JobState, Retention
from redisq._core.attempts import ATTEMPT_CAPS
from redisq._core.scripts import lua_dir
from tests.support.clock import TestClock

Q = "att"
TRACE = (
    "Traceback (most recent call last):\n"
    '  File "app.py", line 3, in handler\n'
    "    raise ValueError(n)\n"
    "ValueError: {n}"
)


def _error(n: int) -> str:
    """An error text as the worker sends it (redisq._core.tasks.describe_exception)."""
    return f"ValueError: {n}\n\n" + TRACE.format(n=n)


def _fail(client: Any, queue: str = Q, *, worker: str = "w1", **nack: Any) -> redisq.Job:
    """Claim the queue's next job and nack it; return the claimed job."""
    (job,) = client.claim(queue, worker=worker, lease_ms=10_000)
    nack.setdefault("error", _error(job.attempts))
    nack.setdefault("delay_ms", 0)
    client.nack(job, **nack)
    return job


def _history_fields(raw: Any, prefix: str, queue: str = Q) -> list[bytes]:
    """The attempt-history fields of the queue's jobs hash (<id> \\0 a <slot>)."""
    fields: list[bytes] = raw.hkeys(f"{{{prefix}:{queue}}}:jobs")
    return sorted(f for f in fields if b"\0" in f)


def _keys(raw: Any, prefix: str) -> set[bytes]:
    return set(raw.scan_iter(match=f"*{prefix}*", count=1000))


# ------------------------------------------------------------------------------------ entries


def test_each_failed_attempt_leaves_one_entry(client: Any, clock: TestClock) -> None:
    # Given a job of three attempts
    client.enqueue(Q, {"n": 1}, id="j1", max_attempts=3)

    # When every attempt fails: two retries, then the dead letter
    tokens = []
    times = []
    for _ in range(3):
        tokens.append(_fail(client, worker=f"w{len(tokens) + 1}").token)
        times.append(clock.now_ms)
        clock.advance(1_000)

    # Then the history holds the three attempts, oldest first, as the worker sent them
    assert client.get(Q, "j1").state is JobState.DEAD
    assert client.attempts(Q, "j1") == [
        Attempt(
            attempt=n,
            token=tokens[n - 1],
            outcome="dead" if n == 3 else "retry",
            cause="error",
            worker=f"w{n}",
            at_ms=times[n - 1],
            error=f"ValueError: {n}",
            traceback=TRACE.format(n=n),
        )
        for n in (1, 2, 3)
    ]


def test_an_error_without_a_traceback_and_an_empty_one(client: Any) -> None:
    # Given a job of three attempts
    client.enqueue(Q, "x", id="j1", max_attempts=3)

    # When one attempt fails with a plain text and one with none
    _fail(client, error="timeout after 5000 ms")
    _fail(client, error="")

    # Then both are kept: the text as the error, no traceback; the empty one empty
    got = [(a.attempt, a.error, a.traceback) for a in client.attempts(Q, "j1")]
    assert got == [(1, "timeout after 5000 ms", ""), (2, "", "")]


def test_a_job_that_never_fails_has_no_history(client: Any, raw: Any, prefix: str) -> None:
    # Given jobs that run once and complete, and one that is released (not counted)
    client.enqueue(Q, "a", id="a")
    client.enqueue(Q, "b", id="b")
    (a,) = client.claim(Q, worker="w1")
    client.ack(a)
    (b,) = client.claim(Q, worker="w1")
    client.release(b)

    # Then nothing was written for them: no field, no key
    assert client.attempts(Q, "a") == []
    assert client.attempts(Q, "b") == []
    assert client.attempts(Q, "unknown") == []
    assert _history_fields(raw, prefix) == []


def test_only_the_last_attempts_are_kept(client: Any, raw: Any, prefix: str) -> None:
    # Given a job of 25 attempts
    keep = ATTEMPT_CAPS["KEEP"]
    client.enqueue(Q, "x", id="j1", max_attempts=25)

    # When 23 of them fail
    for _ in range(23):
        _fail(client)

    # Then the last 10 are kept, in order, in 10 fields
    assert [a.attempt for a in client.attempts(Q, "j1")] == list(range(24 - keep, 24))
    assert len(_history_fields(raw, prefix)) == keep


def test_a_long_error_keeps_its_summary_and_the_end_of_its_traceback(client: Any) -> None:
    # Given a job whose handler fails with a 16 KiB error text (nack's own limit)
    client.enqueue(Q, "x", id="j1")
    frames = "".join(f'  File "deep.py", line {i}, in f{i}\n' for i in range(400))
    text = "RecursionError: deep\n\nTraceback (most recent call last):\n" + frames
    text = (text + "RecursionError: deep")[-16_000:]
    text = "RecursionError: deep\n\n" + text[len("RecursionError: deep\n\n") :]

    # When the attempt fails
    _fail(client, error=text)

    # Then the entry holds the first KiB and the end, cut to 4 KiB with a marker saying so
    (entry,) = client.attempts(Q, "j1")
    stored = entry.error + "\n\n" + entry.traceback
    cut = len(text) - ATTEMPT_CAPS["TEXT_BYTES"]
    marker = f"\n[... {cut} bytes cut ...]\n"
    assert stored == text[: ATTEMPT_CAPS["HEAD_BYTES"]] + marker + text[-3072:]
    assert entry.error == "RecursionError: deep"
    assert entry.traceback.endswith("RecursionError: deep")
    # And the job's last_error still holds the whole text, as before
    assert client.get(Q, "j1").last_error == text


def test_a_huge_traceback_keeps_its_summary_and_its_last_frame(client: Any) -> None:
    # Given a job whose handler fails with a traceback of about 200 KiB, in non-ASCII text
    client.enqueue(Q, "x", id="j1")
    frames = "".join(f'  File "é.py", line {i}, in f{i}\n' for i in range(6_000))
    last = "RecursionError: trop profond (dernière ligne)"
    text = f"RecursionError: trop profond\n\nTraceback (most recent call last):\n{frames}{last}"

    # When the attempt fails
    _fail(client, error=text)

    # Then last_error (16 KiB) and the attempt's entry (4 KiB) each keep both ends
    job = client.get(Q, "j1")
    assert job.last_error.startswith("RecursionError: trop profond\n\nTraceback")
    assert job.last_error.endswith(last)
    (entry,) = client.attempts(Q, "j1")
    assert entry.error == "RecursionError: trop profond"
    assert entry.traceback.startswith("Traceback (most recent call last):")
    assert entry.traceback.endswith(f"line 5999, in f5999\n{last}")
    assert len(f"{entry.error}\n\n{entry.traceback}".encode()) <= 4_096 + 40


def test_a_reaped_lease_leaves_a_lease_expired_entry(client: Any, clock: TestClock) -> None:
    # Given a job of two attempts whose first lease expires (reap), then its second (claim)
    client.enqueue(Q, "x", id="j1", max_attempts=2)
    (first,) = client.claim(Q, worker="w1", lease_ms=1_000)
    clock.advance(1_001)
    assert client.reap(Q) == 1
    reaped_at = clock.now_ms
    (second,) = client.claim(Q, worker="w2", lease_ms=1_000)
    clock.advance(1_001)

    # When a claim reaps the second one (the attempts are used up: dead)
    assert client.claim(Q, worker="w3") == []

    # Then each lease left an entry, with its holder and token
    got = [
        (a.attempt, a.token, a.outcome, a.cause, a.worker, a.at_ms, a.error)
        for a in client.attempts(Q, "j1")
    ]
    assert got == [
        (1, first.token, "retry", "lease_expired", "w1", reaped_at, ""),
        (2, second.token, "dead", "lease_expired", "w2", clock.now_ms, ""),
    ]
    assert client.get(Q, "j1").state is JobState.DEAD


def test_a_cancel_of_a_leased_job_leaves_a_cancelled_entry(client: Any, clock: TestClock) -> None:
    # Given a leased job
    client.enqueue(Q, "x", id="j1")
    (job,) = client.claim(Q, worker="w1")

    # When it is cancelled while running
    assert client.cancel(Q, "j1") is True

    # Then its attempt is in the history as cancelled
    (entry,) = client.attempts(Q, "j1")
    assert (entry.attempt, entry.token, entry.outcome, entry.cause, entry.worker) == (
        1,
        job.token,
        "cancelled",
        "cancelled",
        "w1",
    )
    assert entry.at_ms == clock.now_ms


def test_a_stale_nack_adds_no_entry(client: Any, clock: TestClock) -> None:
    # Given a job whose first lease expired and was reaped, and which a second worker holds
    client.enqueue(Q, "x", id="j1", max_attempts=3)
    (old,) = client.claim(Q, worker="w1", lease_ms=1_000)
    clock.advance(1_001)
    (new,) = client.claim(Q, worker="w2", lease_ms=10_000)

    # When the first worker nacks late
    with pytest.raises(redisq.LeaseLost):
        client.nack(old, error="late")

    # Then only the reaping wrote an entry
    assert [(a.attempt, a.cause) for a in client.attempts(Q, "j1")] == [(1, "lease_expired")]
    assert new.attempts == 2


# ------------------------------------------------------------------------------------ removal


@pytest.fixture
def history(client: Any) -> Callable[[str], None]:
    """``history(id)``: give job `id` of queue Q two failed attempts (it is scheduled after)."""

    def make(job_id: str) -> None:
        client.enqueue(Q, "x", id=job_id, max_attempts=5)
        _fail(client)
        _fail(client, delay_ms=60_000)
        assert len(client.attempts(Q, job_id)) == 2

    return make


def _gone(client: Any, raw: Any, prefix: str, job_id: str) -> None:
    assert client.attempts(Q, job_id) == []
    assert [f for f in _history_fields(raw, prefix) if f.startswith(job_id.encode())] == []
    # (a flow edge, deps:d/<id>, lives on by its own TTL: store.flow reads it for 7 days)
    left = [k for k in _keys(raw, prefix) if job_id.encode() in k and b":deps:" not in k]
    assert left == []


def test_delete_removes_the_history(client: Any, raw: Any, prefix: str, history: Any) -> None:
    # Given a job with history, a parent of a waiting child
    history("j1")
    client.enqueue(Q, "child", id="c1", depends_on=["j1"])

    # When it is deleted
    assert client.delete(Q, "j1") is True

    # Then its history went with it
    _gone(client, raw, prefix, "j1")


@pytest.mark.parametrize("state", [JobState.SCHEDULED, None])
def test_purge_removes_the_history(
    client: Any, raw: Any, prefix: str, history: Any, state: JobState | None
) -> None:
    # Given two jobs with history
    history("j1")
    history("j2")

    # When their state (or the whole queue) is purged
    assert client.purge(Q, state) == 2

    # Then no history is left, nor any key of the queue
    _gone(client, raw, prefix, "j1")
    _gone(client, raw, prefix, "j2")
    assert _history_fields(raw, prefix) == []


def test_retention_of_dead_jobs_removes_the_history(
    client_factory: Any, raw: Any, prefix: str
) -> None:
    # Given a store that keeps one dead job, and a dead job with history
    client = client_factory(retention=Retention(dead=1))
    client.enqueue(Q, "x", id="j1", max_attempts=2)
    _fail(client)
    _fail(client)

    # When another job dies
    client.enqueue(Q, "y", id="j2", max_attempts=1)
    _fail(client)

    # Then the first one's record and history were trimmed together
    assert client.get(Q, "j1") is None
    _gone(client, raw, prefix, "j1")
    assert [a.attempt for a in client.attempts(Q, "j2")] == [1]


def test_retention_of_completed_jobs_removes_the_history(
    client_factory: Any, raw: Any, prefix: str
) -> None:
    # Given a store that keeps one completed job, and a job that failed once, then completed
    client = client_factory(retention=Retention(completed=1, result_ttl_ms=0))
    client.enqueue(Q, "x", id="j1", max_attempts=2)
    _fail(client)
    (job,) = client.claim(Q, worker="w1")
    client.ack(job)
    assert len(client.attempts(Q, "j1")) == 1

    # When another job completes
    client.enqueue(Q, "y", id="j2")
    (other,) = client.claim(Q, worker="w1")
    client.ack(other)

    # Then the first one's record and history were trimmed together
    assert client.get(Q, "j1") is None
    _gone(client, raw, prefix, "j1")


def test_a_replayed_job_completed_on_its_first_new_run_loses_its_history_when_trimmed(
    client_factory: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    # Given a store that keeps one completed job, and a job that died with no error text,
    # was replayed by retry_dead and completed on its first new attempt (its record reads
    # like a first run's, but for run_at)
    client = client_factory(retention=Retention(completed=1, result_ttl_ms=0))
    client.enqueue(Q, "x", id="j1", max_attempts=1)
    _fail(client, error="")
    clock.advance(1_000)
    assert client.retry_dead(Q, ["j1"]) == 1
    (job,) = client.claim(Q, worker="w1")
    done = client.ack(job)
    assert (done.attempts, done.last_error) == (1, None)
    assert len(client.attempts(Q, "j1")) == 1

    # When another job completes
    client.enqueue(Q, "y", id="j2")
    (other,) = client.claim(Q, worker="w1")
    client.ack(other)

    # Then the first one's record and history were trimmed together
    assert client.get(Q, "j1") is None
    _gone(client, raw, prefix, "j1")


def test_expiry_trimming_cancelled_jobs_removes_the_history(
    client_factory: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    # Given a store that keeps one cancelled job, and a job cancelled while running
    client = client_factory(retention=Retention(cancelled=1))
    client.enqueue(Q, "x", id="j1")
    client.claim(Q, worker="w1")
    client.cancel(Q, "j1")
    assert len(client.attempts(Q, "j1")) == 1

    # When another job expires (claim's expiry cancels it and trims the cancelled set)
    client.enqueue(Q, "y", id="j2", expires_ms=1_000, delay_ms=500)
    clock.advance(2_000)
    assert client.claim(Q, worker="w1") == []

    # Then the first one's record and history were trimmed together
    assert client.get(Q, "j2").state is JobState.CANCELLED
    assert client.get(Q, "j1") is None
    _gone(client, raw, prefix, "j1")


def test_a_dead_parent_cascade_and_its_trim_leave_nothing(
    client_factory: Any, raw: Any, prefix: str, clock: TestClock
) -> None:
    # Given a store keeping one dead and one cancelled job, and a parent with a waiting child
    client = client_factory(retention=Retention(dead=1, cancelled=1))
    client.enqueue(Q, "p", id="p1", max_attempts=1)
    client.enqueue(Q, "c", id="c1", depends_on=["p1"], on_parent_failure="fail")

    # When the parent dies (its child is cancelled by the policy), then other jobs die
    _fail(client)
    assert client.get(Q, "c1").state is JobState.CANCELLED
    for n in range(2):
        clock.advance(1_000)
        client.enqueue(Q, "y", id=f"d{n}", max_attempts=1)
        _fail(client)

    # Then the parent's record and history were trimmed together
    assert client.get(Q, "p1") is None
    _gone(client, raw, prefix, "p1")


def test_no_history_field_outlives_its_record(client: Any, raw: Any, prefix: str) -> None:
    # Given jobs in every state, several with history
    for n in range(6):
        client.enqueue(Q, n, id=f"j{n}", max_attempts=2)
    _fail(client)  # j0: scheduled again (ready, delay 0)
    _fail(client)  # j1
    (j2,) = client.claim(Q, worker="w1")
    client.nack(j2, error="x", dead=True)
    client.claim(Q, worker="w1")  # leased (j3)

    # When every job is deleted, one way or another
    client.delete(Q, "j0")
    client.cancel(Q, "j3")
    assert client.purge(Q) == 5

    # Then the jobs hash is gone, and with it every history field
    assert _history_fields(raw, prefix) == []
    assert not raw.exists(f"{{{prefix}:{Q}}}:jobs")


def test_migrate_leaves_history_entries_alone(client: Any, raw: Any, prefix: str) -> None:
    # Given a queue in schema 2 (records in layout 2) whose jobs hash also holds history entries
    from tests.integration.test_migrate import to_layout2

    client.enqueue(Q, "x", id="j1")
    _fail(client)
    keys = f"{{{prefix}:{Q}}}"
    for job_id, record in raw.hgetall(f"{keys}:jobs").items():
        if b"\0" not in job_id:
            raw.hset(f"{keys}:jobs", job_id, to_layout2(record))
    raw.hset(f"{keys}:meta", "schema", "2")

    # When it migrates
    (done,) = client.migrate(Q)

    # Then the record was converted and the entry neither converted nor counted as bad
    assert (done.converted, done.skipped, done.bad, done.done) == (1, 0, 0, True)
    assert [a.attempt for a in client.attempts(Q, "j1")] == [1]
    assert client.get(Q, "j1").state is JobState.READY


def test_the_caps_match_the_lua_lib() -> None:
    text = (lua_dir() / "lib" / "attempt_caps.lua").read_text()
    for name, value in ATTEMPT_CAPS.items():
        assert f"  {name} = {value}," in text
