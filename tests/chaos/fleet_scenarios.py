"""Scenarios with worker processes under chaos: S1 (CI smoke), S2 (full), S15 (script cache loss),
S3 (cluster).

A `FleetScenario` is the numbers of one scenario (reliability plan, section 4.2, scaled to fit
this machine where said); `run_fleet` runs it against a server it is given and returns the
checker's report with the run's figures:

    outcome = run_fleet(S1, seed=7, run_dir=tmp, server=ServerProcess(binary, appendonly=True))
    assert outcome.report.ok, outcome.report.describe()
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import redis

import redisq
from tests.support.proxy import TcpProxy

from .checker import Limits, Report, check, save_run
from .harness import (
    AtShare,
    Chaos,
    Fleet,
    Periodic,
    Producer,
    collect_final,
    plan_jobs,
    used_memory,
)
from .ledger import Ledger, read_ledger
from .tasks import WorkerConfig

__all__ = ["S1", "S2", "S15", "FleetScenario", "Outcome", "run_fleet"]

DEFAULT_MIX = {"normal": 0.96, "slow": 0.02, "crash": 0.01, "poison": 0.01}


class Restartable(Protocol):
    """What a scenario needs of its server (`tests.support.servers.ServerProcess`)."""

    port: int

    @property
    def url(self) -> str: ...

    def kill(self) -> None: ...

    def restart(self) -> Any: ...


@dataclass(frozen=True)
class FleetScenario:
    """The numbers of one worker-fleet scenario."""

    name: str
    title: str
    jobs: int = 2_000
    workers: int = 4
    concurrency: int = 2
    lease_ms: int = 2_000
    reaper_ms: int = 500
    max_attempts: int = 5
    #: Jobs per second over all producers.
    rate: float = 50.0
    producers: int = 1
    payload_bytes: int = 1024
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    queues: tuple[str, ...] = ("q",)
    kill_every: float | None = 5.0
    stop_every: float | None = 15.0
    stop_for: float = 5.0
    drop_every: float | None = 10.0
    delay_every: float | None = None
    delay_for: float = 1.0
    delay_s: float = 0.2
    flush_every: float | None = None
    #: Shares of the plan at which the server is killed (-9) and restarted on its AOF.
    server_restarts: tuple[float, ...] = (0.5,)
    server_down_s: float = 1.0
    #: Seconds from the producers' start until every job must be final.
    drain_s: float = 120.0

    def limits(self) -> Limits:
        """What the checker allows in this scenario."""
        return Limits(
            lease_ms=self.lease_ms,
            reaper_ms=self.reaper_ms,
            max_attempts=self.max_attempts,
            concurrency=self.concurrency,
        )

    def describe(self) -> str:
        """One line with the scenario's numbers."""
        faults = []
        if self.kill_every:
            faults.append(f"kill -9 every {self.kill_every:g} s")
        if self.stop_every:
            faults.append(f"SIGSTOP {self.stop_for:g} s every {self.stop_every:g} s")
        if self.drop_every:
            faults.append(f"drop_all every {self.drop_every:g} s")
        if self.delay_every:
            faults.append(
                f"{self.delay_s * 1000:g} ms reply latency for {self.delay_for:g} s"
                f" every {self.delay_every:g} s"
            )
        if self.flush_every:
            faults.append(f"SCRIPT FLUSH every {self.flush_every:g} s")
        if self.server_restarts:
            shares = ", ".join(f"{s:.0%}" for s in self.server_restarts)
            faults.append(f"server kill -9 + AOF restart at {shares}")
        return (
            f"{self.name} {self.title}: N={self.jobs:,}, {self.workers} workers x"
            f" {self.concurrency}, {self.rate:g} jobs/s, lease {self.lease_ms} ms, reaper"
            f" {self.reaper_ms} ms; " + "; ".join(faults)
        )


