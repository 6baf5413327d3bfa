"""Every chaos scenario by name, each on a private server: `run_scenario("S2", seed, run_dir)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support.servers import ServerProcess, redis_binary, valkey_binary

from .checker import Report
from .fleet_scenarios import S1, S2, S15, FleetScenario, run_fleet

__all__ = ["SCENARIOS", "run_scenario", "server_binary"]


def server_binary(flavor: str) -> str:
    """The server binary of `flavor` ("valkey" or "redis7").

    Raises:
        RuntimeError: it is not installed.
    """
    binary = valkey_binary() if flavor == "valkey" else redis_binary()
    if binary is None:
        raise RuntimeError(
            f"no {flavor} server binary here (make venv; apt-get install redis-server)"
        )
    return binary


def _fleet(scenario: FleetScenario) -> Callable[[int, Path, str, Sequence[str]], Report]:
    def run(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
        with ServerProcess(server_binary(flavor), appendonly=True, appendfsync="always") as server:
            return run_fleet(scenario, seed, run_dir, server, sabotage=sabotage).report

    return run


SCENARIOS: dict[str, Callable[[int, Path, str, Sequence[str]], Report]] = {
    "S1": _fleet(S1),
    "S2": _fleet(S2),
    "S15": _fleet(S15),
}


def run_scenario(
    name: str, seed: int, run_dir: Path, *, server: str = "valkey", sabotage: Sequence[str] = ()
) -> Report:
    """Run one scenario by name and return the checker's report (figures included)."""
    return SCENARIOS[name](seed, run_dir, server, sabotage)
