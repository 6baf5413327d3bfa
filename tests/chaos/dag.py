"""S16 random DAG: dependencies under kill -9 (issue 12 point 5), and its own checks.

A seeded random DAG of N nodes (each node's parents drawn among earlier nodes: a window of
recent nodes for depth, a few hubs for fan-out, up to 6 parents for fan-in; about 8% roots)
spread over 3 queues, so that many edges cross queues (in a cluster, slots: those releases go
through the parent queue's outbox, delivered by its next reap). One producer enqueues the
nodes in order through the public API (``enqueue(..., depends_on=[(queue, id), ...])``,
retried until acknowledged); 3 worker processes run them while the harness kills one with
kill -9 (and restarts it) at random; 2% of the nodes also end their process on their first
attempt (``crash``). Then, besides I1-I9, from the ledger (outside Redis) and the final state:

- D1 every node completed (not merely final: a dead or cancelled node is a violation);
- D2 order: no attempt of a child started (HANDLER_START, the worker's monotonic clock,
  CLOCK_MONOTONIC, one clock for the host's processes) before the completing lease of every
  parent had sent its ack (ACK_SENT: the completion, and so the release, come after it); and
  no lease of a child was granted (Redis time) before each parent's completion (Redis time);
- D3 no release lost: no node is left waiting (and I5 finds no dependency key left but the
  edges `flow` reads, which expire);
- D4 no release twice: a release of a child that is leased or done would show as a second
  valid lease (I3), a lease after its completion (I2) or a re-run that no fault explains (I8);
  D4 adds that each node ran in no more leases than its faults explain (the figure "nodes run
  more than once", each put down to a fault by I8);
- the run drains within the scenario's deadline (``drain_s``; I1 otherwise).

The figures add the DAG's shape and the release-to-start latency (the child's first start less
its last parent's ack, p50 / p99 / max, same-queue and cross-queue releases apart).
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.support.proxy import TcpProxy

from .checker import CLOCK_MS, FinalState, Report
from .fleet_scenarios import (
    FleetScenario,
    Outcome,
    Restartable,
    Target,
    _check_cluster,
    queues_per_node,
    run_fleet,
    run_on,
)
from .harness import JobPlan
from .ledger import LedgerData

__all__ = [
    "S16",
    "S16D",
    "S16_SHORT",
    "check_dag",
    "dag_shape",
    "plan_dag",
    "run_s16",
    "run_s16_cluster",
]

Node = tuple[str, str]
#: The worker's default idle_wait_ms (redisq.Worker): its longest blocking wait for work.
IDLE_WAIT_MS = 5_000

#: S16: 1,000 nodes over 3 queues, 3 workers x 2, kill -9 of a worker every 4 s (restarted
#: 0.5 s later), lease 2 s, reaper 0.5 s; no SIGSTOP, proxy faults or server restart (S1-S3
#: cover those): the point is the dependencies under worker deaths.
S16 = FleetScenario(
    "S16",
    "random DAG",
    jobs=1_000,
    workers=3,
    concurrency=2,
    rate=100.0,
    max_attempts=25,
    mix={"normal": 0.98, "crash": 0.02},
    queues=("qa", "qb", "qc"),
    kill_every=4.0,
    stop_every=None,
    drop_every=None,
    server_restarts=(),
    drain_s=300.0,
)
#: S16 with the worker's default reaper interval (10 s): the figure of cross-queue releases,
#: which wait for the parent queue's next reap (docs/workflows.md).
S16D = replace(
    S16, name="S16D", title="random DAG, default reaper (10 s)", reaper_ms=10_000, drain_s=1_200.0
)
#: The variant of the normal test suite: 200 nodes, one kill -9 at half the enqueues.
S16_SHORT = replace(
    S16,
    name="S16-short",
    title="random DAG (short)",
    jobs=200,
    kill_every=None,
    worker_kills_at=(0.5,),
    drain_s=90.0,
)


def plan_dag(
    rng: random.Random, count: int, queues: Sequence[str], mix: dict[str, float]
) -> list[JobPlan]:
    """A seeded random DAG of `count` nodes in topological order (parents come first)."""
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    nodes: list[JobPlan] = []
    for n in range(count):
        queue = rng.choice(list(queues))
        parents: list[Node] = []
        if n >= 3 and rng.random() >= 0.08:
            want = rng.choices([1, 2, 3, 4, 6], [0.35, 0.3, 0.15, 0.12, 0.08])[0]
            hubs = list(range(0, n, 40))
            for _ in range(want):
                hub = rng.random() < 0.2
                pick = rng.choice(hubs) if hub else rng.randrange(max(0, n - 30), n)
                parent = (nodes[pick].queue, nodes[pick].id)
                if parent not in parents:
                    parents.append(parent)
        kind = rng.choices(kinds, weights)[0]
        nodes.append(JobPlan(queue, f"n{n:05d}", kind, tuple(parents)))
    return nodes


def dag_shape(plan: Sequence[JobPlan]) -> dict[str, Any]:
    """Nodes, edges, cross-queue edges, roots, depth, most parents and most children."""
    depth: dict[Node, int] = {}
    children: dict[Node, int] = defaultdict(int)
    edges = cross = 0
    for job in plan:
        key = (job.queue, job.id)
        depth[key] = 1 + max((depth.get(p, 0) for p in job.parents), default=0)
        for parent in job.parents:
            children[parent] += 1
            edges += 1
            cross += parent[0] != job.queue
    return {
        "nodes": len(plan),
        "edges": edges,
        "cross-queue edges": cross,
        "roots": sum(1 for job in plan if not job.parents),
        "depth (longest path)": max(depth.values(), default=0),
        "most parents of a node": max((len(j.parents) for j in plan), default=0),
        "most children of a node": max(children.values(), default=0),
    }


def _dag_of(data: LedgerData) -> dict[Node, tuple[Node, ...]]:
    """The DAG as the producer sent it (its ENQ_SENT lines carry each node's parents)."""
    dag: dict[Node, tuple[Node, ...]] = {}
    for e in data.of("ENQ_SENT"):
        parents = tuple((str(p[0]), str(p[1])) for p in e.get("parents") or ())
        dag[(str(e["q"]), str(e["id"]))] = parents
    return dag


def _pct(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def check_dag(report: Report, data: LedgerData, final: FinalState | None) -> None:
    """D1-D4 (module docstring) over the run's ledger and final state; adds the figures."""
    dag = _dag_of(data)
    # The lower bound of each lease's completion: the first ACK_SENT naming it (monotonic ms).
    ack_sent: dict[tuple[str, str, int], float] = {}
    for e in data.of("ACK_SENT"):
        for q, id_, token, _granted in e["leases"]:
            lease = (str(q), str(id_), int(token))
            if lease not in ack_sent:
                ack_sent[lease] = float(e["mono"])
    starts: dict[Node, list[float]] = defaultdict(list)
    for e in data.of("HANDLER_START"):
        starts[(str(e["q"]), str(e["id"]))].append(float(e["mono"]))
    grants: dict[Node, list[int]] = defaultdict(list)
    for e in data.of("CLAIM"):
        grants[(str(e["q"]), str(e["id"]))].append(int(e["granted"]))
    done: dict[Node, float] = {}
    unverified = 0
    if final is not None:
        for node in dag:
            job = final.jobs.get(node)
            if job is None or job.state != "completed":
                what = "missing" if job is None else f"{job.state} ({job.last_error})"
                report.add("D1", f"node {node[0]}/{node[1]} did not complete: {what}")
                if job is not None and job.state == "waiting":
                    report.add("D3", f"node {node[0]}/{node[1]} left waiting")
                continue
            bound = ack_sent.get((node[0], node[1], int(job.token or 0)))
            if bound is None:
                unverified += 1  # its ACK_SENT line was torn by a kill: I2 reports it
            else:
                done[node] = bound
    early = 0
    early_redis = 0
    same: list[float] = []
    far: list[float] = []
    for child, parents in dag.items():
        if not parents:
            continue
        child_starts = starts.get(child, [])
        for parent in parents:
            bound = done.get(parent)
            if bound is not None:
                for start in child_starts:
                    if start <= bound:
                        early += 1
                        report.add(
                            "D2",
                            f"node {child[0]}/{child[1]} started {bound - start:.1f} ms before"
                            f" its parent {parent[0]}/{parent[1]} sent the ack that completed it",
                        )
            job = final.jobs.get(parent) if final is not None else None
            if job is not None and job.finished_at is not None:
                for granted in grants.get(child, []):
                    if granted + CLOCK_MS < job.finished_at:
                        early_redis += 1
                        report.add(
                            "D2",
                            f"node {child[0]}/{child[1]} was leased at {granted} (Redis time),"
                            f" before its parent {parent[0]}/{parent[1]} completed at"
                            f" {job.finished_at}",
                        )
        bounds = [(done[p], p) for p in parents if p in done]
        if child_starts and len(bounds) == len(parents):
            last, parent = max(bounds)
            (same if parent[0] == child[0] else far).append(min(child_starts) - last)
    if final is not None:
        for queue, sets in final.sets.items():
            if sets.get("waiting"):
                report.add("D3", f"queue {queue}: {sets['waiting']} job(s) left in its waiting set")
    runs = {node: len(found) for node, found in starts.items()}
    figures = report.figures.setdefault("scenario_figures", {})
    figures.update(_shape_of(dag))
    figures.update(
        {
            "child attempts started before a parent's ack (ledger, monotonic)": early,
            "child leases granted before a parent's completion (Redis time)": early_redis,
            "nodes left waiting": sum(
                s.get("waiting", 0) for s in (final.sets.values() if final else [])
            ),
            "nodes run more than once (each explained by I8)": sum(
                1 for n in runs.values() if n > 1
            ),
            "most runs of one node": max(runs.values(), default=0),
            "completions whose ack line was lost": unverified,
            "release to start, same queue p50 / p99 / max (ms)": _triple(same),
            "release to start, cross-queue p50 / p99 / max (ms)": _triple(far),
        }
    )


def _shape_of(dag: dict[Node, tuple[Node, ...]]) -> dict[str, Any]:
    return dag_shape([JobPlan(q, id_, "normal", parents) for (q, id_), parents in dag.items()])


def _triple(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f} / {_pct(values, 0.99):,.0f} / {max(values):,.0f}"


def _plan(rng: random.Random, scenario: FleetScenario) -> list[JobPlan]:
    return plan_dag(rng, scenario.jobs, scenario.queues, scenario.mix)


def run_s16(
    seed: int,
    run_dir: Path,
    server: Restartable,
    *,
    scenario: FleetScenario = S16,
    sabotage: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Outcome:
    """S16 on one server (valkey or redis7), through a fault proxy."""
    return run_fleet(
        scenario,
        seed,
        run_dir,
        server,
        sabotage=sabotage,
        log=log,
        make_plan=_plan,
        check_more=check_dag,
    )


def run_s16_cluster(
    seed: int,
    run_dir: Path,
    cluster: Any,
    *,
    scenario: FleetScenario = S16,
    sabotage: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Outcome:
    """S16 on a local 3-master cluster, its 3 queues on 3 masters (every cross-queue edge is a
    cross-slot release); adds S3's check that no CROSSSLOT error was ever seen."""
    queues = queues_per_node(cluster, "chaos", len(cluster.nodes))
    # On a cluster an idle worker's blocking wait covers one of its queues (one slot per
    # command), so a job made ready in another queue (a lease reaped back, a released child)
    # may wait for that wait to time out: the worker's idle_wait_ms, 5 s. I7 allows it.
    scenario = replace(
        scenario,
        name=scenario.name + "C",
        queues=tuple(queues),
        recovery_slack_ms=IDLE_WAIT_MS + 500,
    )
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

        def check_more(report: Report, data: LedgerData, final: FinalState) -> None:
            check_dag(report, data, final)
            _check_cluster(report, data, cluster, queues, run_dir)
            # S3's figure of a master's outage: S16C has none.
            report.figures["scenario_figures"].pop(
                "seconds with completions while a master was down", None
            )

        outcome = run_on(
            scenario,
            seed,
            run_dir,
            target,
            sabotage=sabotage,
            log=log,
            make_plan=_plan,
            check_more=check_more,
        )
    finally:
        for proxy in proxies:
            proxy.close()
    return outcome
