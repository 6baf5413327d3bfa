"""The peer benchmark (bench/peers/run.py) in its smoke mode, and its exactly-once check.

The smoke run builds (or reuses) the venvs of redisq's three representative peers under
.bench-peers/ from their pinned requirements (PyPI) and runs the whole protocol with 500 jobs:
single and bulk enqueue, drains with 1 and 2 worker processes, pickups, idle window, the
Markdown table and the PNG chart. Its figures are not asserted (speed is measured, never
asserted); only that every queue ran every job exactly once and every figure was produced.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import redis_binary

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "peers" / "run.py"
#: redisq (and its tuned row) beside a thread-pool worker with a Lua broker (dramatiq), the
#: simplest BRPOP queue (huey) and an asyncio queue (saq): their venvs build in seconds.
SMOKE_QUEUES = "redisq,dramatiq,huey,saq"
FIGURES = (
    "single",
    "bulk",
    "drain1",
    "drain2",
    "p50_ms",
    "p99_ms",
    "commands_per_job",
    "server_cpu_us_per_job",
    "idle_commands_per_s",
    "peak_rss_mib",
)
IN_CI = (os.environ.get("CI") or "").strip().lower() in {"1", "true", "yes", "on", "y"}


def _redis_server() -> str:
    """Debian's redis-server, which the benchmark runs against (CI installs it)."""
    binary = redis_binary()
    if binary is None:
        message = "redis-server not found on PATH: apt-get install redis-server"
        if IN_CI and shutil.which("apt-get") is not None:
            pytest.fail(f"{message} (required here because CI is set)", pytrace=False)
        pytest.skip(message)
    return binary


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_run_measures_every_queue_and_every_job_runs_once(tmp_path: Path) -> None:
    # Given the smoke sizes and the representative peers
    server = _redis_server()
    # When the harness runs them all, interleaved, against one private server
    done = _run(
        "--smoke",
        "--queues",
        SMOKE_QUEUES,
        "--redis-server",
        server,
        "--out",
        str(tmp_path),
        timeout=840,
    )
    # Then it succeeds, and every row has every figure and ran each job exactly once
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads((tmp_path / "peers.json").read_text())
    rows = {row["key"]: row for row in data["summary"]}
    assert sorted(rows) == sorted(["redisq", "redisq-tuned", "dramatiq", "huey", "saq"])
    for key, row in rows.items():
        assert row["exactly_once"], (key, row["failures"])
        for figure in FIGURES:
            assert isinstance(row[figure], float | int), (key, figure, row[figure])
            assert row[figure] >= 0, (key, figure, row[figure])
        for figure in ("single", "bulk", "drain1", "drain2", "p50_ms"):
            assert row[figure] > 0, (key, figure)
    assert data["meta"]["jobs"] == 500
    assert rows["redisq-tuned"]["settings"] == {"concurrency": 4, "prefetch": 500}
    # And the table names the machine, the command and the date; the chart is a PNG
    table = (tmp_path / "peers.md").read_text()
    assert "| redisq, defaults |" in table
    assert "| redisq, concurrency 4, prefetch 500 |" in table
    for header in ("- Machine: ", "- Command: `make bench-peers", "- Date: "):
        assert header in table
    assert (tmp_path / "peers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_queue_that_runs_a_job_twice_is_reported_as_failing(tmp_path: Path) -> None:
    # Given a queue whose worker runs every seventh job twice
    server = _redis_server()
    broken = Path(__file__).resolve().parent / "dup_queue"
    # When the harness runs it
    done = _run(
        "--queues",
        "",
        "--adapter",
        f"dup={broken}",
        "--jobs",
        "50",
        "--rounds",
        "1",
        "--pickups",
        "3",
        "--idle-seconds",
        "0.2",
        "--no-chart",
        "--redis-server",
        server,
        "--out",
        str(tmp_path),
        "--cache",
        str(tmp_path / "cache"),
        timeout=100,
    )
    # Then the run fails, and the table says which queue and why
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    [row] = json.loads((tmp_path / "peers.json").read_text())["summary"]
    assert not row["exactly_once"]
    assert any("8 jobs ran more than once" in f for f in row["failures"]), row["failures"]
    table = (tmp_path / "peers.md").read_text()
    assert "| dup |" in table
    assert "**NO**" in table
    assert "- dup: drain, 1 process: 8 jobs ran more than once" in table
