"""`redisq show` prints a job's attempt history (text and --json)."""

from __future__ import annotations

import re

import redisq
from tests.integration.test_cli import Cli, cli, store  # noqa: F401  (fixtures)

TEXT = "KeyError: 'x'\n\nTraceback (most recent call last):\n  File \"t.py\", line 1\nKeyError: 'x'"


def test_show_prints_each_failed_attempt(cli: Cli, store: redisq.Store) -> None:  # noqa: F811
    # Given a job that failed twice: an error with a traceback, then a plain one (dead)
    store.enqueue("q", 1, id="j1", max_attempts=2)
    (first,) = store.claim("q", worker="host-1")
    store.nack(first, error=TEXT, delay_ms=0)
    (second,) = store.claim("q", worker="host-2")
    store.nack(second, error="timeout after 5 ms")

    # When it is shown
    run = cli("show", "q", "j1")

    # Then both attempts are printed, oldest first, with their errors and traceback
    assert run.code == 0
    out = run.out
    assert re.search(r"^failed_attempts +2 \(the last 10 are kept\)$", out, re.M)
    assert out.index("#1 retry (error) by host-1") < out.index("#2 dead (error) by host-2")
    assert "    Traceback (most recent call last):" in out
    assert "    timeout after 5 ms" in out

    document = cli("show", "q", "j1", "--json").json()
    assert [
        (a["attempt"], a["outcome"], a["worker"], a["error"], a["traceback"])
        for a in document["failed_attempts"]
    ] == [
        (1, "retry", "host-1", "KeyError: 'x'", TEXT.split("\n\n", 1)[1]),
        (2, "dead", "host-2", "timeout after 5 ms", ""),
    ]
