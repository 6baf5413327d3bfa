"""The checker and the ledger on hand-made histories (no server): each invariant can fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.checker import FinalJob, FinalState, Limits, Report, check
from tests.chaos.fleet_scenarios import _check_outages
from tests.chaos.ledger import Ledger, LedgerData, read_ledger

LEASE = 2_000
T0 = 1_700_000_000_000


class History:
    """Builds a ledger: times are ms after T0 (wall and Redis alike)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, ev: str, t: float, **fields: Any) -> None:
        self.events.append({"ev": ev, "t": T0 + t, **fields})

    def enqueue(self, job: str, kind: str = "normal", t: float = 0) -> None:
        self.add("ENQ_SENT", t, q="q", id=job, kind=kind, pid=1, src="producer")
        self.add("ENQ_OK", t + 1, q="q", id=job, pid=1, src="producer")

    def claim(
        self, job: str, token: int, t: float, pid: int, lease: int = LEASE, attempt: int = 1
    ) -> dict[str, Any]:
        lease_fields = {"q": "q", "id": job, "token": token, "granted": T0 + t}
        self.add(
            "CLAIM",
            t,
            **lease_fields,
            deadline=T0 + t + lease,
            lease=lease,
            attempt=attempt,
            pid=pid,
            src=f"w{pid}",
        )
        return lease_fields

    def run(self, lease: dict[str, Any], t: float, pid: int, outcome: str = "ok") -> None:
        self.add("HANDLER_START", t, **lease, pid=pid, src=f"w{pid}")
        self.add("HANDLER_END", t + 10, **lease, outcome=outcome, pid=pid, src=f"w{pid}")

    def ack(self, lease: dict[str, Any], t: float, pid: int, at: float | None = None) -> None:
        short = [lease["q"], lease["id"], lease["token"], lease["granted"]]
        self.add("ACK_SENT", t, leases=[short], pid=pid, src=f"w{pid}")
        self.add(
            "ACK_OK",
            t + 1,
            **lease,
            at=T0 + (t if at is None else at),
            state="completed",
            rtoken=lease["token"],
            pid=pid,
            src=f"w{pid}",
        )

    def data(self) -> LedgerData:
        return LedgerData(sorted(self.events, key=lambda e: e["t"]))


def final(jobs: dict[str, FinalJob], **overrides: Any) -> FinalState:
    fields: dict[str, Any] = {
        "jobs": {("q", k): v for k, v in jobs.items()},
        "sets": {"q": {"ready": 0, "scheduled": 0, "leased": 0}},
        "keys": {},
        "allowed": set(),
        "expiring_prefixes": ("{chaos:q}:claim:",),
        "used_memory": 1_000_000,
        "baseline_memory": 1_000_000,
    }
    fields.update(overrides)
    return FinalState(**fields)


def done(token: int, attempts: int = 1) -> FinalJob:
    return FinalJob("completed", attempts, 5, token, None)


LIMITS = Limits(lease_ms=LEASE, reaper_ms=500, max_attempts=5, concurrency=1)


def checked(history: History, state: FinalState | None) -> Report:
    return check(history.data(), state, LIMITS)


def test_a_clean_history_passes() -> None:
    # Given a job claimed, run and acked once
    h = History()
    h.enqueue("a")
    lease = h.claim("a", 1, t=10, pid=7)
    h.run(lease, t=11, pid=7)
    h.ack(lease, t=30, pid=7)

    # Then nothing is reported
    report = checked(h, final({"a": done(1)}))
    assert report.ok, report.describe()
    assert report.figures["jobs"] == 1
    assert report.figures["lost"] == 0


def test_i1_reports_a_job_that_never_finished() -> None:
    h = History()
    h.enqueue("a")
    report = checked(h, final({"a": FinalJob("ready", 0, 5, None, None)}))
    assert report.failed() == ["I1"]
    assert "finally ready" in report.violations["I1"][0]


def test_i2_reports_two_completions_and_a_token_mismatch() -> None:
    # Given a job acked by two different leases
    h = History()
    h.enqueue("a")
    first = h.claim("a", 1, t=10, pid=7)
    h.ack(first, t=20, pid=7)
    second = h.claim("a", 2, t=3_000, pid=8)
    h.ack(second, t=3_010, pid=8)

    report = checked(h, final({"a": done(1)}))

    assert any("acked by 2 leases" in v for v in report.violations["I2"])
    assert any("granted after the completion" in v for v in report.violations["I2"])
    assert any("holds token 1" in v for v in report.violations["I2"])


def test_i3_reports_a_lease_granted_before_the_last_one_ended() -> None:
    # Given a second lease granted while the first was renewed and valid
    h = History()
    h.enqueue("a")
    first = h.claim("a", 1, t=10, pid=7)
    h.add("RENEW_OK", 700, **first, at=T0 + 700, deadline=T0 + 2_700, pid=7, src="w7")
    second = h.claim("a", 2, t=2_100, pid=8)
    h.ack(second, t=2_200, pid=8)

    report = checked(h, final({"a": done(2)}))

    assert report.failed() == ["I3"]
    assert report.figures["overlapping_leases"] == 1
    assert "deadline" in report.violations["I3"][0]


