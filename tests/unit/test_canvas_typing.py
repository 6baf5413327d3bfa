"""mypy checks the steps of a chain and the callback of a chord (issue 12, point 2): each step's
first parameter must take the previous step's return type; a chord's callback takes a list of
the group's result type. Runs mypy (--strict) on a snippet with good and bad uses; each bad
line carries a ``# bad`` marker and must be reported, and no other line may be.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

SNIPPET = """
from __future__ import annotations

import redisq

app = redisq.App()


@app.task()
def fetch(url: str) -> bytes:
    return url.encode()


@app.task()
def size(data: bytes, scale: int = 1) -> int:
    return len(data) * scale


@app.task()
def label(n: int) -> str:
    return str(n)


@app.task()
def total(xs: list[int]) -> int:
    return sum(xs)


def good() -> None:
    flow = redisq.chain(fetch.s("u"), size.s(2), label.s())
    text: str = flow.enqueue().result()
    one: bytes = redisq.chain(fetch.s("u")).enqueue().result()
    counted = redisq.chord(redisq.group([size.s(b"a"), size.s(b"bb")]), total.s())
    n: int = counted.enqueue().result()
    results: list[int] = redisq.group([size.s(b"x")]).enqueue().results()
    print(text, one, n, results)


def bad() -> None:
    redisq.chain(fetch.s("u"), label.s())  # bad: label takes int, fetch gives bytes
    redisq.chain(fetch.s("u"), size.s(), fetch.s())  # bad: fetch takes str, size gives int
    wrong: int = redisq.chain(fetch.s("u"), size.s(), label.s()).enqueue().result()  # bad
    redisq.chord([size.s(b"a")], label.s())  # bad: label takes int, not list[int]
"""


def test_mypy_checks_chain_steps_and_chord_callbacks(tmp_path: Path) -> None:
    source = textwrap.dedent(SNIPPET)
    path = tmp_path / "snippet.py"
    path.write_text(source)
    out, err, _ = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(path)]
    )
    reported = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    expected = {i for i, line in enumerate(source.splitlines(), 1) if "# bad" in line}
    assert expected, "the snippet has bad lines"
    assert reported == expected, out + err
