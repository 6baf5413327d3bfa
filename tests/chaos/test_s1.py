"""S1, the smoke chaos run of every CI run (reliability plan 4.2, on this 2-core machine).

2,000 jobs at 50/s through 4 worker processes x 2 handlers (lease 2 s, reaper 0.5 s), with
kill -9 of a worker every 5 s, a 5 s SIGSTOP every 15 s, every connection reset through the
proxy every 10 s, and a kill -9 of the server (AOF, appendfsync always) at 50% of the jobs,
restarted on the same port and folder. The checker asserts I1-I9.

The seed is random and printed; replay a failure with ``REDISQ_CHAOS_SEED=<seed>`` (or
``make chaos SCENARIOS=S1 SEED=<seed>``, which prints the figures).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.figures import block
from tests.chaos.fleet_scenarios import S1, run_fleet
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.chaos

SEED_ENV = "REDISQ_CHAOS_SEED"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_s1_smoke_chaos(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.randrange(1, 1_000_000))
    replay = f"{SEED_ENV}={seed} pytest tests/chaos/test_s1.py"
    print(f"S1 seed {seed} (replay: {replay})")
    server = make_server("valkey", appendonly=True, appendfsync="always")

    outcome = run_fleet(S1, seed, tmp_path, server)

    print(block(outcome.report, replay))
    assert outcome.report.ok, (
        f"S1 seed {seed} failed (replay: {replay}); ledger in {tmp_path}\n"
        + outcome.report.describe()
    )
    assert outcome.drained_s is not None
