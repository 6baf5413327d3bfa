"""Rate keys under client retries (redis-py re-sends a call whose reply was late): a loopback
proxy delays one reply past the socket timeout, and the `twice` fixture checks the script ran
twice (tests/integration/conftest.py; the store is test_client_retry.py's)."""

from __future__ import annotations

import redis

import redisq
from tests.integration.test_client_retry import (  # noqa: F401 (its fixture)
    QUEUE,
    Twice,
    store,
)
from tests.support.resend import LATE_REPLY


def test_a_re_sent_key_hold_holds_once_and_only_its_key(
    store: redisq.Store,  # noqa: F811 (the fixture imported above)
    direct: redis.Redis,
    prefix: str,
    twice: Twice,
) -> None:
    job = store.enqueue(QUEUE, 1, rate_key="k")
    plain = store.enqueue(QUEUE, 2)
    before_ms = int(direct.time()[0]) * 1000
    with twice():
        until = store.hold(QUEUE, 10_000, id=job.id)
    # Ten seconds from the run that counted (the re-send's), never twenty; one wait entry.
    assert before_ms + 10_000 <= until <= before_ms + 10_000 + int(LATE_REPLY * 1000) + 1_500
    tag = f"{{{prefix}:{QUEUE}}}"
    assert direct.zrange(f"{tag}:gwait", 0, -1, withscores=True) == [(b"k", float(until))]
    assert store.rate_limit(QUEUE, key="k").next_at_ms == until
    assert store.rate_limit(QUEUE).next_at_ms is None
    assert [j.id for j in store.claim(QUEUE, worker="w", count=5)] == [plain.id]


def test_a_re_sent_claim_takes_one_token_of_its_key(
    store: redisq.Store,  # noqa: F811 (the fixture imported above)
    direct: redis.Redis,
    prefix: str,
    twice: Twice,
) -> None:
    store.set_rate_limit(QUEUE, "1/h", key="k")
    ids = [j.id for j in store.enqueue_many(QUEUE, [1, 2, 3], rate_key="k")]
    with twice():
        jobs = store.claim(QUEUE, worker="w1", count=3, lease_ms=60_000)
    assert [j.id for j in jobs] == ids[:1]
    hour = 3_600_000
    next_at = store.rate_limit(QUEUE, key="k").next_at_ms
    now_ms = int(direct.time()[0]) * 1000
    # One token (an hour less the tolerance of half an hour), not two.
    assert next_at is not None
    assert now_ms + hour // 2 - 3_000 <= next_at <= now_ms + hour // 2 + 1_000, next_at - now_ms
    assert store.claim(QUEUE, worker="w2", count=3) == []
