"""`redisq enqueue --rate-key`, and `stats` / `show` on rate keys held back (valkey, redis7)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import redisq
from redisq.cli import main
from redisq.cli._stats import KEYS_SHOWN


@pytest.fixture
def store(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    connected = redisq.connect(real_url, prefix=prefix)
    yield connected
    connected.close()


def _cli(capsys: pytest.CaptureFixture[str], url: str, prefix: str, *argv: str) -> str:
    capsys.readouterr()
    assert main([*argv, "--url", url, "--prefix", prefix]) == 0
    return capsys.readouterr().out


def test_stats_and_show_say_which_rate_keys_are_held_and_until_when(
    store: redisq.Store, real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli(capsys, real_url, prefix, "enqueue", "t", "1", "--id", "s0", "--rate-key", "stripe")
    assert store.concurrency("t", "s0").group == "stripe"
    store.set_rate_limit("t", "1/h", key="stripe")
    store.enqueue("t", 2, id="s1", rate_key="stripe")
    # Seven keys held by a 429 each (for 1 to 7 hours), one job in each.
    for i in range(7):
        store.enqueue("t", i, id=f"h{i}", rate_key=f"held-{i}")
        store.hold("t", (i + 1) * 3_600_000, key=f"held-{i}")
    store.enqueue("t", 0, id="plain")
    assert [j.id for j in store.claim("t", worker="w", count=20)] == ["s0", "plain"]

    out = _cli(capsys, real_url, prefix, "stats")
    (line,) = [x for x in out.splitlines() if x.startswith("rate keys of t:")]
    assert line.startswith("rate keys of t: 8 held back: 'stripe' (1/h) 1 ready until ")
    assert "'held-0' (a RateLimited hold) 1 ready until " in line
    assert "'held-3' (a RateLimited hold)" in line
    assert "held-4" not in line  # the first KEYS_SHOWN, soonest first
    assert line.endswith(", and 3 more")
    document = json.loads(_cli(capsys, real_url, prefix, "stats", "--json"))["rate_keys"]
    assert document["t"]["held"] == 8
    assert document["t"]["more"] == 8 - KEYS_SHOWN
    assert [k["key"] for k in document["t"]["keys"]] == ["stripe", *(f"held-{i}" for i in range(4))]
    assert document["t"]["keys"][0]["limit"] == "1/h"

    shown = _cli(capsys, real_url, prefix, "show", "t", "h2")
    assert "its group 'held-2' is held back by a handler's RateLimited: its next job may" in shown
    shown = _cli(capsys, real_url, prefix, "show", "t", "s1")
    assert "its group 'stripe' has a rate limit (1/h): its next job may start at" in shown

    # A queue with nothing held prints no such line.
    store.enqueue("u", 0, rate_key="free")
    out = _cli(capsys, real_url, prefix, "stats", "u")
    assert "rate keys of" not in out
    assert json.loads(_cli(capsys, real_url, prefix, "stats", "u", "--json"))["rate_keys"] == {}
