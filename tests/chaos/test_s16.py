"""S16 random DAG (issue 12 point 5): dependencies under kill -9, in the normal test suite.

- `S16_SHORT` (200 nodes over 3 queues, 3 worker processes, one kill -9 at half the
  enqueues) on valkey and on a private 3-master cluster (its queues on 3 masters, so every
  cross-queue edge is a cross-slot release through the outbox); the full 1,000-node run is
  ``make chaos SCENARIOS=S16`` (``S16C`` on the cluster, ``CHAOS_ARGS='--server redis7'``).
- memory:// cannot span processes: the in-process variant runs the same kind of DAG on every
  backend (valkey, redis7, memory) with 3 stores in one process, one of which "dies" at random
  (drops its leases without a word, as a kill -9 does), and the same D1-D4 checks.
- The proofs: the D checks fail on hand-made ledgers and on runs with broken scripts.

The seed is random and printed; replay with ``REDISQ_CHAOS_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import redisq
from tests.chaos.checker import FinalJob, FinalState, Report
from tests.chaos.dag import S16_SHORT, check_dag, dag_shape, plan_dag, run_s16, run_s16_cluster
from tests.chaos.figures import block
from tests.chaos.fleet_scenarios import _at_share
from tests.chaos.ledger import Ledger, read_ledger
from tests.chaos.sabotage import SABOTAGES
from tests.chaos.test_proofs import DAG_EXPECTED
from tests.support.cluster import ClusterProcess
from tests.support.polling import Deadline
from tests.support.servers import ServerProcess, valkey_binary

pytestmark = pytest.mark.chaos

SEED_ENV = "REDISQ_CHAOS_SEED"


def _seed(test: str) -> int:
    seed = int(os.environ.get(SEED_ENV) or random.randrange(1, 1_000_000))
    print(f"S16 seed {seed} (replay: {SEED_ENV}={seed} pytest tests/chaos/test_s16.py -k {test})")
    return seed


def _assert_ok(report: Report, seed: int, where: Path) -> None:
    print(block(report, f"{SEED_ENV}={seed} pytest tests/chaos/test_s16.py"))
    assert report.ok, f"S16 seed {seed} failed; ledger in {where}\n" + report.describe()


def test_the_plan_is_a_seeded_dag_with_fan_in_fan_out_and_cross_queue_edges() -> None:
    plan = plan_dag(random.Random(5), 1_000, ["qa", "qb", "qc"], {"normal": 1.0})
    again = plan_dag(random.Random(5), 1_000, ["qa", "qb", "qc"], {"normal": 1.0})

    assert plan == again
    seen: set[tuple[str, str]] = set()
    for job in plan:
        assert set(job.parents) <= seen  # parents come first: a DAG in topological order
        seen.add((job.queue, job.id))
    shape = dag_shape(plan)
    assert shape["most parents of a node"] >= 4
    assert shape["most children of a node"] >= 10
    assert shape["cross-queue edges"] >= shape["edges"] // 3
    assert shape["depth (longest path)"] >= 20


# ------------------------------------------------------------------- the checker's own proofs


def _hand_ledger(tmp_path: Path, child_start_after_ack: bool) -> tuple[Report, FinalState]:
    ledger = Ledger(tmp_path, "hand")
    ledger.write("ENQ_SENT", q="q", id="p", kind="normal")
    ledger.write("ENQ_SENT", q="q", id="c", kind="normal", parents=[["q", "p"]])
    ledger.write("CLAIM", q="q", id="p", token=1, granted=1_000, deadline=3_000)
    ledger.write("HANDLER_START", q="q", id="p", token=1, granted=1_000)
    if not child_start_after_ack:
        ledger.write("CLAIM", q="q", id="c", token=2, granted=1_001, deadline=3_001)
        ledger.write("HANDLER_START", q="q", id="c", token=2, granted=1_001)
    ledger.write("ACK_SENT", leases=[["q", "p", 1, 1_000]])
    if child_start_after_ack:
        ledger.write("CLAIM", q="q", id="c", token=2, granted=1_010, deadline=3_010)
        ledger.write("HANDLER_START", q="q", id="c", token=2, granted=1_010)
    ledger.write("ACK_SENT", leases=[["q", "c", 2, 1_010]])
    ledger.close()
    final = FinalState(
        jobs={
            ("q", "p"): FinalJob("completed", 1, 5, 1, None, 1_005),
            ("q", "c"): FinalJob("completed", 1, 5, 2, None, 1_020),
        },
        sets={"q": {"waiting": 0}},
        keys={},
        allowed=set(),
        expiring_prefixes=(),
        used_memory=0,
        baseline_memory=0,
    )
    report = Report()
    check_dag(report, read_ledger(tmp_path), final)
    return report, final


def test_the_dag_checker_passes_a_child_that_starts_after_its_parents_ack(tmp_path: Path) -> None:
    report, _ = _hand_ledger(tmp_path, child_start_after_ack=True)
    assert report.ok, report.describe()


def test_the_dag_checker_reports_a_child_that_starts_before_its_parents_ack(
    tmp_path: Path,
) -> None:
    report, _ = _hand_ledger(tmp_path, child_start_after_ack=False)
    assert report.failed() == ["D2"], report.describe()
    assert len(report.violations["D2"]) == 2  # the monotonic order and the Redis times


def test_the_dag_checker_reports_nodes_left_waiting(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "hand")
    ledger.write("ENQ_SENT", q="q", id="c", kind="normal", parents=[["r", "p"]])
    ledger.close()
    final = FinalState(
        jobs={("q", "c"): FinalJob("waiting", 0, 5, None, None)},
        sets={"q": {"waiting": 1}},
        keys={},
        allowed=set(),
        expiring_prefixes=(),
        used_memory=0,
        baseline_memory=0,
    )
    report = Report()
    check_dag(report, read_ledger(tmp_path), final)
    assert set(report.failed()) == {"D1", "D3"}, report.describe()


#: A DAG small enough for a proof: 60 nodes, no kill, a short drain deadline.
S16_PROOF = replace(S16_SHORT, name="S16-proof", jobs=60, worker_kills_at=(), drain_s=15.0)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sabotage", sorted(DAG_EXPECTED))
def test_the_dag_checks_catch_a_broken_release(
    sabotage: str, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Given worker processes whose scripts release children wrongly
    server = make_server("valkey")
    outcome = run_s16(11, tmp_path, server, scenario=S16_PROOF, sabotage=[sabotage])

    # Then the D checks report it
    assert DAG_EXPECTED[sabotage] <= set(outcome.report.failed()), (
        f"{SABOTAGES[sabotage].what}: expected {sorted(DAG_EXPECTED[sabotage])}, got:\n"
        + outcome.report.describe()
    )


# ---------------------------------------------------------------------- worker processes


def test_a_kill_at_a_share_waits_for_a_live_worker() -> None:
    # CI: every S16-short worker had ended its own process when the kill at 50% came, so the
    # run had no kill -9 at all ('kills' missing from its faults).
    tries: list[int] = []

    class Fleet:
        def kill(self, rng: random.Random) -> int | None:
            tries.append(1)
            return None if len(tries) < 3 else 42

    [kill] = _at_share(S16_SHORT, target=Any, events=Any, fleet=Fleet())  # type: ignore[arg-type]
    assert kill.action(random.Random(1)) == 42
    assert len(tries) == 3


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_s16_short_random_dag_under_kill_9_on_valkey(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    seed = _seed("valkey")
    server = make_server("valkey")

    outcome = run_s16(seed, tmp_path, server, scenario=S16_SHORT)

    _assert_ok(outcome.report, seed, tmp_path)
    figures = outcome.report.figures
    assert figures["scenario_figures"]["nodes"] == S16_SHORT.jobs
    assert figures["faults"].get("kills", 0) >= 1


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_s16_short_random_dag_under_kill_9_on_the_cluster(tmp_path: Path) -> None:
    binary = valkey_binary()
    if binary is None:
        pytest.skip("valkey-server not found")
    seed = _seed("cluster")
    with ClusterProcess(binary) as cluster:
        outcome = run_s16_cluster(seed, tmp_path, cluster, scenario=S16_SHORT)

    _assert_ok(outcome.report, seed, tmp_path)
    figures = outcome.report.figures["scenario_figures"]
    assert figures["cross-queue edges"] > 0


# ------------------------------------------------------------------------ in one process


def test_s16_in_process_random_dag_with_dying_workers(
    url: str, prefix: str, tmp_path: Path
) -> None:
    # Given a seeded 150-node DAG over 3 queues, enqueued while 3 in-process workers run it;
    # a worker "dies" at random (drops its leases unanswered, as a kill -9 does)
    seed = _seed("in_process")
    rng = random.Random(seed)
    queues = ["qa", "qb", "qc"]
    plan = plan_dag(rng, 150, queues, {"normal": 1.0})
    ledger = Ledger(tmp_path, "inproc")
    producer = redisq.connect(url, prefix=prefix)
    workers = [redisq.connect(url, prefix=prefix) for _ in range(3)]
    lease_ms = 300
    deaths = 0
    try:
        enqueued = 0
        deadline = Deadline(90)
        while not deadline.expired():
            for job in plan[enqueued : enqueued + 8]:
                parents = [list(p) for p in job.parents]
                ledger.write("ENQ_SENT", q=job.queue, id=job.id, kind=job.kind, parents=parents)
                # (queue, id) pairs are documented parents; Store's annotation names Jobs and ids
                depends_on: Any = list(job.parents) or None
                producer.enqueue(
                    job.queue, {"n": job.id}, id=job.id, max_attempts=25, depends_on=depends_on
                )
            enqueued = min(len(plan), enqueued + 8)
            for n, store in enumerate(workers):
                deaths += _work(store, f"w{n}", queues, lease_ms, rng, ledger)
            for queue in queues:
                producer.reap(queue)  # a worker's reaper: expired leases, outbox delivery
            counts = [producer.counts(q) for q in queues]
            done = sum(c.get(redisq.JobState.COMPLETED, 0) for c in counts)
            if enqueued == len(plan) and done == len(plan):
                break
            time.sleep(0.02)  # pacing of the simulated fleet, not ordering
        ledger.close()
        final = _final(producer, queues)
    finally:
        for store in [producer, *workers]:
            store.close()

    # Then every node completed once its parents had, none is left waiting
    report = Report()
    check_dag(report, read_ledger(tmp_path), final)
    print(report.figures, f"deaths {deaths}")
    assert report.ok, f"seed {seed}\n" + report.describe()
    assert deaths >= 1
    assert report.figures["scenario_figures"]["nodes"] == len(plan)


def _work(
    store: Any, name: str, queues: list[str], lease_ms: int, rng: random.Random, ledger: Ledger
) -> int:
    """One round of a simulated worker; 1 when it 'died' (left its leases unanswered)."""
    jobs = list(store.claim(queues, worker=name, lease_ms=lease_ms, count=2))
    for job in jobs:
        granted = (job.lease_deadline_ms or lease_ms) - lease_ms  # the claim's Redis time
        lease = {"q": job.queue, "id": job.id, "token": job.token, "granted": granted}
        ledger.write("CLAIM", **lease, deadline=job.lease_deadline_ms)
        ledger.write("HANDLER_START", **lease)
    # It dies at random, and always on the first attempt of a node whose id ends in 7
    if jobs and (rng.random() < 0.05 or any(j.attempts == 1 and j.id[-1] == "7" for j in jobs)):
        return 1
    for job in jobs:
        ledger.write("ACK_SENT", leases=[[job.queue, job.id, job.token, None]])
        try:
            store.ack(job)
        except redisq.errors.LeaseLost:
            continue  # its lease expired meanwhile and went to another worker
    return 0


def _final(store: Any, queues: list[str]) -> FinalState:
    jobs = {}
    sets = {}
    for queue in queues:
        for job in store.list(queue):
            jobs[(queue, job.id)] = FinalJob(
                str(job.state),
                job.attempts,
                job.max_attempts,
                job.token,
                job.last_error,
                job.finished_at_ms,
            )
        sets[queue] = {"waiting": store.counts(queue).get(redisq.JobState.WAITING, 0)}
    return FinalState(jobs, sets, {}, set(), (), 0, 0)