S1 = FleetScenario("S1", "smoke chaos (CI)")
S15 = replace(S1, name="S15", title="script cache loss (S1 + SCRIPT FLUSH)", flush_every=5.0)
S2 = FleetScenario(
    "S2",
    "full chaos",
    jobs=10_000,
    workers=8,
    concurrency=4,
    rate=200.0,
    producers=2,
    kill_every=3.0,
    stop_every=10.0,
    drop_every=7.0,
    delay_every=13.0,
    server_restarts=(0.4, 0.8),
    drain_s=600.0,
)


@dataclass
class Outcome:
    """One run: the checker's report, the run's figures and where its ledger is."""

    scenario: str
    seed: int
    report: Report
    run_dir: Path
    wall_s: float
    drained_s: float | None
    params: dict[str, Any] = field(default_factory=dict)


def _wait_workers(run_dir: Path, count: int, timeout: float) -> None:
    """Wait until `count` workers wrote WORKER_START (their ledger files exist and say so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = sum(
            1 for path in run_dir.glob("w*-*.jsonl") if b'"WORKER_START"' in path.read_bytes()
        )
        if started >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{count} chaos workers did not start within {timeout:g} s (see {run_dir})")


def run_fleet(
    scenario: FleetScenario,
    seed: int,
    run_dir: Path,
    server: Restartable,
    *,
    sabotage: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Outcome:
    """Run `scenario` with `seed` on `server` (AOF on, for the restarts); check it.

    The worker processes and the producer reach the server through a fault proxy; the
    checks read the server directly after the workers stopped.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    events = Ledger(run_dir, "chaos")
    prefix = "chaos"
    events.write("RUN", scenario=scenario.name, seed=seed, sabotage=list(sabotage))
    log(f"chaos {scenario.name} seed {seed}: {scenario.describe()}; ledger in {run_dir}")
    baseline = used_memory(server.url)
    proxy = TcpProxy(
        "127.0.0.1", server.port, lifetime=scenario.drain_s + 900, max_connections=1024
    )
    config = WorkerConfig(
        url=proxy.url,
        prefix=prefix,
        queues=list(scenario.queues),
        ledger=str(run_dir),
        source="w",
        seed=seed,
        lease_ms=scenario.lease_ms,
        concurrency=scenario.concurrency,
        reaper_ms=scenario.reaper_ms,
        max_attempts=scenario.max_attempts,
        sabotage=list(sabotage),
    )
    fleet = Fleet(config, scenario.workers, events)
    producers: list[Producer] = []
    chaos: Chaos | None = None
    drained: float | None = None
    try:
        fleet.start()
        _wait_workers(run_dir, scenario.workers, 60)
        plan = plan_jobs(rng, scenario.jobs, scenario.queues, scenario.mix)
        for i in range(scenario.producers):
            producers.append(
                Producer(
                    proxy.url,
                    prefix,
                    plan[i :: scenario.producers],
                    scenario.rate / scenario.producers,
                    Ledger(run_dir, f"producer{i}"),
                    lease_ms=scenario.lease_ms,
                    max_attempts=scenario.max_attempts,
                    payload_bytes=scenario.payload_bytes,
                )
            )

        def progress() -> float:
            return sum(p.sent for p in producers) / max(1, len(plan))

        chaos = Chaos(
            rng,
            _periodic(scenario, fleet, proxy, server, events),
            _at_share(scenario, server, events),
            progress,
        )
        t0 = time.monotonic()
        for producer in producers:
            producer.start()
        chaos.start()
        drained = _drain(scenario, server.url, prefix, producers, t0, log)
    finally:
        if chaos is not None:
            chaos.stop()
        for producer in producers:
            producer.stop()
        _heal(proxy, server, events)
        fleet.close()
        proxy.close()
    final = collect_final(server.url, prefix, scenario.queues, baseline)
    events.write("CHECK")
    events.close()
    save_run(run_dir, final, scenario.limits())
    report = check(read_ledger(run_dir), final, scenario.limits())
    problems = [
        *fleet.errors,
        *(chaos.errors if chaos else []),
        *(p.failure for p in producers if p.failure),
    ]
    for problem in problems:
        report.add("I1", f"the harness failed: {problem!r}")
    if drained is None:
        report.add("I1", f"not drained within {scenario.drain_s:g} s")
    wall = time.monotonic() - started
    report.figures.update(
        scenario=scenario.name,
        seed=seed,
        drained_s=drained,
        wall_s=round(wall, 1),
        producer_errors=sum(p.errors for p in producers),
        chaos_actions=len(chaos.done) if chaos else 0,
    )
    return Outcome(scenario.name, seed, report, run_dir, wall, drained)


