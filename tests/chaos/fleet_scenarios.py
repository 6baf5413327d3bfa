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
from redisq.keys import QueueKeys
from tests.support.proxy import TcpProxy

from .checker import FinalState, Limits, Report, check, save_run
from .harness import (
    AtShare,
    Chaos,
    Fleet,
    JobPlan,
    Periodic,
    Producer,
    collect_final,
    plan_jobs,
    used_memory,
)
from .ledger import Ledger, LedgerData, read_ledger
from .tasks import WorkerConfig, task_name

__all__ = ["S1", "S2", "S15", "FleetScenario", "Outcome", "run_fleet", "run_s8", "run_s10"]

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
    #: Shares of the plan at which a random worker is killed (-9), besides `kill_every`.
    worker_kills_at: tuple[float, ...] = ()
    #: Shares of the plan at which the server is killed (-9) and restarted on its AOF.
    server_restarts: tuple[float, ...] = (0.5,)
    server_down_s: float = 1.0
    #: Seconds from the producers' start until every job must be final.
    drain_s: float = 120.0
    #: One producer per queue (so a queue whose node is down does not hold the others up).
    producer_per_queue: bool = False
    #: I7's slack over the reaper interval (Limits.recovery_slack_ms).
    recovery_slack_ms: int = 500

    def limits(self) -> Limits:
        """What the checker allows in this scenario."""
        return Limits(
            lease_ms=self.lease_ms,
            reaper_ms=self.reaper_ms,
            max_attempts=self.max_attempts,
            concurrency=self.concurrency,
            recovery_slack_ms=self.recovery_slack_ms,
        )

    def describe(self) -> str:
        """One line with the scenario's numbers."""
        faults = []
        if self.kill_every:
            faults.append(f"kill -9 every {self.kill_every:g} s")
        if self.worker_kills_at:
            shares = ", ".join(f"{s:.0%}" for s in self.worker_kills_at)
            faults.append(f"kill -9 of a worker at {shares}")
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


@dataclass
class Target:
    """Where a fleet scenario runs: one server or a cluster, behind one fault proxy per node.

    Workers and producers use `url` (through the proxies); the drain and the final checks use
    `direct_url`. A server restart kills one of `servers` (-9) and starts it again.
    """

    url: str
    direct_url: str
    proxies: list[TcpProxy]
    servers: list[Restartable]
    cluster: bool = False
    #: A cluster node's port -> its proxy's port (redis-py's address_remap in the workers).
    remap: dict[str, int] = field(default_factory=dict)

    def flush_scripts(self) -> None:
        """SCRIPT FLUSH on every node (S15)."""
        for server in self.servers:
            with contextlib.suppress(redis.RedisError), redis.Redis.from_url(server.url) as client:
                client.script_flush()

    def heal(self, events: Ledger) -> None:
        """Undo what a fault may have left (the run is over)."""
        for proxy in self.proxies:
            with contextlib.suppress(RuntimeError):
                proxy.unfreeze()
                proxy.set_latency()
        for server in self.servers:
            try:
                with redis.Redis.from_url(server.url, socket_timeout=2) as client:
                    client.ping()
            except redis.RedisError:
                server.restart()
                events.write("SERVER_UP", port=server.port, healed=True)


def run_fleet(
    scenario: FleetScenario,
    seed: int,
    run_dir: Path,
    server: Restartable,
    *,
    sabotage: Sequence[str] = (),
    log: Callable[[str], None] = print,
    make_plan: Callable[[random.Random, FleetScenario], list[JobPlan]] | None = None,
    check_more: Callable[[Report, LedgerData, FinalState], None] | None = None,
) -> Outcome:
    """Run `scenario` with `seed` on `server` (AOF on, for the restarts); check it.

    The worker processes and the producer reach the server through a fault proxy; the
    checks read the server directly after the workers stopped.
    """
    with TcpProxy(
        "127.0.0.1", server.port, lifetime=scenario.drain_s + 900, max_connections=1024
    ) as proxy:
        target = Target(proxy.url, server.url, [proxy], [server])
        return run_on(
            scenario,
            seed,
            run_dir,
            target,
            sabotage=sabotage,
            log=log,
            make_plan=make_plan,
            check_more=check_more,
        )


