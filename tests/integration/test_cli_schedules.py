"""`redisq schedules`, `redisq schedule add|rm|pause|resume|run-now` and `redisq scheduler`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import redisq
from redisq.cli import main
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Run]


@pytest.fixture
def store(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    connected = redisq.connect(real_url, prefix=prefix)
    yield connected
    connected.close()


@pytest.fixture
def cli(real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main([*argv, "--url", real_url, "--prefix", prefix])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def test_add_list_pause_resume_run_now_and_remove(cli: Cli, store: redisq.Store) -> None:
    added = cli(
        "schedule", "add", "nightly", "--cron", "0 3 * * *", "--tz", "Europe/Paris",
        "--queue", "jobs", "--payload", '{"a": 1}', "--options", '{"priority": 5}',
    )  # fmt: skip
    assert added.code == 0, added.err
    assert "schedule nightly of queue jobs stored (0 3 * * *, Europe/Paris)" in added.out
    [s] = store.schedules("jobs")
    assert (s.cron, s.tz, s.payload, s.options) == (
        "0 3 * * *",
        "Europe/Paris",
        {"a": 1},
        {"priority": 5},
    )
    # The same again changes nothing.
    again = cli(
        "schedule", "add", "nightly", "--cron", "0 3 * * *", "--tz", "Europe/Paris",
        "--queue", "jobs", "--payload", '{"a": 1}', "--options", '{"priority": 5}', "--json",
    )  # fmt: skip
    assert again.json()["digest"] == s.digest
    listed = cli("schedules")
    assert listed.code == 0
    header, row = listed.out.splitlines()
    assert header.split()[:4] == ["ID", "QUEUE", "CRON/EVERY", "TZ"]
    assert row.startswith("nightly")
    assert "Europe/Paris" in row
    assert row.split()[-1] == "no"
    assert cli("schedules", "jobs", "--json").json()[0]["id"] == "nightly"
    assert cli("schedule", "pause", "nightly", "--queue", "jobs").code == 0
    assert store.schedules("jobs")[0].paused
    assert cli("schedules").out.splitlines()[1].split()[-1] == "yes"
    assert cli("schedule", "resume", "nightly", "--queue", "jobs").code == 0
    assert not store.schedules("jobs")[0].paused
    ran = cli("schedule", "run-now", "nightly", "--queue", "jobs", "--json")
    job = store.get("jobs", ran.json()["job"])
    assert job is not None
    assert (job.payload, job.priority) == ({"a": 1}, 5)
    assert cli("schedule", "rm", "nightly", "--queue", "jobs").code == 0
    assert store.schedules("jobs") == []
    assert cli("schedules").out.strip() == f"no schedules in prefix {store.prefix}"


def test_errors_are_one_line_with_the_house_exit_codes(cli: Cli, store: redisq.Store) -> None:
    bad = cli("schedule", "add", "x", "--cron", "99 * * * *")
    assert bad.code == 2
    assert bad.err.count("\n") == 1
    assert "cron" in bad.err
    bad_tz = cli("schedule", "add", "x", "--every-ms", "1000", "--tz", "Nowhere/X", "--json")
    assert bad_tz.code == 2
    assert json.loads(bad_tz.err)["field"] == "tz"
    assert store.schedules() == []
    for action in ("rm", "pause", "resume", "run-now"):
        missing = cli("schedule", action, "ghost")
        assert missing.code == 1, action
        assert "ghost" in missing.err
        assert missing.err.count("\n") == 1


def test_the_scheduler_drives_schedules_apart_from_workers(
    real_url: str, prefix: str, store: redisq.Store
) -> None:
    store.upsert_schedule("beat", every_ms=100, queue="sq", limit=3, missed="all")
    proc = subprocess.Popen(
        [sys.executable, "-m", "redisq", "scheduler", "--queues", "sq", "--url", real_url,
         "--prefix", prefix],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: store.schedules("sq")[0].next_run_ms is None, 30)
        assert store.counts("sq")[redisq.JobState.READY] == 3  # enqueued, not run
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"driving the schedules of sq" in err
