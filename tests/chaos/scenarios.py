"""Every chaos scenario by name, each on a private server: `run_scenario("S2", seed, run_dir)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support.cluster import ClusterProcess
from tests.support.servers import ServerProcess, redis_binary, valkey_binary

from .checker import Report
from .dag import S16D, run_s16, run_s16_cluster
from .fleet_scenarios import S1, S2, S15, FleetScenario, run_fleet, run_s3, run_s8, run_s10
from .store_scenarios import run_s6, run_s7

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


def _s8(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ServerProcess(server_binary(flavor), appendonly=True, appendfsync="always") as server:
        return run_s8(seed, run_dir, server)


def _s10(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ServerProcess(server_binary(flavor)) as server:
        return run_s10(seed, run_dir, server)


def _s3(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    extra = ["--cluster-require-full-coverage", "no", "--appendonly", "yes"]
    extra += ["--appendfsync", "always"]
    with ClusterProcess(server_binary(flavor), extra_args=extra) as cluster:
        return run_s3(seed, run_dir, cluster)


def _s6(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ServerProcess(server_binary(flavor)) as server:
        return run_s6(seed, run_dir, server.url, server.port, sabotage=tuple(sabotage))


def _s7(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ServerProcess(server_binary(flavor)) as server:
        return run_s7(seed, run_dir, server.url, server.port)


def _s16(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ServerProcess(server_binary(flavor)) as server:
        return run_s16(seed, run_dir, server, sabotage=sabotage).report


def _s16d(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ServerProcess(server_binary(flavor)) as server:
        return run_s16(seed, run_dir, server, scenario=S16D, sabotage=sabotage).report


def _s16c(seed: int, run_dir: Path, flavor: str, sabotage: Sequence[str]) -> Report:
    with ClusterProcess(server_binary(flavor)) as cluster:
        return run_s16_cluster(seed, run_dir, cluster, sabotage=sabotage).report


SCENARIOS: dict[str, Callable[[int, Path, str, Sequence[str]], Report]] = {
    "S1": _fleet(S1),
    "S2": _fleet(S2),
    "S3": _s3,
    "S6": _s6,
    "S7": _s7,
    "S8": _s8,
    "S10": _s10,
    "S15": _fleet(S15),
    "S16": _s16,
    "S16C": _s16c,
    "S16D": _s16d,
}


def run_scenario(
    name: str, seed: int, run_dir: Path, *, server: str = "valkey", sabotage: Sequence[str] = ()
) -> Report:
    """Run one scenario by name and return the checker's report (figures included)."""
    return SCENARIOS[name](seed, run_dir, server, sabotage)