def run_on(
    scenario: FleetScenario,
    seed: int,
    run_dir: Path,
    target: Target,
    *,
    sabotage: Sequence[str] = (),
    log: Callable[[str], None] = print,
    make_plan: Callable[[random.Random, FleetScenario], list[JobPlan]] | None = None,
    check_more: Callable[[Report, LedgerData, FinalState], None] | None = None,
) -> Outcome:
    """Run `scenario` on `target` and check it (see `run_fleet`).

    `make_plan` replaces the default job plan (S16's DAG); `check_more` adds a scenario's own
    checks on the ledger and the final state, after I1-I9.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    events = Ledger(run_dir, "chaos")
    prefix = "chaos"
    events.write("RUN", scenario=scenario.name, seed=seed, sabotage=list(sabotage))
    log(f"chaos {scenario.name} seed {seed}: {scenario.describe()}; ledger in {run_dir}")
    baseline = used_memory(target.direct_url, cluster=target.cluster)
    config = WorkerConfig(
        url=target.url,
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
        cluster=target.cluster,
        remap=dict(target.remap),
    )
    fleet = Fleet(config, scenario.workers, events)
    producers: list[Producer] = []
    chaos: Chaos | None = None
    drained: float | None = None
    try:
        fleet.start()
        _wait_workers(run_dir, scenario.workers, 60)
        if make_plan is not None:
            plan = make_plan(rng, scenario)
        else:
            plan = plan_jobs(rng, scenario.jobs, scenario.queues, scenario.mix)
        if scenario.producer_per_queue:
            shares = [[j for j in plan if j.queue == q] for q in scenario.queues]
        else:
            shares = [plan[i :: scenario.producers] for i in range(scenario.producers)]
        for i, share in enumerate(shares):
            producers.append(
                Producer(
                    target.url,
                    prefix,
                    share,
                    scenario.rate / len(shares),
                    Ledger(run_dir, f"producer{i}"),
                    lease_ms=scenario.lease_ms,
                    max_attempts=scenario.max_attempts,
                    payload_bytes=scenario.payload_bytes,
                    cluster=target.cluster,
                    remap=target.remap,
                )
            )

        def progress() -> float:
            return sum(p.sent for p in producers) / max(1, len(plan))

        chaos = Chaos(
            rng,
            _periodic(scenario, fleet, target, events),
            _at_share(scenario, target, events, fleet),
            progress,
        )
        t0 = time.monotonic()
        for producer in producers:
            producer.start()
        chaos.start()
        drained = _drain(scenario, target, prefix, producers, t0, log)
    finally:
        if chaos is not None:
            chaos.stop()
        for producer in producers:
            producer.stop()
        target.heal(events)
        fleet.close()
    final = collect_final(
        target.direct_url, prefix, scenario.queues, baseline, cluster=target.cluster
    )
    events.write("CHECK")
    events.close()
    save_run(run_dir, final, scenario.limits(), scenario=scenario.name, seed=seed)
    data = read_ledger(run_dir)
    report = check(data, final, scenario.limits())
    if check_more is not None:
        check_more(report, data, final)
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
    scenario: FleetScenario, fleet: Fleet, target: Target, events: Ledger
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
            events.write("DROP", n=sum(proxy.drop_all() for proxy in target.proxies))

        periodic.append(Periodic("drop", scenario.drop_every, drop))
    if scenario.delay_every:

        def delay(rng: random.Random) -> None:
            events.write("DELAY", seconds=scenario.delay_s, span=scenario.delay_for)
            for proxy in target.proxies:
                proxy.set_latency(reply=scenario.delay_s)
            time.sleep(scenario.delay_for)  # the fault's own length
            for proxy in target.proxies:
                proxy.set_latency(reply=0.0)
            events.write("DELAY_END")

        periodic.append(Periodic("delay", scenario.delay_every, delay))
    if scenario.flush_every:

        def flush(rng: random.Random) -> None:
            target.flush_scripts()
            events.write("FLUSH")

        periodic.append(Periodic("flush", scenario.flush_every, flush))
    return periodic


#: How long a kill at a share of the run waits for a live worker to kill (s).
KILL_WAIT_S = 10.0


def _at_share(
    scenario: FleetScenario, target: Target, events: Ledger, fleet: Fleet | None = None
) -> list[AtShare]:
    def restart(rng: random.Random) -> None:
        server = rng.choice(target.servers)
        events.write("SERVER_KILL", port=server.port)
        server.kill()
        time.sleep(scenario.server_down_s)  # the outage's own length
        server.restart()
        events.write("SERVER_UP", port=server.port)

    def kill(rng: random.Random) -> int | None:
        # Every worker may be down at that moment (S16's nodes that end their own process):
        # wait for one to be back rather than skip the kill (S16-short once ran without it).
        assert fleet is not None
        deadline = time.monotonic() + KILL_WAIT_S
        while (pid := fleet.kill(rng)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid

    kills = (
        [AtShare(f"worker kill at {s:.0%}", s, kill) for s in scenario.worker_kills_at]
        if fleet is not None
        else []
    )
    return kills + [
        AtShare(f"server restart at {share:.0%}", share, restart)
        for share in scenario.server_restarts
    ]


def _drain(
    scenario: FleetScenario,
    target: Target,
    prefix: str,
    producers: Sequence[Producer],
    t0: float,
    log: Callable[[str], None],
) -> float | None:
    """Wait until the producers are done and every job is final; return the seconds taken."""
    store = redisq.connect(
        target.direct_url,
        prefix=prefix,
        socket_timeout=2,
        socket_connect_timeout=2,
        cluster=target.cluster,
    )
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
                    redisq.JobState.WAITING,
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


# ---------------------------------------------------------------------------------- S8


def run_s8(
    seed: int,
    run_dir: Path,
    server: Restartable,
    *,
    workers: int = 8,
    concurrency: int = 2,
    busy_outage_s: float = 10.0,
    idle_outage_s: float = 60.0,
    resume_limit_s: float = 5.0,
    reconnects_limit: float = 10.0,
    log: Callable[[str], None] = print,
) -> Report:
    """S8 outage: the server is down `busy_outage_s` while jobs flow, then `idle_outage_s`
    while the workers are idle.

    After each restore every worker must claim again within `resume_limit_s`; during the
    outages each worker process may open at most `reconnects_limit` connections per second;
    and no worker thread may die (every worker stops cleanly, with no error counted).
    """
    started = time.monotonic()
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    events = Ledger(run_dir, "chaos")
    prefix = "chaos"
    scenario = FleetScenario(
        "S8", "outage", workers=workers, concurrency=concurrency, mix={"normal": 1.0}
    )
    events.write("RUN", scenario="S8", seed=seed)
    baseline = used_memory(server.url)
    proxy = TcpProxy("127.0.0.1", server.port, lifetime=3_600, max_connections=1024)
    config = WorkerConfig(
        url=proxy.url,
        prefix=prefix,
        queues=["q"],
        ledger=str(run_dir),
        source="w",
        seed=seed,
        concurrency=concurrency,
    )
    fleet = Fleet(config, workers, events)
    target = Target(proxy.url, server.url, [proxy], [server])
    producers: list[Producer] = []
    outages: list[dict[str, float]] = []

    def outage(seconds: float, label: str) -> None:
        before = proxy.accepted
        events.write("SERVER_KILL", port=server.port, phase=label)
        down = time.monotonic()
        server.kill()
        time.sleep(seconds)  # the outage's own length
        accepted = proxy.accepted - before
        server.restart()
        events.write("SERVER_UP", port=server.port, phase=label)
        outages.append(
            {"seconds": seconds, "reconnects_per_s": accepted / workers / (time.monotonic() - down)}
        )
        log(f"  {label} outage of {seconds:g} s over; {accepted} connections tried meanwhile")

    drained: float | None = None
    try:
        fleet.start()
        _wait_workers(run_dir, workers, 60)
        busy = plan_jobs(rng, int(100 * (busy_outage_s + 8)), ["q"], {"normal": 1.0})
        # The producers reach the server directly: the proxy counts the workers' connections.
        producers.append(
            Producer(
                server.url,
                prefix,
                busy,
                100.0,
                Ledger(run_dir, "producer0"),
                lease_ms=2_000,
                max_attempts=5,
            )
        )
        t0 = time.monotonic()
        producers[0].start()
        time.sleep(3)  # jobs flow before the first outage (the scenario's shape)
        outage(busy_outage_s, "busy")
        drained = _drain(scenario, target, prefix, producers, t0, log)
        outage(idle_outage_s, "idle")
        probes = [JobPlan("q", f"p{n:04d}", "normal") for n in range(workers * concurrency * 2)]
        producers.append(
            Producer(
                server.url,
                prefix,
                probes,
                0,
                Ledger(run_dir, "producer1"),
                lease_ms=2_000,
                max_attempts=5,
            )
        )
        producers[1].start()
        _drain(scenario, target, prefix, producers, time.monotonic(), log)
        # Let every worker's blocking wait come back (each wait lasts at most 5 s).
        time.sleep(6)
    finally:
        for producer in producers:
            producer.stop()
        target.heal(events)
        fleet.close()
        proxy.close()
    final = collect_final(server.url, prefix, ["q"], baseline)
    events.close()
    limits = scenario.limits()
    save_run(run_dir, final, limits, scenario="S8", seed=seed)
    data = read_ledger(run_dir)
    report = check(data, final, limits)
    resumes = _check_outages(report, data, outages, resume_limit_s, reconnects_limit)
    report.figures.update(
        scenario="S8",
        seed=seed,
        drained_s=drained,
        wall_s=round(time.monotonic() - started, 1),
        scenario_figures={
            **{
                f"{o['seconds']:g} s outage: worker resume after restore (max s)": r
                for o, r in zip(outages, resumes, strict=True)
            },
            **{
                f"{o['seconds']:g} s outage: connections tried per worker per s": round(
                    o["reconnects_per_s"], 2
                )
                for o in outages
            },
        },
    )
    return report


def _check_outages(
    report: Report,
    data: Any,
    outages: list[dict[str, float]],
    resume_limit_s: float,
    reconnects_limit: float,
) -> list[float | None]:
    """S8's own checks: resumption per worker and outage, connection rate, clean stops."""
    ups = [float(e["t"]) for e in data.of("SERVER_UP")]
    downs = [float(e["t"]) for e in data.of("SERVER_KILL")]
    starts = {int(e["pid"]): float(e["t"]) for e in data.of("WORKER_START")}
    stops = {int(e["pid"]): e for e in data.of("WORKER_STOP")}
    resumed = [e for e in data.of("RESUMED") if e["op"] == "claim"]
    worst: list[float | None] = []
    for down, up, outage in zip(downs, ups, outages, strict=False):
        delays: list[float] = []
        for pid, start in starts.items():
            if start > down:
                continue  # started during or after the outage
            # The first claim to work after the kill: a worker may reconnect before the harness
            # has noted the server up (its own check returns after the worker's claim).
            first = next((e for e in resumed if e["pid"] == pid and float(e["t"]) > down), None)
            if first is None:
                report.add(
                    "S8", f"worker pid {pid} never claimed again after the restore at {up:.0f}"
                )
                continue
            delay = max(0.0, float(first["started"]) - up) / 1000
            delays.append(delay)
            if delay > resume_limit_s:
                report.add(
                    "S8",
                    f"worker pid {pid} claimed again {delay:.1f} s after the"
                    f" {outage['seconds']:g} s outage ended (limit {resume_limit_s:g} s)",
                )
        worst.append(round(max(delays), 2) if delays else None)
        if outage["reconnects_per_s"] > reconnects_limit:
            report.add(
                "S8",
                f"{outage['reconnects_per_s']:.1f} connections per worker per second during the"
                f" {outage['seconds']:g} s outage (limit {reconnects_limit:g})",
            )
    for pid in starts:
        stop = stops.get(pid)
        if stop is None:
            report.add("S8", f"worker pid {pid} did not stop cleanly (no WORKER_STOP)")
        elif stop["metrics"].get("errors"):
            report.add("S8", f"worker pid {pid} counted {stop['metrics']['errors']} error(s)")
    return worst