def _periodic(
    scenario: FleetScenario, fleet: Fleet, proxy: TcpProxy, server: Restartable, events: Ledger
) -> list[Periodic]:
    periodic: list[Periodic] = []
    if scenario.kill_every:
        periodic.append(Periodic("kill", scenario.kill_every, fleet.kill))
    if scenario.stop_every:
        periodic.append(
            Periodic("stop", scenario.stop_every, lambda rng: fleet.stop(rng, scenario.stop_for))
        )
    if scenario.drop_every:

        def drop(rng: random.Random) -> None:
            events.write("DROP", n=proxy.drop_all())

        periodic.append(Periodic("drop", scenario.drop_every, drop))
    if scenario.delay_every:

        def delay(rng: random.Random) -> None:
            events.write("DELAY", seconds=scenario.delay_s, span=scenario.delay_for)
            proxy.set_latency(reply=scenario.delay_s)
            time.sleep(scenario.delay_for)  # the fault's own length
            proxy.set_latency(reply=0.0)
            events.write("DELAY_END")

        periodic.append(Periodic("delay", scenario.delay_every, delay))
    if scenario.flush_every:

        def flush(rng: random.Random) -> None:
            with contextlib.suppress(redis.RedisError), redis.Redis.from_url(server.url) as client:
                client.script_flush()
                events.write("FLUSH")

        periodic.append(Periodic("flush", scenario.flush_every, flush))
    return periodic


def _at_share(scenario: FleetScenario, server: Restartable, events: Ledger) -> list[AtShare]:
    def restart(rng: random.Random) -> None:
        events.write("SERVER_KILL", port=server.port)
        server.kill()
        time.sleep(scenario.server_down_s)  # the outage's own length
        server.restart()
        events.write("SERVER_UP", port=server.port)

    return [
        AtShare(f"server restart at {share:.0%}", share, restart)
        for share in scenario.server_restarts
    ]


def _drain(
    scenario: FleetScenario,
    url: str,
    prefix: str,
    producers: Sequence[Producer],
    t0: float,
    log: Callable[[str], None],
) -> float | None:
    """Wait until the producers are done and every job is final; return the seconds taken."""
    store = redisq.connect(url, prefix=prefix, socket_timeout=2, socket_connect_timeout=2)
    last_log = t0
    try:
        while time.monotonic() - t0 < scenario.drain_s:
            time.sleep(0.25)
            if not all(p.done for p in producers):
                continue
            try:
                counts = [store.counts(q) for q in scenario.queues]
            except redis.RedisError:
                continue
            left = sum(
                c.get(state, 0)
                for c in counts
                for state in (
                    redisq.JobState.READY,
                    redisq.JobState.SCHEDULED,
                    redisq.JobState.LEASED,
                )
            )
            final = sum(
                c.get(redisq.JobState.COMPLETED, 0) + c.get(redisq.JobState.DEAD, 0) for c in counts
            )
            sent = sum(len(p.plan) for p in producers)
            if left == 0 and final >= sent:
                return round(time.monotonic() - t0, 1)
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                log(f"  ... {final} of {sent} final, {left} waiting or leased")
        return None
    finally:
        store.close()


def _heal(proxy: TcpProxy, server: Restartable, events: Ledger) -> None:
    """Undo what a fault may have left (the run is over)."""
    with contextlib.suppress(RuntimeError):
        proxy.unfreeze()
        proxy.set_latency()
    try:
        with redis.Redis.from_url(server.url, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError:
        server.restart()
        events.write("SERVER_UP", port=server.port, healed=True)