def test_i3_accepts_a_lease_granted_after_a_nack() -> None:
    # Given a lease ended early by a nack, then granted again before its deadline
    h = History()
    h.enqueue("a")
    first = h.claim("a", 1, t=10, pid=7)
    h.add("NACK_SENT", 20, **first, pid=7, src="w7")
    h.add("NACK_OK", 21, **first, at=T0 + 20, state="ready", rtoken=1, pid=7, src="w7")
    second = h.claim("a", 2, t=30, pid=8)
    h.ack(second, t=40, pid=8)

    assert checked(h, final({"a": done(2, attempts=2)})).ok


def test_i4_reports_a_stale_ack_and_a_reused_token() -> None:
    # Given an ack accepted after the lease's deadline, by a lease whose token was reused
    h = History()
    h.enqueue("a")
    first = h.claim("a", 1, t=10, pid=7)
    second = h.claim("a", 1, t=2_100, pid=8)
    h.ack(first, t=2_500, pid=7)
    del second

    report = checked(h, None)

    assert report.figures["stale_acks_accepted"] == 1
    assert any("after the lease's deadline" in v for v in report.violations["I4"])
    assert any("does not have a larger token" in v for v in report.violations["I4"])


def test_i4_wants_a_refusal_after_a_stop_past_a_lease() -> None:
    # Given a worker stopped past the lease of the job it held, which then lived on
    h = History()
    h.enqueue("a")
    h.add("WORKER_START", 0, pid=7, src="w7")
    first = h.claim("a", 1, t=10, pid=7)
    h.add("STOP", 100, target=7, pid=1, src="chaos")
    h.add("CONT", 5_100, target=7, pid=1, src="chaos")
    second = h.claim("a", 2, t=2_600, pid=8)
    h.ack(second, t=2_700, pid=8)
    h.add("EXIT", 20_000, target=7, pid=1, src="chaos")
    del first

    # Then, without a refusal from it, I4 says fencing was not exercised
    report = checked(h, final({"a": done(2)}))
    assert report.failed() == ["I4"]
    assert "no refusal followed" in report.violations["I4"][0]

    # ... and with one it passes
    before = h.events[:]
    h.add("RENEW_REFUSED", 5_200, q="q", id="a", token=1, granted=T0 + 10, err="x", pid=7)
    report = checked(h, final({"a": done(2)}))
    assert report.ok
    assert report.figures["stops_followed_by_refusal"] == 1

    # ... and so it does when the store could not answer the woken worker at all (a server
    # loading its AOF): its calls failed, and its settler gave the outcome up on its own
    h.events[:] = before
    h.add("ACK_ERR", 5_200, n=1, err="BusyLoadingError", pid=7, src="w7")
    report = checked(h, final({"a": done(2)}))
    assert report.ok
    assert report.figures["stops_followed_by_unanswered_calls"] == 1


def test_i5_and_i9_report_leftovers() -> None:
    h = History()
    state = final(
        {},
        sets={"q": {"ready": 0, "scheduled": 0, "leased": 2}},
        keys={
            "stray": ("string", -1),
            "{chaos:q}:claim:x": ("hash", -1),
            "{chaos:q}:claim:y": ("none", -2),  # expired between the SCAN and the TYPE
        },
        used_memory=30 << 20,
        baseline_memory=1 << 20,
    )
    report = checked(h, state)
    assert report.failed() == ["I5", "I9"]
    assert len(report.violations["I5"]) == 3  # the leased jobs, the stray key, the memo's TTL


def test_i6_reports_too_many_attempts_and_a_completed_poison_job() -> None:
    h = History()
    h.enqueue("p", kind="poison")
    h.enqueue("n")
    state = final({"p": done(3), "n": FinalJob("completed", 6, 5, 9, None)})
    report = checked(h, state)
    assert report.failed() == ["I6"]
    assert len(report.violations["I6"]) == 2


def _expired_while_busy(regranted_at: float) -> History:
    """A lease that expired at 2,010 after its holder died, while the only other worker was
    busy until 4,000; granted again at `regranted_at`."""
    h = History()
    h.enqueue("a")
    h.enqueue("b")
    h.add("WORKER_START", 0, pid=7, src="w7")
    h.add("WORKER_START", 0, pid=8, src="w8")
    h.claim("a", 1, t=10, pid=7)
    h.add("KILL", 100, target=7, pid=1, src="chaos")
    busy = h.claim("b", 2, t=20, pid=8, lease=10_000)
    h.add("HANDLER_START", 21, **busy, pid=8, src="w8")
    h.add("HANDLER_END", 4_000, **busy, outcome="ok", pid=8, src="w8")
    h.ack(busy, t=4_001, pid=8)
    again = h.claim("a", 3, t=regranted_at, pid=8)
    h.ack(again, t=regranted_at + 10, pid=8)
    return h