# --------------------------------------------------------------------------------- S10


def run_s10(
    seed: int,
    run_dir: Path,
    server: Restartable,
    *,
    jobs: int = 100_000,
    limit_s: float = 30.0,
    script_limit_ms: float = 50.0,
    concurrency: int = 8,
    prefetch: int = 500,
    give_up_s: float = 90.0,
    log: Callable[[str], None] = print,
) -> Report:
    """S10 reaper at scale: `jobs` expired leases (a fleet that died), one worker started.

    The leases are made by claims on a test clock an hour in the past, so they are expired
    the moment they exist. One worker process (concurrency 8, prefetch 500, the default
    reaper interval) must bring them all back within `limit_s` (counted until no lease of
    the dead fleet is left), and no script call may take over `script_limit_ms` (SLOWLOG).
    Jobs are no-ops and the worker keeps no ledger (the volume is the point).
    """
    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    events = Ledger(run_dir, "chaos")
    prefix, queue = "chaos", "q"
    report = Report()
    keep = redisq.Retention(completed=jobs, completed_age_ms=0, dead=jobs, dead_age_ms=0)
    with redis.Redis.from_url(server.url, socket_timeout=60) as admin:
        now_s, micros = admin.time()
        past = int(now_s) * 1000 + int(micros) // 1000 - 3_600_000
        store = redisq.connect(server.url, prefix=prefix, retention=keep, socket_timeout=60)
        dead_fleet = redisq.connect(
            server.url, prefix=prefix, clock=lambda: past, socket_timeout=60
        )
        try:
            specs = [
                redisq.Spec({"args": ["noop", ""], "kwargs": {}}, id=f"j{n:06d}")
                for n in range(jobs)
            ]
            for at in range(0, jobs, 10_000):
                store.enqueue_many(queue, specs[at : at + 10_000], name=task_name(queue))
            for _ in range(0, jobs, 1_000):
                dead_fleet.claim(queue, worker="dead-fleet", lease_ms=1_000, count=1_000)
        finally:
            dead_fleet.close()
        expired_before = past + 1_000
        stranded = int(admin.zcount(QueueKeys.build(prefix, queue).leased, "-inf", expired_before))
        log(f"  {stranded} expired leases of a dead fleet; starting one worker")
        admin.config_set("slowlog-log-slower-than", 10_000)
        admin.config_set("slowlog-max-len", 10_000)
        admin.slowlog_reset()
        config = WorkerConfig(
            url=server.url,
            prefix=prefix,
            queues=[queue],
            ledger=str(run_dir),
            source="w",
            seed=seed,
            concurrency=concurrency,
            prefetch=prefetch,
            reaper_ms=10_000,
            lease_ms=30_000,
            record=False,
        )
        fleet = Fleet(config, 1, events)
        recovered: float | None = None
        drained: float | None = None
        samples: list[tuple[float, int]] = []
        try:
            fleet.start()
            _wait_workers(run_dir, 1, 60)
            t0 = time.monotonic()
            leased = QueueKeys.build(prefix, queue).leased
            while time.monotonic() - t0 < give_up_s:
                left = int(admin.zcount(leased, "-inf", expired_before))
                samples.append((time.monotonic() - t0, left))
                if left == 0 and recovered is None:
                    recovered = time.monotonic() - t0
                if recovered is not None:
                    counts = store.counts(queue)
                    if (
                        counts.get(redisq.JobState.COMPLETED, 0)
                        + counts.get(redisq.JobState.DEAD, 0)
                        >= jobs
                    ):
                        drained = time.monotonic() - t0
                        break
                time.sleep(0.2)
        finally:
            fleet.close()
            store.close()
        slow = admin.slowlog_get(10_000)
    events.close()
    worst = max((entry["duration"] for entry in slow), default=0) / 1000
    over = [e for e in slow if e["duration"] / 1000 > script_limit_ms]
    if recovered is None or recovered > limit_s:
        at_limit = next(
            (left for t, left in samples if t >= limit_s), samples[-1][1] if samples else None
        )
        report.add(
            "I7",
            f"{stranded} expired leases came back in "
            + ("more than" if recovered is None else "")
            + f" {recovered if recovered is not None else give_up_s:.1f} s (limit {limit_s:g} s);"
            f" {at_limit} were still expired after {limit_s:g} s",
        )
    if over:
        names = sorted({_command_name(e["command"]) for e in over})
        report.add(
            "S10",
            f"{len(over)} command(s) took over {script_limit_ms:g} ms (SLOWLOG), the longest"
            f" {worst:.1f} ms: {names}",
        )
    if drained is None:
        report.add("I1", f"the {jobs} jobs were not all final after {give_up_s:g} s")
    rate = stranded / recovered if recovered else None
    report.figures.update(
        scenario="S10",
        seed=seed,
        jobs=jobs,
        drained_s=None if drained is None else round(drained, 1),
        wall_s=round(time.monotonic() - started, 1),
        scenario_figures={
            "expired leases": stranded,
            "all back after (s)": None if recovered is None else round(recovered, 1),
            "leases back per s": None if rate is None else round(rate),
            "slowest command (SLOWLOG, ms)": round(worst, 1),
            "commands over 50 ms": len(over),
        },
    )
    return report


