"""The README stays true: its Python snippets run as written, its API table fits the code.

Issue 9: the Quick start called an undefined `send` (and its `except` hid the NameError), and
the API table disagreed with the signatures (claim's lease_ms default, the keyword-only
arguments of release and reap, renew_many's lease_ms).
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import redisq

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _python_snippets() -> list[tuple[str, str]]:
    """Every ```python block of the README, with the section it is in."""
    snippets = []
    section = ""
    for part in re.split(r"(?m)^(## .*)$", README):
        if part.startswith("## "):
            section = part[3:].strip()
            continue
        for block in re.findall(r"```python\n(.*?)```", part, re.DOTALL):
            snippets.append((section, block))
    return snippets


SNIPPETS = _python_snippets()


def test_the_readme_has_its_snippets() -> None:
    assert [section for section, _ in SNIPPETS] == [
        "Quick start",
        "Tasks and workers",
        "Periodic schedules",
        "Workflows: dependencies",
        "Workflows: chain, group, chord",
        "Rate limits",
        "Rate limits per key",
        "Concurrency groups",
        "Expiry",
        "Dedupe windows",
        "Hooks and middleware",
        "Worker registry",
        "Metrics",
        "Testing and embedding",
    ]


@pytest.mark.parametrize(("section", "code"), SNIPPETS, ids=[s for s, _ in SNIPPETS])
def test_each_python_snippet_runs_as_written(section: str, code: str, tmp_path: Path) -> None:
    # A fresh interpreter in an empty folder, as a reader who pastes it into a file would.
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    if section == "Quick start":
        # The claim loop ran the ready job through `send` and acked it; the other is due later.
        assert "to ada@example.com (fencing token 1)" in done.stdout
        assert "<JobState.COMPLETED: 'completed'>: 1" in done.stdout
        assert "<JobState.SCHEDULED: 'scheduled'>: 1" in done.stdout
    elif section == "Periodic schedules":
        # Three ticks ran (the limit); the cron schedules are pending, the limited one done.
        assert done.stdout.splitlines() == [
            "['ping', 'ping', 'ping']",
            "beat 200 3 False",
            "cleanup */15 * * * * 0 True",
            "weekday-report 0 9 * * MON-FRI 0 True",
        ]
    elif section == "Rate limits":
        # 11 starts (one job ran twice) at 20/s, one after a 300 ms hold: over 0.7 s; the
        # limited run did not count.
        assert done.stdout.splitlines() == ["11 True", "1"]
    elif section == "Rate limits per key":
        # The limited key's 6 jobs spread over ~1 s at 5/s; the other key's did not wait.
        assert done.stdout.splitlines() == ["True", "True"]
    elif section == "Workflows: chain, group, chord":
        assert done.stdout.splitlines() == ["113", "[0, 2, 4, 6]", "4950"]
    elif section == "Workflows: dependencies":
        # Each job ran after its parents; the flow shows the DAG with results.
        assert done.stdout.splitlines() == [
            "waiting 2",
            "fetch-a",
            "parse",
            "report",
            "fetch-a [completed] -> 'fetch-a done'",
            "|-- parse [completed] -> 'parse done'",
            "|   `-- report [completed] -> 'report done' *",
            "`-- report [completed] -> 'report done' * (see above)",
        ]
    elif section == "Concurrency groups":
        # Never two of a tenant at once; the small tenant's first job among the first two
        # started, and its three within the first twelve (round-robin, not FIFO).
        assert done.stdout.splitlines() == ["[('big', 1), ('small', 1)]", "True 3"]
    elif section == "Expiry":
        # The backlog ran; the job behind it expired unclaimed and was counted.
        assert done.stdout.splitlines() == ["100", "['a', 'b', 'c']", "cancelled expired 1"]
    elif section == "Dedupe windows":
        assert done.stdout.splitlines() == [
            "True completed {'day': 1}",
            "True scheduled {'rev': 2}",
        ]
    elif section == "Hooks and middleware":
        # The first attempt failed and was retried (after_job inner to on_retry), the second
        # completed: each hook once per attempt, in order.
        assert done.stdout.splitlines() == [
            "42",
            "start fetch #1",
            "end retry",
            "retry: ConnectionError('flaky')",
            "start fetch #2",
            "end completed",
        ]
    elif section == "Worker registry":
        # Listed while it ran, gone at once after a clean stop.
        assert done.stdout.splitlines() == ["mail-1 ('emails',) 4 0", "[]"]
    elif section == "Metrics":
        # Scraped over HTTP from the worker, and collected from Redis.
        assert done.stdout.splitlines() == [
            'redisq_worker_jobs_completed_total{queue="mail",task="send"} 3.0',
            'redisq_worker_run_seconds_count{queue="mail",task="send"} 3.0',
            'redisq_queue_jobs{queue="mail",state="completed"} 3.0',
        ]
    elif section == "Testing and embedding":
        # Eager at enqueue, a burst worker until empty, a worker inside an event loop.
        assert done.stdout.splitlines() == [
            "hello ada",
            "2 ['hello bob', 'hello cy']",
            "hello dee",
        ]
    else:
        assert done.stdout.strip() == "{'day': 1}"


