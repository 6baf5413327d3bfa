"""Bounded work per script call for claim, claim_and_ack and reap (issue 9, points 3 and 8).

Each call reaps and promotes at most MAX_REAP_BATCH jobs (a larger batch or limit is refused
by the script) and moves about 512 KiB of job records at most (at least one job): a caller that
asks for more gets it through several calls, which the client makes. A claim re-sent with the
same request id never returns a lease whose deadline has passed.

Each test runs on every backend with both clients; time moves only with the test clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from redisq import InvalidArgument, JobState
from redisq._core import claim as claim_ops
from redisq._core.calls import queue_keys, script_call
from redisq._core.claim import MAX_REAP_BATCH, size_hint
from redisq._core.status import ScriptStatus
from tests.support.clock import TestClock

Q = "caps"
#: A payload of this size makes a record of a bit more than it: the second one passes the
#: byte budget of one call (512 KiB, lua/lib/budget.lua).
BIG = 300_000
PER_CALL = 2


def _run_script(client: Any, name: str, **argv: Any) -> Any:
    """Run one script call with the given arguments, as the store would (raw reply)."""
    keys = queue_keys(client.settings.prefix, Q)
    return client._run(script_call(name, keys, lambda reply: reply, **argv))


def _claim_argv(client: Any, **changes: Any) -> dict[str, Any]:
    s = client.settings
    argv = {
        "now_ms": s.now_arg(),
        "worker": "w",
        "count": 10,
        "lease_ms": 1_000,
        "request_id": "",
        "memo_ms": 10_000,
        "batch": 100,
        "dead_keep": 100,
        "dead_age_ms": 0,
        "size_hint": size_hint(s),
        "cancelled_keep": 100,
        "cancelled_age_ms": 0,
    }
    argv.update(changes)
    return argv


def _reap_argv(client: Any, **changes: Any) -> dict[str, Any]:
    s = client.settings
    argv = {
        "now_ms": s.now_arg(),
        "limit": 100,
        "dead_keep": 100,
        "dead_age_ms": 0,
        "size_hint": size_hint(s),
        "cancelled_keep": 100,
        "cancelled_age_ms": 0,
    }
    argv.update(changes)
    return argv


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the script calls the claim operations build, by script name."""
    built: dict[str, int] = {}
    real = claim_ops.script_call

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        built[name] = built.get(name, 0) + 1
        return real(name, *args, **kwargs)

    monkeypatch.setattr(claim_ops, "script_call", counting)
    return built


def _expire(client: Any, clock: TestClock, n: int, payload: Any = 1, **options: Any) -> None:
    """Leave `n` expired leases in Q (claimed with a 1 s lease, then the clock moves on)."""
    for start in range(0, n, 1000):
        client.enqueue_many(Q, [payload] * min(1000, n - start), **options)
    leased = 0
    while leased < n:
        leased += len(client.claim(Q, worker="gone", count=1000, lease_ms=1_000))
    clock.advance(1_001)


# ------------------------------------------------------------------------------------- caps


def test_the_scripts_refuse_a_batch_over_the_cap(client: Any) -> None:
    over = MAX_REAP_BATCH + 1
    with pytest.raises(InvalidArgument, match="limit"):
        claim_ops.check_reply(_run_script(client, "reap", **_reap_argv(client, limit=over)), Q)
    reply = _run_script(client, "claim", **_claim_argv(client, batch=over))
    assert reply[0] == ScriptStatus.BAD_ARGUMENT
    reply = _run_script(
        client,
        "claim_and_ack",
        now_ms="",
        worker="w",
        request_id="",
        memo_ms=0,
        batch=over,
        done_keep=10,
        done_age_ms=0,
        dead_keep=10,
        dead_age_ms=0,
        size_hint=1000,
        cancelled_keep=10,
        cancelled_age_ms=0,
    )
    assert reply[0] == ScriptStatus.BAD_ARGUMENT
    # At the cap, accepted
    ok = _run_script(client, "reap", **_reap_argv(client, limit=MAX_REAP_BATCH))
    assert list(ok[:5]) == [0, 0, 0, 0, 0]