# ---------------------------------------------------------------------------------- S3

#: S3 cluster chaos, scaled to this machine: 3,000 jobs (not 10,000) over 3 queues whose
#: hash tags live on the 3 masters, 6 workers x 2; S2's faults without the standalone server
#: restart; instead one master is killed (-9) at 50% and restarted 5 s later.
S3 = FleetScenario(
    "S3",
    "cluster chaos",
    jobs=3_000,
    workers=6,
    concurrency=2,
    rate=60.0,
    kill_every=3.0,
    stop_every=10.0,
    drop_every=7.0,
    delay_every=13.0,
    server_restarts=(0.5,),
    server_down_s=5.0,
    drain_s=300.0,
    producer_per_queue=True,
)


def queues_per_node(cluster: Any, prefix: str, count: int) -> list[str]:
    """Queue names whose keys live on `count` different masters (asked of the server)."""
    names: list[str] = []
    ports: set[int] = set()
    for n in range(200):
        name = f"q{n}"
        port = cluster.node_for_key(f"{{{prefix}:{name}}}:meta").port
        if port not in ports:
            ports.add(port)
            names.append(name)
        if len(names) == count:
            return names
    raise RuntimeError(f"no {count} queues on distinct masters among q0..q199")


def run_s3(
    seed: int,
    run_dir: Path,
    cluster: Any,
    *,
    scenario: FleetScenario = S3,
    log: Callable[[str], None] = print,
) -> Report:
    """S3 on a local 3-master cluster (``cluster-require-full-coverage no``, AOF always).

    Besides I1-I9: while one master is down, the queues of the other masters keep completing
    jobs every second, and no CROSSSLOT or non-local-key error is ever seen.
    """
    queues = queues_per_node(cluster, "chaos", len(cluster.nodes))
    scenario = replace(scenario, queues=tuple(queues))
    proxies = [
        TcpProxy("127.0.0.1", node.port, lifetime=scenario.drain_s + 900, max_connections=1024)
        for node in cluster.nodes
    ]
    try:
        target = Target(
            url=f"redis+cluster://127.0.0.1:{proxies[0].port}",
            direct_url=cluster.cluster_url,
            proxies=proxies,
            servers=list(cluster.nodes),
            cluster=True,
            remap={
                str(node.port): proxy.port
                for node, proxy in zip(cluster.nodes, proxies, strict=True)
            },
        )
        outcome = run_on(scenario, seed, run_dir, target, log=log)
    finally:
        for proxy in proxies:
            proxy.close()
    report = outcome.report
    data = read_ledger(run_dir)
    _check_cluster(report, data, cluster, queues, run_dir)
    return report


