"""Proofs that the checker fails when fencing, the reaper or claim are broken.

Each sabotage (`tests.chaos.sabotage`) loads a deliberately broken copy of a script; the same
runs with the real scripts pass. The duels are S6 rounds (A claims, pauses past its lease
behind a frozen proxy, B takes the job over, A tries again); the fleet proof runs real worker
processes, one of them stopped past its lease, with an ack that ignores the token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.checker import Report
from tests.chaos.fleet_scenarios import FleetScenario, run_fleet
from tests.chaos.sabotage import SABOTAGES
from tests.chaos.store_scenarios import run_s6
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.chaos

#: What each broken script must make the checker report (at least these invariants).
EXPECTED = {
    "ack-no-fence": {"I2", "I4"},  # A's late ack completes the job a second time
    "renew-no-fence": {"I3", "I4"},  # A's late renew extends its lease over B's
    "reap-early": {"I3"},  # B's claim reaps A's live lease and takes the job
    "reaper-off": {"I1", "I5"},  # the expired lease never comes back: the job is stranded
    "claim-keeps-ready": {"I3"},  # B's claim leases the job A still holds
    "claim-same-token": {"I4"},  # B gets A's token, so A's late ack passes the fence
}
#: The dependency sabotages, proved on a small S16 run (tests/chaos/test_s16.py).
DAG_EXPECTED = {
    "deps-release-early": {"D2"},  # a child starts before its other parents completed
    "deps-deliver-lost": {"D1", "D3"},  # cross-queue children stay waiting
}
#: Sabotages under which B tries to claim while A's lease is still valid.
EARLY_CLAIM = {"reap-early", "claim-keeps-ready"}


def _duels(server: ServerProcess, run_dir: Path, sabotage: tuple[str, ...], early: bool) -> Report:
    return run_s6(
        1,
        run_dir,
        server.url,
        server.port,
        rounds=2,
        lease_ms=200,
        pause=(1.5, 2.0),
        sabotage=sabotage,
        b_waits_for_expiry=not early,
        b_gives_up_s=1.0,
    )


def test_every_sabotage_has_a_proof() -> None:
    assert set(EXPECTED) | set(DAG_EXPECTED) == set(SABOTAGES)


@pytest.mark.parametrize("sabotage", sorted(EXPECTED))
def test_the_checker_catches_a_broken_script(
    sabotage: str, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Given S6 duels run on a deliberately broken copy of a script
    server = make_server("valkey")
    report = _duels(server, tmp_path, (sabotage,), sabotage in EARLY_CLAIM)

    # Then the checker reports the violation
    assert EXPECTED[sabotage] <= set(report.failed()), (
        f"{SABOTAGES[sabotage].what}: expected {sorted(EXPECTED[sabotage])}, got:\n"
        + report.describe()
    )


@pytest.mark.parametrize("early", [False, True], ids=["after-expiry", "early-claim"])
def test_the_same_duels_pass_with_the_real_scripts(
    early: bool, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server("valkey")
    report = _duels(server, tmp_path, (), early)
    assert report.ok, report.describe()
    assert report.figures["scenario_figures"]["refused"] == 8  # 4 late calls by A per round


#: Two workers running slow jobs (twice the lease), one stopped past its lease every 2 s.
FENCING_FLEET = FleetScenario(
    "P1",
    "proof: stopped workers",
    jobs=6,
    workers=2,
    concurrency=1,
    lease_ms=500,
    reaper_ms=200,
    rate=3.0,
    mix={"slow": 1.0},
    kill_every=None,
    stop_every=2.0,
    stop_for=1.5,
    drop_every=None,
    server_restarts=(),
    drain_s=60.0,
)


@pytest.mark.slow
@pytest.mark.parametrize("sabotage", [None, "ack-no-fence"], ids=["real", "ack-no-fence"])
def test_the_checker_catches_workers_acking_without_fencing(
    sabotage: str | None, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Given real worker processes, one stopped past its lease every 2 s
    server = make_server("valkey", appendonly=True)
    broken = [sabotage] if sabotage else []
    report = run_fleet(FENCING_FLEET, 3, tmp_path, server, sabotage=broken, log=print).report

    if sabotage is None:
        # Then with the real scripts the stopped workers' late calls are refused
        assert report.ok, report.describe()
        assert report.figures["stops_followed_by_refusal"] >= 1, report.describe()
    else:
        # ... and with an ack that ignores the token, their late acks are reported as stale
        # and as second completions
        assert report.figures["stale_acks_accepted"] >= 1, report.describe()
        assert {"I2", "I4"} <= set(report.failed()), report.describe()
