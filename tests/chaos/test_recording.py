"""The recording store: what it writes, and that it passes the store's options through."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import redisq
from redisq import Store
from tests.chaos.ledger import Ledger, read_ledger
from tests.chaos.recording import RecordingStore


class FakeStore:
    """Answers like a Store and remembers the keyword options of each call."""

    settings = redisq.connect("memory://chaos-recording").settings

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}

    def ack(self, job: redisq.Job, result: Any = None, **options: Any) -> redisq.Job:
        self.options["ack"] = options
        return job

    def ack_many(self, jobs: Any, results: Any = None, **options: Any) -> list[redisq.Job]:
        self.options["ack_many"] = options
        return list(jobs)


def _job() -> redisq.Job:
    return redisq.Job(
        id="a",
        queue="q",
        name=None,
        payload=None,
        state=redisq.JobState.COMPLETED,
        priority=0,
        attempts=1,
        max_attempts=3,
        token=7,
        worker="w",
        created_at_ms=1,
        run_at_ms=1,
        lease_deadline_ms=None,
        last_error=None,
        finished_at_ms=1_000,
    )


def test_options_pass_through_and_acks_are_written(tmp_path: Path) -> None:
    # Given a recording store over a store whose ack takes an option the wrapper does not name
    fake = FakeStore()
    recording = RecordingStore(cast(Store, fake), Ledger(tmp_path, "w"))

    # When a worker acks with that option
    recording.ack(_job(), None, result_ttl_ms=5)
    recording.ack_many([_job()], None, snapshots=False, result_ttl_ms=6)
    recording.ledger.close()

    # Then the store got it, and the ledger holds the acks with their Redis time
    assert fake.options == {
        "ack": {"result_ttl_ms": 5},
        "ack_many": {"result_ttl_ms": 6, "snapshots": True},
    }
    events = read_ledger(tmp_path).events
    assert [e["ev"] for e in events] == ["ACK_SENT", "ACK_OK", "ACK_SENT", "ACK_OK"]
    assert {e["at"] for e in events if e["ev"] == "ACK_OK"} == {1_000}
