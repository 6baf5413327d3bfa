"""ack trims the done set in the same call, from the size its ZADD leaves (issue 10).

ack no longer reads the done set's size a second time for its retention: it passes the ZCARD
it made as the done set's type check, plus the members its ZADD added, to trim_retention. A
wrong count there would leave the set above its limit (or trim too much).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import redisq
from redisq import JobState, Retention
from redisq.keys import QueueKeys

KEEP = 10


@pytest.fixture
def kept(url: str, prefix: str) -> Iterator[redisq.Store]:
    """A store whose done set keeps KEEP completed jobs (no age limit)."""
    retention = Retention(completed=KEEP, completed_age_ms=0)
    with redisq.connect(url, prefix=prefix, retention=retention) as store:
        yield store


def _done(store: redisq.Store, raw: Any, prefix: str) -> list[str]:
    keys = QueueKeys.build(prefix, "q")
    members: list[bytes] = raw.zrange(keys.done, 0, -1)
    return [m.decode() for m in members]


@pytest.mark.parametrize("batch", [1, 7, 50], ids=["ack", "ack_many-7", "ack_many-50"])
def test_the_done_set_keeps_its_limit_after_every_ack(
    kept: redisq.Store, raw: Any, prefix: str, batch: int
) -> None:
    # Given more jobs than the done set keeps
    kept.enqueue_many("q", list(range(3 * KEEP + 5)))
    acked: list[str] = []

    # When they are claimed and acked in calls of `batch`
    while claimed := kept.claim("q", worker="w", count=batch):
        if batch == 1:
            kept.ack(claimed[0])
        else:
            kept.ack_many(claimed)
        acked += [j.id for j in claimed]

        # Then after every call the done set holds min(KEEP, acked) of the acked jobs (the
        # oldest by completion time go first), and the trimmed ones' records are gone
        done = _done(kept, raw, prefix)
        assert len(done) == min(KEEP, len(acked))
        assert set(done) <= set(acked)
        assert raw.hlen(QueueKeys.build(prefix, "q").jobs) == len(done) + (
            3 * KEEP + 5 - len(acked)
        )
    assert kept.totals("q")["completed"] == 3 * KEEP + 5


def test_an_ack_sent_again_trims_nothing_more(kept: redisq.Store, raw: Any, prefix: str) -> None:
    # Given a done set filled past its limit (completions in one ms: ties go by id)
    kept.enqueue_many("q", list(range(KEEP + 1)))
    claimed = kept.claim("q", worker="w", count=KEEP + 1)
    kept.ack_many(claimed)
    before = _done(kept, raw, prefix)
    assert len(before) == KEEP

    # When the ack of a job still kept is sent again (a client retry: this token acked it)
    again = kept.ack(next(j for j in claimed if j.id in before))

    # Then it succeeds as the same completion and the done set is unchanged
    assert again.state is JobState.COMPLETED
    assert _done(kept, raw, prefix) == before
    assert kept.totals("q")["completed"] == KEEP + 1
