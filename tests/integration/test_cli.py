"""The `redisq` command line, end to end against the real servers.

Most tests call `redisq.cli.main([...])` in-process and read its output with capsys, then check
the effect in Redis through a Store; the entry point, signals and `server` run as real
subprocesses (`python -m redisq`).
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import redis

import redisq
import redisq.embedded
import redisq.testing
from redisq import JobState
from redisq.cli import _stats, main
from redisq.keys import QueueKeys
from tests.support.polling import Deadline, wait_for
from tests.support.servers import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
JOB_FIELDS = [f.name for f in fields(redisq.Job)]
STATES = [s.value for s in JobState]


@dataclass
class Run:
    """What one `redisq ...` call did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as one JSON document."""
        return json.loads(self.out)

    def error(self) -> Any:
        """stderr as one JSON document (an --json error)."""
        return json.loads(self.err)


Cli = Callable[..., Run]


@pytest.fixture
def store(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    """A store on the test's real server and prefix, to check what the commands did."""
    connected = redisq.connect(real_url, prefix=prefix)
    yield connected
    connected.close()


@pytest.fixture
def cli(real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `redisq ARGS --url <real server> --prefix <test prefix>` in-process."""

    def run(*argv: str, connect: bool = True) -> Run:
        capsys.readouterr()
        args = [*argv, "--url", real_url, "--prefix", prefix] if connect else list(argv)
        code = main(args)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def _dead(store: redisq.Store, queue: str, job_id: str, error: str = "boom") -> redisq.Job:
    store.enqueue(queue, {"n": job_id}, id=job_id, max_attempts=1)
    (job,) = store.claim(queue, worker="w", lease_ms=60_000)
    assert job.id == job_id
    return store.nack(job, error=error)


def _server_ms(store: redisq.Store) -> int:
    seconds, micros = store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -------------------------------------------------------------------------------------- enqueue


def test_enqueue_stores_every_option_and_prints_id_and_state(cli: Cli, store: redisq.Store) -> None:
    run = cli(
        "enqueue", "mail", '{"to": "ada", "n": [1, 2.5, null]}',
        "--id", "j1", "--name", "send", "--priority", "7", "--max-attempts", "5",
        "--lease-ms", "5000", "--unique-key", "u1",
    )  # fmt: skip
    assert (run.code, run.err) == (0, "")
    assert run.out == "j1 ready (queue mail)\n"
    job = store.get("mail", "j1")
    assert job is not None
    assert job.payload == {"to": "ada", "n": [1, 2.5, None]}
    assert (job.name, job.priority, job.max_attempts, job.lease_ms, job.unique_key) == (
        "send", 7, 5, 5000, "u1",
    )  # fmt: skip

    again = cli("enqueue", "mail", "3", "--id", "j1", "--json")  # idempotent on the id
    assert again.code == 0
    assert again.json()["payload"] == {"to": "ada", "n": [1, 2.5, None]}
    assert store.counts("mail")[JobState.READY] == 1


def test_enqueue_json_prints_the_whole_job(cli: Cli, store: redisq.Store) -> None:
    run = cli("enqueue", "mail", '"hi"', "--delay-ms", "60000", "--json")
    assert run.code == 0
    document = run.json()
    assert list(document) == JOB_FIELDS
    job = store.get("mail", document["id"])
    assert job is not None
    assert document == {name: getattr(job, name) for name in JOB_FIELDS}
    assert document["state"] == "scheduled"
    assert document["run_at_ms"] - document["created_at_ms"] == 60_000


def test_enqueue_run_at_stdin_and_no_payload(
    cli: Cli, store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _server_ms(store) + 3_600_000
    assert cli("enqueue", "q", "--id", "a", "--run-at-ms", str(at)).code == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"from": "stdin"}\n'))
    assert cli("enqueue", "q", "-", "--id", "b").code == 0
    assert cli("enqueue", "q", "--id", "c").code == 0
    a, b, c = (store.get("q", i) for i in "abc")
    assert a is not None
    assert (a.state, a.run_at_ms) == (JobState.SCHEDULED, at)
    assert b is not None
    assert b.payload == {"from": "stdin"}
    assert c is not None
    assert c.payload is None
    assert c.state is JobState.READY


def test_enqueue_task_makes_the_task_payload(cli: Cli, store: redisq.Store) -> None:
    run = cli(
        "enqueue", "default", "--task", "send_email",
        "--args", '["ada", 2, null]', "--kwargs", '{"cc": ["bob"], "n": 1.5}', "--json",
    )  # fmt: skip
    assert run.code == 0
    job = store.get("default", run.json()["id"])
    assert job is not None
    assert job.name == "send_email"
    assert job.payload == {"args": ["ada", 2, None], "kwargs": {"cc": ["bob"], "n": 1.5}}

    bare = cli("enqueue", "default", "--task", "ping", "--json")
    assert bare.code == 0
    assert bare.json()["payload"] == {"args": [], "kwargs": {}}
    assert bare.json()["name"] == "ping"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["q", "{bad"], "PAYLOAD is not valid JSON"),
        (["q", "1", "--task", "t"], "not both"),
        (["q", "--task", "t", "--name", "n"], "leave out --name"),
        (["q", "--args", "[]"], "--args and --kwargs go with --task"),
        (["q", "--task", "t", "--args", '{"a": 1}'], "--args must be a JSON list"),
        (["q", "--task", "t", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["q", "--task", "t", "--kwargs", "{"], "--kwargs is not valid JSON"),
        (["q", "1", "--priority", "high"], "invalid int value"),
        (["q", "1", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_enqueue_usage_errors_exit_2_and_write_nothing(
    cli: Cli, store: redisq.Store, argv: list[str], says: str
) -> None:
    run = cli("enqueue", *argv)
    assert run.code == 2
    assert run.out == ""
    assert says in run.err
    assert store.queues() == []


def test_invalid_argument_names_the_field_and_the_limit(cli: Cli, store: redisq.Store) -> None:
    text = cli("enqueue", "q", "1", "--priority", "5000")
    assert text.code == 2
    assert "priority must be an int in [-1000, 1000]; got 5000" in text.err

    run = cli("enqueue", "q", "1", "--max-attempts", "0", "--json")
    assert (run.code, run.out) == (2, "")
    error = run.error()
    assert error["exit_code"] == 2
    assert error["type"] == "InvalidArgument"
    assert error["field"] == "max_attempts"
    assert "1000" in error["limit"]
    assert "max_attempts" in error["error"]

    big = cli("enqueue", "q", json.dumps("x" * 600_000), "--json")
    assert big.code == 2
    assert big.error()["type"] == "PayloadTooLarge"
    assert big.error()["limit"] == 524_288
    assert store.queues() == []


# ----------------------------------------------------------------------------------- ls, show


def test_ls_lists_jobs_with_filters_and_pages(cli: Cli, store: redisq.Store) -> None:
    _dead(store, "a", "d1", error="Traceback (most recent call last):\n" + "x" * 200)
    store.enqueue("a", 1, id="r1", name="task_one", priority=5)
    store.enqueue("a", 2, id="s1", delay_ms=60_000)
    store.enqueue("b", 3, id="r2")

    run = cli("ls")
    assert run.code == 0
    lines = run.out.splitlines()
    assert lines[0].split() == [
        "ID",
        "QUEUE",
        "STATE",
        "NAME",
        "PRIORITY",
        "ATTEMPTS",
        "LAST",
        "ERROR",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["r1", "s1", "d1", "r2"]
    assert lines[1].split() == ["r1", "a", "ready", "task_one", "5", "0/3"]
    dead_line = lines[3]
    assert "1/1" in dead_line
    assert "Traceback (most recent call last):..." in dead_line
    assert "xxx" not in dead_line  # the error is cut to its first line

    dead = cli("ls", "a", "--state", "dead", "--json")
    assert dead.code == 0
    (document,) = dead.json()["jobs"]
    assert list(document) == JOB_FIELDS
    assert (document["id"], document["state"]) == ("d1", "dead")
    assert document["last_error"].startswith("Traceback")

    page = cli("ls", "--limit", "2", "--offset", "1", "--json")
    assert [j["id"] for j in page.json()["jobs"]] == ["s1", "d1"]
    more = cli("ls", "--limit", "2")
    assert "more with --offset" in more.out

    assert cli("ls", "a", "--state", "cancelled").out == "no jobs\n"
    unknown = cli("ls", "nothing-here")
    assert (unknown.code, unknown.out) == (1, "")
    assert "no queue named 'nothing-here'" in unknown.err
    assert cli("ls", "--limit", "0").code == 2
    assert cli("ls", "--state", "lost").code == 2


def test_show_prints_every_field(cli: Cli, store: redisq.Store) -> None:
    store.enqueue("other", 0, id="x0")
    job = _dead(store, "q", "j1", error="line one\nline two")

    run = cli("show", "q", "j1")
    assert run.code == 0
    names = [line.split()[0] for line in run.out.splitlines() if not line.startswith(" ")]
    assert names == [*JOB_FIELDS, "failed_attempts"]  # (its one failed attempt: test_attempts_cli)
    assert "line two" in run.out
    assert f"finished_at_ms     {job.finished_at_ms} (" in run.out
    assert 'payload            {"n": "j1"}' in run.out

    document = cli("show", "q", "j1", "--json").json()
    assert cli("show", "--find", "j1", "--json").json() == document
    assert len(document.pop("failed_attempts")) == 1
    assert document == {name: getattr(job, name) for name in JOB_FIELDS}


def test_show_gives_the_expiry_and_the_reason_of_an_expired_job(
    cli: Cli, store: redisq.Store
) -> None:
    # Given a job that expires in a minute (enqueued by the CLI), and one that expired
    run = cli("enqueue", "q", "1", "--id", "later", "--expires-ms", "60000", "--json")
    assert run.code == 0
    assert store.expires_at("q", "later") == run.json()["created_at_ms"] + 60_000
    store.enqueue("q", 2, id="gone", expires_ms=1)

    def expired() -> bool:
        store.reap("q")
        job = store.get("q", "gone")
        return job is not None and job.state is JobState.CANCELLED

    wait_for(expired, timeout=10)

    # Then show says when the first expires, and why the second was cancelled
    shown = cli("show", "q", "later")
    assert "expires  " in shown.out
    assert "cancelled if not started by then" in shown.out
    assert cli("show", "q", "later", "--json").json()["expires_at_ms"] == store.expires_at(
        "q", "later"
    )
    gone = cli("show", "q", "gone", "--json").json()
    assert (gone["state"], gone["reason"], gone["last_error"]) == (
        "cancelled",
        "expired",
        "expired",
    )
    assert "reason" in cli("show", "q", "gone").out

    # And stats counts the expired job
    stats = cli("stats", "--json").json()
    assert stats["totals"]["q"]["expired"] == 1
    assert "q: 1 jobs expired" in cli("stats").out


def test_enqueue_takes_the_dedupe_windows(cli: Cli, store: redisq.Store) -> None:
    first = cli("enqueue", "q", "1", "--unique-key", "k", "--throttle-ms", "60000", "--json")
    again = cli("enqueue", "q", "2", "--unique-key", "k", "--throttle-ms", "60000", "--json")
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["payload"] == 1
    first = cli("enqueue", "q", "1", "--unique-key", "d", "--debounce-ms", "60000", "--json")
    again = cli("enqueue", "q", "2", "--unique-key", "d", "--debounce-ms", "60000", "--json")
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["payload"] == 2
    assert again.json()["state"] == "scheduled"
    refused = cli("enqueue", "q", "3", "--throttle-ms", "100")
    assert refused.code != 0
    assert "unique_key" in refused.err


def test_show_missing_job_exits_1(cli: Cli, store: redisq.Store) -> None:
    store.enqueue("q", 0, id="here")
    run = cli("show", "q", "nope")
    assert (run.code, run.out) == (1, "")
    assert "no job 'nope' in queue 'q'" in run.err

    found = cli("show", "--find", "nope", "--json")
    assert (found.code, found.out) == (1, "")
    assert found.error()["exit_code"] == 1
    assert "no job 'nope' in any queue" in found.error()["error"]

    assert cli("show", "q").code == 2
    assert cli("show", "q", "here", "--find", "here").code == 2


# -------------------------------------------------------------------------------------- stats


def test_stats_counts_every_state(cli: Cli, store: redisq.Store) -> None:
    _dead(store, "a", "d1")
    store.enqueue("a", 1)
    store.enqueue("a", 2, delay_ms=60_000)
    store.enqueue("b", 3)
    store.claim("b", worker="w")

    run = cli("stats")
    assert run.code == 0
    lines = run.out.splitlines()
    assert lines[0].split() == ["QUEUE", *(s.upper() for s in STATES)]
    # The last column is WAITING (jobs held for dependencies).
    assert lines[1].split() == ["a", "1", "1", "0", "0", "1", "0", "0"]
    assert lines[2].split() == ["b", "0", "0", "1", "0", "0", "0", "0"]
    assert lines[3].split() == ["(total)", "1", "1", "1", "0", "1", "0", "0"]

    document = cli("stats", "--json").json()
    for name in ("a", "b"):
        assert document["queues"][name] == {str(s): n for s, n in store.counts(name).items()}
    assert document["total"] == {str(s): n for s, n in store.counts().items()}
    assert document["totals"]["a"] == store.totals("a")

    only_b = cli("stats", "b", "--json").json()
    assert list(only_b["queues"]) == ["b"]
    assert cli("stats", "--count", "2").code == 2
    assert cli("stats", "--watch", "0").code == 2


def _enqueue_and_ack_between_refreshes(
    store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> list[float]:
    """Make the live view's wait enqueue 6 jobs and complete 2, then wait as asked."""
    waits: list[float] = []

    def pause(seconds: float) -> None:
        waits.append(seconds)
        store.enqueue_many("q", list(range(6)))
        store.ack_many(store.claim("q", worker="w", count=2))
        _pause(seconds)

    _pause = _stats._pause
    monkeypatch.setattr(_stats, "_pause", pause)
    return waits


def test_stats_watch_prints_blocks_with_rates(
    cli: Cli, store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.enqueue("q", 0)
    waits = _enqueue_and_ack_between_refreshes(store, monkeypatch)

    run = cli("stats", "--watch", "0.05", "--count", "2")
    assert run.code == 0
    assert len(waits) == 1  # two refreshes, one wait between them
    assert "\x1b" not in run.out  # not a terminal: plain blocks, one after the other
    first, second = run.out.split("\n\n")
    header = [*(s.upper() for s in STATES), "ENQUEUED/S", "COMPLETED/S", "RETRIED/S", "DEAD/S"]
    for block in (first, second):
        assert "every 0.05 s" in block.splitlines()[0]
        assert block.splitlines()[1].split() == ["QUEUE", *header]
    # (the seventh state column is WAITING)
    first_row = first.splitlines()[2].split()
    assert first_row == ["q", "1", "0", "0", "0", "0", "0", "0", "-", "-", "-", "-"]
    row = second.splitlines()[2].split()
    assert row[:8] == ["q", "5", "0", "0", "2", "0", "0", "0"]
    enqueued, completed, retried, dead = (float(v.replace(",", "")) for v in row[8:])
    assert enqueued == pytest.approx(3 * completed, rel=0.01)
    assert completed > 0
    assert (retried, dead) == (0.0, 0.0)


def test_stats_watch_json_gives_one_document_per_refresh(
    cli: Cli, store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.enqueue("q", 0)
    _enqueue_and_ack_between_refreshes(store, monkeypatch)

    run = cli("stats", "--watch", "0.05", "--count", "2", "--json")
    assert run.code == 0
    first, second = (json.loads(line) for line in run.out.splitlines())
    assert (first["rates"], first["seconds"]) == (None, None)
    assert second["seconds"] >= 0.05
    rates = second["rates"]["q"]
    assert rates["enqueued"] == pytest.approx(6 / second["seconds"])
    assert rates["completed"] == pytest.approx(2 / second["seconds"])
    assert (rates["retried"], rates["dead"]) == (0, 0)
    assert second["total_rates"] == rates
    assert second["totals"]["q"]["enqueued"] - first["totals"]["q"]["enqueued"] == 6
    assert second["queues"]["q"]["ready"] == 5


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stats_watch_redraws_in_place_on_a_terminal(
    cli: Cli, store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.enqueue("q", 0)
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "200")
    assert cli("stats", "--watch", "0.05", "--count", "3").code == 0
    shown = screen.getvalue()
    assert not shown.startswith("\x1b")
    # Each redraw moves up over the 3 lines of the previous block, then clears below.
    assert shown.count("\x1b[3F\x1b[J") == 2

    narrow = _Terminal()
    monkeypatch.setattr(sys, "stdout", narrow)
    monkeypatch.setenv("COLUMNS", "60")
    assert cli("stats", "--watch", "0.05", "--count", "2").code == 0
    # The 110-column table lines wrap: title 1 line, header and row 2 lines each.
    assert narrow.getvalue().count("\x1b[5F\x1b[J") == 1


def test_stats_watch_ends_on_ctrl_c_with_exit_0(
    cli: Cli, store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.enqueue("q", 0)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_stats, "_pause", interrupt)
    run = cli("stats", "--watch", "1")
    assert (run.code, run.err) == (0, "")
    assert [line.split()[0] for line in run.out.splitlines()].count("QUEUE") == 1


# --------------------------------------------------------------------------------- management


def test_retry_dead_by_id_and_by_limit(cli: Cli, store: redisq.Store) -> None:
    for job_id in ("d1", "d2", "d3"):
        _dead(store, "q", job_id)

    run = cli("retry-dead", "q", "--id", "d2")
    assert (run.code, run.out) == (0, "1 dead job of queue q back to ready\n")
    d2 = store.get("q", "d2")
    assert d2 is not None
    assert (d2.state, d2.attempts) == (JobState.READY, 0)

    limited = cli("retry-dead", "q", "--limit", "1", "--json")
    assert limited.json() == {"queue": "q", "retried": 1}
    assert store.counts("q")[JobState.DEAD] == 1
    rest = cli("retry-dead", "q", "--json")
    assert rest.json() == {"queue": "q", "retried": 1}
    assert store.counts("q")[JobState.READY] == 3


def test_purge_needs_yes(cli: Cli, store: redisq.Store) -> None:
    _dead(store, "q", "d1")
    store.enqueue_many("q", [1, 2, 3])

    refused = cli("purge", "q")
    assert refused.code == 2
    assert "--yes" in refused.err
    assert cli("purge", "q", "--json").error()["exit_code"] == 2
    assert store.counts("q")[JobState.READY] == 3

    dead = cli("purge", "q", "--state", "dead", "--yes", "--json")
    assert dead.json() == {"queue": "q", "state": "dead", "purged": 1}
    assert store.counts("q")[JobState.DEAD] == 0
    assert store.counts("q")[JobState.READY] == 3

    everything = cli("purge", "q", "--yes")
    assert (everything.code, everything.out) == (0, "purged 3 jobs (all states) of queue q\n")
    assert set(store.counts("q").values()) == {0}


def test_pause_and_resume(cli: Cli, store: redisq.Store) -> None:
    store.enqueue("q", 1, id="j")
    paused = cli("pause", "q", "--json")
    assert paused.json() == {"queue": "q", "paused": True}
    assert store.claim("q", worker="w") == []

    resumed = cli("resume", "q")
    assert (resumed.code, resumed.out) == (0, "resumed queue q\n")
    assert [job.id for job in store.claim("q", worker="w")] == ["j"]


def test_reap_returns_expired_leases(cli: Cli, store: redisq.Store) -> None:
    store.enqueue("a", 1, id="ja")
    store.enqueue("b", 2, id="jb", max_attempts=1)
    store.enqueue("c", 3, id="jc")
    (ja,) = store.claim("a", worker="w", lease_ms=1)
    (jb,) = store.claim("b", worker="w", lease_ms=1)
    store.claim("c", worker="w", lease_ms=60_000)
    deadline = max(ja.lease_deadline_ms or 0, jb.lease_deadline_ms or 0)
    wait_for(lambda: _server_ms(store) > deadline, message="the leases to expire")

    run = cli("reap", "--json")
    assert run.json() == {"reaped": {"a": 1, "b": 1, "c": 0}, "total": 2}
    a, b = store.get("a", "ja"), store.get("b", "jb")
    assert a is not None
    assert (a.state, a.attempts) == (JobState.READY, 1)
    assert b is not None
    assert b.state is JobState.DEAD
    assert store.counts("c")[JobState.LEASED] == 1

    again = cli("reap", "a", "c", "--limit", "5")
    assert again.code == 0
    assert again.out.splitlines()[-1] == "0 expired leases reaped"


# ---------------------------------------------------------------------------------- failures


def test_redisq_errors_exit_1(cli: Cli, store: redisq.Store) -> None:
    store.enqueue("q", 1)
    store.redis.hset(QueueKeys.build(store.prefix, "q").meta, "schema", "999")
    run = cli("enqueue", "q", "2")
    assert (run.code, run.out) == (1, "")
    assert "schema version 999" in run.err
    as_json = cli("pause", "q", "--json")
    assert as_json.code == 1
    assert as_json.error()["type"] == "SchemaVersionError"


def test_unreachable_server_exits_3_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    assert main(["stats", "--url", url]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "cannot reach the server at redis://:***@127.0.0.1:" in err
    assert "s3cret" not in err

    assert main(["enqueue", "q", "1", "--url", url, "--json"]) == 3
    error = json.loads(capsys.readouterr().err)
    assert error["exit_code"] == 3
    assert "s3cret" not in json.dumps(error)


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("no-such-command", connect=False).code == 2
    assert cli(connect=False).code == 2
    assert cli("ls", "--url", "ftp://x", connect=False).code == 2
    bad_prefix = cli("ls", "--prefix", "a{b}", "--json", connect=False)
    assert (bad_prefix.code, bad_prefix.error()["field"]) == (2, "prefix")
    json_usage = cli("ls", "--bogus", "--json")
    assert json_usage.code == 2
    assert "unrecognized arguments" in json_usage.error()["error"]


def test_url_and_prefix_come_from_the_environment(
    real_url: str, prefix: str, store: redisq.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDISQ_URL", real_url)
    monkeypatch.setenv("REDISQ_PREFIX", prefix)
    assert main(["enqueue", "envq", "1", "--id", "e1"]) == 0
    assert store.get("envq", "e1") is not None


def test_help_documents_every_command_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    commands = ["enqueue", "ls", "show", "stats", "retry-dead", "purge", "pause", "resume"]
    commands += ["reap", "server", "demo"]
    for command in commands:
        assert f"    {command}" in text
    for code in ("0  success", "1  the operation failed", "2  usage error", "3  cannot reach"):
        assert code in text
    for command in commands:
        assert main([command, "--help"]) == 0
        assert f"usage: redisq {command}" in capsys.readouterr().out


def _summary(text: str) -> dict[str, int]:
    """The demo's summary rows whose value is a plain count."""
    rows = re.findall(r"^(completed|retried|dead-lettered)\b.*?([\d,]+)$", text, re.MULTILINE)
    return {key: int(value.replace(",", "")) for key, value in rows}


def test_demo_runs_every_job_to_its_end(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given 200 jobs: 1 in 20 fails its first attempt (job numbers 3, 23, ...), job 7 fails
    # every attempt (3 runs) and job 17 raises a non-retryable error
    # When the demo runs them with 4 worker threads
    assert main(["demo", "--url", url, "--jobs", "200", "--workers", "4"]) == 0
    text = capsys.readouterr().out
    summary = _summary(text)
    # Then every job is final, and the failures were retried or dead-lettered as designed
    assert summary["completed"] + summary["dead-lettered"] == 200
    assert summary == {"completed": 198, "retried": 12, "dead-lettered": 2}
    assert re.search(r"^pickup latency p99 +[\d,]+ ms$", text, re.MULTILINE)
    assert "200/200" in text  # the progress line's last state
    # And the demo deleted its keys
    if not url.startswith("memory://"):
        client = redis.Redis.from_url(url)
        try:
            assert client.keys("demo-*") + client.keys("{demo-*") == []
        finally:
            client.close()


def test_demo_rejects_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------- subprocesses


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "redisq", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(stream: io.TextIOBase | Any) -> queue.Queue[str]:
    """Read a pipe's lines on a thread, so the test can wait for one with a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_python_m_redisq_and_the_console_script(real_url: str, prefix: str) -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "redisq"]
    assert script.value == "redisq.cli:main"
    assert script.load() is main

    process = _spawn(
        "enqueue", "q", '{"a": 1}', "--id", "p1", "--url", real_url, "--prefix", prefix
    )
    try:
        out, err = process.communicate(timeout=20)
    finally:
        _stop(process)
    assert (process.returncode, out, err) == (0, "p1 ready (queue q)\n", "")
    with redisq.connect(real_url, prefix=prefix) as store:
        job = store.get("q", "p1")
    assert job is not None
    assert job.payload == {"a": 1}


def test_stats_watch_stops_on_sigint_with_exit_0(
    real_url: str, prefix: str, store: redisq.Store
) -> None:
    store.enqueue("q", 1)
    process = _spawn("stats", "--watch", "0.05", "--url", real_url, "--prefix", prefix)
    # stderr is read all along, so the child can never block on a full pipe; its lines go in
    # the failure message (why the process did not stop).
    errors = _lines(process.stderr)
    try:
        lines = _lines(process.stdout)
        deadline = Deadline(20)
        while not lines.get(timeout=deadline.remaining()).startswith("q "):
            pass
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        err = "".join(errors.get_nowait() for _ in range(errors.qsize()))
        assert code == 0, f"exit {code} after SIGINT; stderr: {err[-2000:]!r}"
    finally:
        _stop(process)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_runs_until_sigterm() -> None:
    process = _spawn("server", "--json")
    pid = None
    try:
        lines = _lines(process.stdout)
        started = json.loads(lines.get(timeout=20))
        pid = started["pid"]
        assert started["url"] == f"redis://127.0.0.1:{started['port']}"
        with redisq.connect(started["url"], prefix="cli-server") as store:
            assert store.enqueue("q", {"x": 1}, id="s1").state is JobState.READY
            assert store.get("q", "s1") is not None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not _alive(pid)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", started["port"]), timeout=5).close()
    finally:
        _stop(process)
        if pid is not None and _alive(pid):  # never leave a server behind, even on failure
            os.kill(pid, signal.SIGKILL)


def test_server_text_output_tells_how_to_use_it() -> None:
    process = _spawn("server")
    try:
        lines = _lines(process.stdout)
        text = "".join(lines.get(timeout=20) for _ in range(3))
        assert "listening on redis://127.0.0.1:" in text
        assert "export REDISQ_URL=redis://127.0.0.1:" in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        _stop(process)


def test_server_without_a_binary_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redisq.embedded, "find_server_binary", lambda: None)
    assert main(["server"]) == 1
    assert "no server binary" in capsys.readouterr().err


def test_server_on_a_taken_port_exits_1(
    real_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["server", "--port", str(real_server.port)]) == 1
    assert f"port {real_server.port}" in capsys.readouterr().err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_stats_and_show_say_what_a_rate_limit_holds_back(cli: Cli, store: redisq.Store) -> None:
    for i in range(3):
        store.enqueue("api", i, id=f"a{i}")
    store.enqueue("free", 0, id="f0")
    store.set_rate_limit("api", "1/h")
    assert [j.id for j in store.claim("api", worker="w", count=3)] == ["a0"]

    run = cli("stats")
    assert run.code == 0
    assert "rate limit of api: 1/h; 2 ready held back until " in run.out
    assert "free" not in run.out.split("rate limit", 1)[1]
    document = json.loads(cli("stats", "--json").out)
    limit = document["rate_limits"]["api"]
    assert (limit["limit"], limit["held"]) == ("1/h", 2)
    assert limit["held_until_ms"] > document["time_ms"]
    assert "free" not in document["rate_limits"]

    shown = cli("show", "api", "a1")
    assert "its queue's rate limit (1/h) holds it back: the next job may start at" in shown.out
    assert "waiting" in json.loads(cli("show", "api", "a1", "--json").out)
    assert "waiting" not in cli("show", "free", "f0").out
