"""`redisq enqueue --group`, `stats` and `show` on concurrency groups and a queue's cap."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import redisq
from redisq.cli import main


@pytest.fixture
def store(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    connected = redisq.connect(real_url, prefix=prefix)
    yield connected
    connected.close()


def _cli(capsys: pytest.CaptureFixture[str], url: str, prefix: str, *argv: str) -> str:
    capsys.readouterr()
    assert main([*argv, "--url", url, "--prefix", prefix]) == 0
    return capsys.readouterr().out


def test_stats_and_show_say_what_group_limits_and_the_cap_hold_back(
    store: redisq.Store, real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        _cli(capsys, real_url, prefix, "enqueue", "t", str(i), "--id", f"g{i}", "--group", "acme")
    store.enqueue("free", 0, id="f0")
    store.set_group_concurrency("t", 1)
    assert [j.id for j in store.claim("t", worker="w", count=3)] == ["g0"]

    out = _cli(capsys, real_url, prefix, "stats")
    line = "concurrency of t: groups: at most 1 leased each, 2 ready in groups, 0 groups may"
    assert line + " lease now, 1 leased: 2 ready held back by group limits" in out
    assert "concurrency of free" not in out
    flow = json.loads(_cli(capsys, real_url, prefix, "stats", "--json"))["concurrency"]
    assert flow["t"]["held_by_groups"] == 2
    assert flow["t"]["group_concurrency"] == 1
    assert "free" not in flow

    shown = _cli(capsys, real_url, prefix, "show", "t", "g1")
    assert "its group 'acme' is at its limit (1 of 1 leased)" in shown
    document = json.loads(_cli(capsys, real_url, prefix, "show", "t", "g1", "--json"))
    assert document["group"] == "acme"
    assert "waiting" in document
    assert "group" not in _cli(capsys, real_url, prefix, "show", "free", "f0")

    store.set_concurrency("free", 1)
    store.enqueue("free", 1, id="f1")
    assert [j.id for j in store.claim("free", worker="w", count=3)] == ["f0"]
    out = _cli(capsys, real_url, prefix, "stats")
    assert "concurrency of free: cap 1, 1 leased: 1 ready held back by the cap" in out
    shown = _cli(capsys, real_url, prefix, "show", "free", "f1")
    assert "its queue is at its concurrency cap (1 of 1 leased)" in shown


def test_show_says_when_a_groups_own_rate_limit_holds_a_job(
    store: redisq.Store, real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store.set_rate_limit("t", "1/h", key="acme")
    store.enqueue_many("t", [redisq.Spec(i, id=f"g{i}") for i in range(2)], group="acme")
    assert [j.id for j in store.claim("t", worker="w", count=3)] == ["g0"]
    shown = _cli(capsys, real_url, prefix, "show", "t", "g1")
    assert "its group 'acme' has a rate limit (1/h): its next job may start at" in shown
