"""`redisq show QUEUE ID --flow` draws a job's dependency DAG; `redisq stats` counts waiting."""

from __future__ import annotations

import json

import pytest

import redisq
from redisq.cli import main


def _run(capsys: pytest.CaptureFixture[str], url: str, prefix: str, *argv: str) -> str:
    capsys.readouterr()
    code = main([*argv, "--url", url, "--prefix", prefix])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def test_show_flow_draws_the_dag(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with redisq.connect(real_url, prefix=prefix) as store:
        a = store.enqueue("q", 1, id="a", name="fetch")
        b = store.enqueue("q", 2, id="b", depends_on=[a])
        store.enqueue("q", 3, id="c", depends_on=[a, b])
        (job,) = store.claim("q", worker="w")
        store.ack(job, {"rows": 3})
    out = _run(capsys, real_url, prefix, "show", "q", "b", "--flow")
    assert out.splitlines() == [
        "a fetch [completed] -> {'rows': 3}",
        "|-- b [ready] *",
        "|   `-- c [waiting]",
        "`-- c [waiting] (see above)",
    ]
    document = json.loads(_run(capsys, real_url, prefix, "show", "q", "c", "--flow", "--json"))
    assert document["nodes"]["c"] == {
        "state": "waiting",
        "result": None,
        "parents": ["a", "b"],
        "children": [],
    }
    stats = json.loads(_run(capsys, real_url, prefix, "stats", "--json"))
    assert stats["queues"]["q"]["waiting"] == 1
    assert stats["total"]["waiting"] == 1
    text = _run(capsys, real_url, prefix, "stats")
    assert "WAITING" in text