def test_i7_excuses_only_the_time_no_worker_had_a_free_slot() -> None:
    state = final({"a": done(3), "b": done(2)})

    # Granted again 300 ms after a slot freed: within the reaper interval (500 ms +20%) + 500
    report = checked(_expired_while_busy(4_300), state)
    assert report.ok, report.describe()
    assert report.figures["recovery_max_ms"] == 2_290

    # ... 1,500 ms after it: too slow
    report = checked(_expired_while_busy(5_500), state)
    assert report.failed() == ["I7"]


@pytest.mark.parametrize("attempt", [2, 3])
def test_i7_skips_a_recovery_through_a_lease_the_ledger_missed(attempt: int) -> None:
    # Given a lease of a killed worker expired at 2,010, granted again 3 s later as attempt 3:
    # an attempt 2 in between left no line (its worker never handled the claim's reply)
    h = History()
    h.enqueue("a")
    h.add("WORKER_START", 0, pid=7, src="w7")
    h.add("WORKER_START", 0, pid=8, src="w8")
    h.claim("a", 1, t=10, pid=7)
    h.add("KILL", 100, target=7, pid=1, src="chaos")
    again = h.claim("a", 9, t=5_010, pid=8, attempt=attempt)
    h.ack(again, t=5_020, pid=8)

    report = checked(h, final({"a": done(9, attempts=attempt)}))

    if attempt == 3:
        assert report.ok, report.describe()
        assert report.figures["recoveries_through_an_unrecorded_lease"] == 1
    else:  # attempt 2: the recorded lease was the next one, 3 s late
        assert report.failed() == ["I7"]


def test_i8_reports_a_rerun_without_evidence() -> None:
    # Given a job run twice, the first lease lost with no fault and no refusal in the ledger
    h = History()
    h.enqueue("a")
    first = h.claim("a", 1, t=10, pid=7)
    h.run(first, t=11, pid=7)
    second = h.claim("a", 2, t=2_100, pid=8)
    h.run(second, t=2_101, pid=8)
    h.ack(second, t=2_200, pid=8)

    report = checked(h, final({"a": done(2, attempts=2)}))
    assert report.failed() == ["I8"]
    assert report.figures["duplicates"] == 1

    # With the worker killed while it held the lease, the re-run is explained
    h.add("KILL", 500, target=7, pid=1, src="chaos")
    report = checked(h, final({"a": done(2, attempts=2)}))
    assert report.ok, report.describe()
    assert report.figures["duplicate_causes"] == {"kill": 1}


def test_the_ledger_skips_a_torn_last_line_only(tmp_path: Path) -> None:
    # Given two writers, one killed in the middle of its last line
    writer = Ledger(tmp_path, "w1")
    writer.write("CLAIM", id="a")
    writer.close()
    torn = tmp_path / "w2-99.jsonl"
    torn.write_text(json.dumps({"ev": "ENQ_OK", "t": 1.0}) + "\n" + '{"ev": "ACK_O')

    data = read_ledger(tmp_path)

    assert [e["ev"] for e in data.events] == ["ENQ_OK", "CLAIM"]
    assert data.torn == [("w2-99.jsonl", '{"ev": "ACK_O')]

    # A bad line anywhere else is a harness bug
    torn.write_text('{"ev": "ACK_O\n' + json.dumps({"ev": "ENQ_OK", "t": 1.0}) + "\n")
    with pytest.raises(ValueError, match="bad ledger line"):
        read_ledger(tmp_path)


def test_s8_counts_a_claim_that_resumed_before_the_harness_noted_the_server_up() -> None:
    # S8 seed 22: a worker's claim worked again 22 ms before the harness's own check logged
    # SERVER_UP; the checker looked only after SERVER_UP and said it "never claimed again".
    history = History()
    history.add("WORKER_START", 0, pid=7)
    history.add("SERVER_KILL", 100)
    history.add("RESUMED", 5_000, pid=7, op="claim", started=T0 + 4_990)
    history.add("SERVER_UP", 5_022)
    history.add("WORKER_STOP", 9_000, pid=7, metrics={})
    report = Report()
    outage = {"seconds": 5.0, "reconnects_per_s": 1.0}
    worst = _check_outages(report, history.data(), [outage], 5.0, 10.0)
    assert report.ok
    assert worst == [0.0]
    # A worker that never claims after the kill is still reported.
    history.events = [e for e in history.events if e["ev"] != "RESUMED"]
    report = Report()
    _check_outages(report, history.data(), [outage], 5.0, 10.0)
    assert any("never claimed again" in v for v in report.violations["S8"])