# ------------------------------------------------------------------------- the API table


def _api_table() -> list[str]:
    """The `name(params)` code spans of the first column of the README's API table."""
    section = README.split("## The API\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    spans = []
    for row in rows:
        first = row.split(" | ", 1)[0]
        spans += re.findall(r"`([a-z_]+\([^`]*\))`", first)
    return spans


def _documented(span: str) -> tuple[str, list[tuple[str, Any, Any]]]:
    """Parse `name(a, b=1, *, c, **d)` into (name, [(param, kind, default or empty)])."""
    tree = ast.parse(f"def {span.split('(', 1)[0]}({span.split('(', 1)[1][:-1]}): pass")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    empty = inspect.Parameter.empty
    params: list[tuple[str, Any, Any]] = []
    positional = a.args
    defaults = [empty] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for arg, default in zip(positional, defaults, strict=True):
        params.append((arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default))
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        params.append((arg.arg, inspect.Parameter.KEYWORD_ONLY, kw_default or empty))
    if a.kwarg is not None:
        params.append((a.kwarg.arg, inspect.Parameter.VAR_KEYWORD, empty))
    return fn.name, params


TABLE = _api_table()


def test_the_table_lists_every_public_store_method() -> None:
    public = {
        name
        for name, member in inspect.getmembers(redisq.Store, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    assert {span.split("(")[0] for span in TABLE} == public


@pytest.mark.parametrize("span", TABLE)
@pytest.mark.parametrize("store", [redisq.Store, redisq.AsyncStore], ids=lambda c: c.__name__)
def test_each_table_entry_matches_the_signature(span: str, store: type) -> None:
    name, documented = _documented(span)
    actual = [p for p in inspect.signature(getattr(store, name)).parameters.values()]
    actual = [p for p in actual if p.name != "self"]
    # Every parameter, in order, of the same kind (positional or keyword-only).
    assert [(n, k) for n, k, _ in documented] == [(p.name, p.kind) for p in actual], span
    # A default the table shows is the real one (the table may leave one out, as for
    # update's payload, whose default is a sentinel).
    for (param, _, default), real in zip(documented, actual, strict=True):
        if default is inspect.Parameter.empty:
            continue
        shown = ast.literal_eval(default)
        assert real.default == shown, f"{span}: {param} defaults to {real.default!r}"
        assert type(real.default) is type(shown), span
    # A parameter without a default in the code is shown without one.
    for (param, _, default), real in zip(documented, actual, strict=True):
        if real.default is inspect.Parameter.empty:
            assert default is inspect.Parameter.empty, f"{span}: {param} has no default"