def test_a_reap_over_the_cap_loops_over_capped_calls(
    client: Any, clock: TestClock, counted: dict[str, int]
) -> None:
    # Given 1,300 expired leases
    _expire(client, clock, 1_300)
    # When reap is asked for 1,200: it takes five calls of at most 250
    counted.clear()
    assert client.reap(Q, limit=1_200) == 1_200
    assert counted == {"reap": 5}
    counts = client.counts(Q)
    assert (counts[JobState.READY], counts[JobState.LEASED]) == (1_200, 100)
    # and the rest comes with the next reap, which stops when nothing is left
    counted.clear()
    assert client.reap(Q) == 100
    assert counted == {"reap": 1}
    assert client.counts(Q)[JobState.READY] == 1_300


@pytest.mark.parametrize("max_attempts", [3, 1], ids=["to_ready", "to_dead"])
def test_one_reap_call_moves_about_512_kib_and_the_client_loops_for_the_rest(
    client: Any, clock: TestClock, max_attempts: int
) -> None:
    # Given 8 expired leases of 300 KB jobs (2.4 MB of records)
    _expire(client, clock, 8, b"x" * BIG, max_attempts=max_attempts)
    # When one reap script call runs: it stops once 512 KiB were moved, and says more is left
    reply = _run_script(client, "reap", **_reap_argv(client))
    moved = int(reply[1]) + int(reply[2])
    assert moved == PER_CALL
    assert int(reply[4]) == 1
    # Then the client's reap loops until every lease is back
    assert client.reap(Q) == 8 - PER_CALL
    state = JobState.READY if max_attempts == 3 else JobState.DEAD
    assert client.counts(Q)[state] == 8
    again = _run_script(client, "reap", **_reap_argv(client))
    assert list(again[1:]) == [0, 0, 0, 0]


def test_one_claim_call_leases_about_512_kib_and_the_client_claims_the_rest(
    client: Any,
) -> None:
    # Given 8 ready jobs of 300 KB
    client.enqueue_many(Q, [b"x" * BIG] * 7 + [b"last"])
    # When one claim script call asks for 8: it leases 2 and says ready jobs were left
    reply = _run_script(client, "claim", **_claim_argv(client, count=8))
    assert (len(reply) - 4) // 2 == PER_CALL
    assert int(reply[3]) == 1
    # Then the client's claim gets the whole count, in claim order
    jobs = client.claim(Q, worker="w", count=8)
    assert [len(j.payload) for j in jobs] == [BIG] * (7 - PER_CALL) + [4]
    assert client.counts(Q)[JobState.LEASED] == 8


def test_a_single_record_larger_than_the_budget_is_still_claimed(
    client_factory: Callable[..., Any],
) -> None:
    client = client_factory(payload_limit=2 * 1024 * 1024)
    client.enqueue(Q, b"y" * (1024 * 1024 + 10), id="huge")
    client.enqueue(Q, "small", id="small")
    reply = _run_script(client, "claim", **_claim_argv(client, count=2))
    assert [reply[4]] == [b"huge"]
    assert int(reply[3]) == 1
    assert [j.id for j in client.claim(Q, worker="w", count=2)] == ["small"]


# --------------------------------------------------------------------------- the claim memo


def test_a_resent_claim_does_not_return_a_lease_that_has_ended(
    client: Any, clock: TestClock
) -> None:
    # Given a claim (request id r1) that leased a job for 1 s
    client.enqueue(Q, "x", id="j1")
    first = _run_script(client, "claim", **_claim_argv(client, request_id="r1", count=1))
    assert first[4] == b"j1"
    # When the same call is re-sent while the lease stands: the memo returns the same job
    clock.advance(999)
    again = _run_script(client, "claim", **_claim_argv(client, request_id="r1", count=1))
    assert again[4:] == first[4:]
    # When it is re-sent once the deadline has passed (a re-send behind a blocking wait)
    clock.advance(1)
    late = _run_script(client, "claim", **_claim_argv(client, request_id="r1", count=1))
    # Then the ended lease is not handed out, and nothing else was leased in its place
    assert late[0] == 0
    assert len(late) == 4
    assert client.get(Q, "j1").state is JobState.LEASED  # (not reaped by the memo path)
    (retaken,) = client.claim(Q, worker="w2")
    assert (retaken.id, retaken.attempts) == ("j1", 2)