def _check_cluster(
    report: Report, data: Any, cluster: Any, queues: list[str], run_dir: Path
) -> None:
    """S3's own checks: healthy queues flow during a master's outage; no slot errors."""
    node_of = {q: cluster.node_for_key(f"{{chaos:{q}}}:meta").port for q in queues}
    flows: dict[str, int] = {}
    for kill, up in zip(data.of("SERVER_KILL"), data.of("SERVER_UP"), strict=False):
        down_port = int(kill["port"])
        start, end = float(kill["t"]), float(up["t"])
        for queue in queues:
            if node_of[queue] == down_port:
                continue
            done = [float(e["at"]) for e in data.of("ACK_OK") if e["q"] == queue and e.get("at")]
            seconds = int((end - start) // 1000)
            empty = [
                s
                for s in range(seconds)
                if not any(start + s * 1000 <= t < start + (s + 1) * 1000 for t in done)
            ]
            flows[queue] = seconds - len(empty)
            if empty:
                report.add(
                    "S3",
                    f"queue {queue} (master {node_of[queue]} up) completed nothing in"
                    f" {len(empty)} of the {seconds} s that master {down_port} was down",
                )
    slot_errors = [
        e
        for e in data.events
        if e["ev"].endswith("_ERR")
        and ("CROSSSLOT" in str(e.get("err")) or "non local" in str(e.get("err")))
    ]
    for log_file in run_dir.glob("*.log"):
        text = log_file.read_text(errors="replace")
        if "CROSSSLOT" in text or "non local key" in text:
            slot_errors.append({"ev": "LOG", "err": log_file.name})
    if slot_errors:
        report.add(
            "S3", f"{len(slot_errors)} CROSSSLOT / non-local-key error(s), first: {slot_errors[0]}"
        )
    report.figures.setdefault("scenario_figures", {})[
        "seconds with completions while a master was down"
    ] = flows


def _command_name(command: Any) -> str:
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.split(" ", 1)[0]
