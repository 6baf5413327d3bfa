"""Scenarios driven through the store API in this process: S6 (fencing) and S7 (reply loss).

Each actor is a `RecordingStore` with its own ledger, so the same checker judges these runs
as the worker-fleet ones. Time is Redis time: leases are real and short, and the actors wait
for a lease to end by polling the server's TIME, never by sleeping a guessed amount.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import redis

import redisq
from redisq.errors import JobNotFound, LeaseLost
from redisq.keys import QueueKeys
from tests.support.proxy import TcpProxy

from .checker import Limits, Report, check, save_run
from .harness import collect_final, used_memory
from .ledger import Ledger, read_ledger
from .recording import RecordingStore
from .sabotage import sabotaged

__all__ = ["duel", "run_s6", "run_s7"]

PREFIX = "chaos"
QUEUE = "q"


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def wait_redis_time(client: redis.Redis, ms: int, timeout: float = 30.0) -> None:
    """Poll the server's TIME until it is past `ms` (a lease deadline)."""
    deadline = time.monotonic() + timeout
    while _server_ms(client) <= ms:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis time did not pass {ms} within {timeout:g} s")
        time.sleep(0.005)


def _recording(url: str, run_dir: Path, source: str, **options: Any) -> RecordingStore:
    keep = redisq.Retention(completed=1_000_000, completed_age_ms=0, dead=1_000_000, dead_age_ms=0)
    store = redisq.connect(url, prefix=PREFIX, retention=keep, **options)
    return RecordingStore(store, Ledger(run_dir, source))


@contextlib.contextmanager
def _maybe_sabotaged(names: tuple[str, ...]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(sabotaged(name))
        yield


def _refused(call: Callable[[], Any]) -> bool:
    """Run a holder's call; True when the store refused it (LeaseLost / JobNotFound)."""
    try:
        call()
    except (LeaseLost, JobNotFound):
        return True
    return False


# ---------------------------------------------------------------------------------- duel


def duel(
    a: RecordingStore,
    b: RecordingStore,
    admin: redis.Redis,
    job_id: str,
    lease_ms: int,
    *,
    pause_s: float,
    b_waits_for_expiry: bool = True,
    b_gives_up_s: float | None = None,
    proxy_a: TcpProxy | None = None,
) -> dict[str, Any]:
    """One round of S6: A claims, pauses past its lease, B claims and acks, A tries again.

    A's pause is a silence: with `proxy_a`, A's connection is frozen and A sends a renew into
    it, which reaches Redis only after the pause. B claims once A's lease has ended, for up to
    `b_gives_up_s` (with ``b_waits_for_expiry=False`` it first tries once at once, which only
    a broken store grants), and acks. Then A renews, acks and nacks with its old lease.

    Returns:
        What happened: A's refusals, the record before and after A's calls, B's job.
    """
    a.enqueue(QUEUE, {"args": ["normal", ""], "kwargs": {}}, id=job_id, max_attempts=5)
    jobs_key = QueueKeys.build(PREFIX, QUEUE).jobs
    (held,) = a.claim(QUEUE, worker="A", lease_ms=lease_ms)
    started = time.monotonic()
    late: list[bool] = []
    frozen = proxy_a is not None
    if proxy_a is not None:
        proxy_a.freeze()
    try:
        taken: list[redisq.Job] = []
        if not b_waits_for_expiry:
            taken = b.claim(QUEUE, worker="B", lease_ms=lease_ms)  # only a broken store gives
        if not taken:
            assert held.lease_deadline_ms is not None
            wait_redis_time(admin, held.lease_deadline_ms)
            give_up = time.monotonic() + (b_gives_up_s if b_gives_up_s is not None else 30.0)
            while not taken and time.monotonic() < give_up:
                taken = b.claim(QUEUE, worker="B", lease_ms=lease_ms)
                if not taken:
                    time.sleep(0.01)
        if taken:
            b.ack(taken[0])
        if proxy_a is not None:
            # A's renew, sent during the pause, reaches Redis when the pause ends.

            def renew_late() -> None:
                late.append(_refused(lambda: a.renew(held)))

            sender = threading.Thread(target=renew_late)
            sender.start()
            remaining = pause_s - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)  # the pause's own length (the scenario's input)
            proxy_a.unfreeze()
            frozen = False
            sender.join(30)
        before = admin.hget(jobs_key, job_id)
        refusals = [
            *late,
            _refused(lambda: a.renew(held)),
            _refused(lambda: a.ack(held)),
            _refused(lambda: a.nack(held, error="late", delay_ms=0)),
        ]
        after = admin.hget(jobs_key, job_id)
    finally:
        if frozen and proxy_a is not None:
            proxy_a.unfreeze()
    return {
        "refusals": refusals,
        "unchanged": before == after,
        "b": taken[0] if taken else None,
        "a": held,
    }


def run_s6(
    seed: int,
    run_dir: Path,
    server_url: str,
    server_port: int,
    *,
    rounds: int = 100,
    lease_ms: int = 1_000,
    pause: tuple[float, float] = (1.1, 3.0),
    sabotage: tuple[str, ...] = (),
    b_waits_for_expiry: bool = True,
    b_gives_up_s: float | None = None,
) -> Report:
    """S6 fencing: `rounds` duels, A paused U(pause) x lease through a frozen proxy.

    Every call A makes after its pause must be refused and change nothing; B's completion
    stands (attempt 2, B's token).
    """
    started = time.monotonic()
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    limits = Limits(lease_ms=lease_ms, reaper_ms=0, max_attempts=5, stop_refusals=False)
    baseline = used_memory(server_url)
    problems: list[str] = []
    refused = calls = 0
    with (
        TcpProxy("127.0.0.1", server_port) as proxy,
        _maybe_sabotaged(sabotage),
        redis.Redis.from_url(server_url) as admin,
    ):
        a = _recording(proxy.url, run_dir, "A", socket_timeout=30)
        b = _recording(server_url, run_dir, "B")
        ledger = Ledger(run_dir, "producer")
        try:
            for n in range(rounds):
                job_id = f"s6-{n:04d}"
                ledger.write("ENQ_SENT", q=QUEUE, id=job_id, kind="normal")
                ledger.write("ENQ_OK", q=QUEUE, id=job_id, state="ready")
                pause_s = rng.uniform(*pause) * lease_ms / 1000
                got = duel(
                    a,
                    b,
                    admin,
                    job_id,
                    lease_ms,
                    pause_s=pause_s,
                    b_waits_for_expiry=b_waits_for_expiry,
                    b_gives_up_s=b_gives_up_s,
                    proxy_a=proxy,
                )
                calls += len(got["refusals"])
                refused += sum(got["refusals"])
                if not all(got["refusals"]):
                    problems.append(
                        f"{job_id}: A's calls after its pause refused: {got['refusals']}"
                    )
                if not got["unchanged"]:
                    problems.append(f"{job_id}: A's late calls changed the stored record")
                taker = got["b"]
                if taker is not None and (taker.attempts != 2 or taker.token == got["a"].token):
                    problems.append(
                        f"{job_id}: B's lease has attempt {taker.attempts} and token"
                        f" {taker.token} (A's token {got['a'].token})"
                    )
        finally:
            for actor in (a, b):
                actor.close()
                actor.ledger.close()
            ledger.close()
    final = collect_final(server_url, PREFIX, [QUEUE], baseline)
    save_run(run_dir, final, limits, scenario="S6", seed=seed)
    report = check(read_ledger(run_dir), final, limits)
    for problem in problems:
        report.add("I4", problem)
    report.figures.update(
        scenario="S6",
        seed=seed,
        wall_s=round(time.monotonic() - started, 1),
        scenario_figures={"rounds": rounds, "late calls by A": calls, "refused": refused},
    )
    return report


# ---------------------------------------------------------------------------------- S7


def run_s7(
    seed: int,
    run_dir: Path,
    server_url: str,
    server_port: int,
    *,
    iterations: int = 100,
    lease_ms: int = 1_000,
    socket_timeout: float = 0.3,
    delay_s: float = 0.6,
) -> Report:
    """S7 reply loss: a reply comes `delay_s` late (past the socket timeout, so redis-py
    re-sends the call) or never (the connection is reset after the server ran the call),
    once per call, on enqueue, claim, renew and ack in turn, `iterations` times each.

    Every job must be enqueued once, leased by one lease at a time and completed once; a
    lease whose claim never answered must be back within lease + 1 s.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    limits = Limits(lease_ms=lease_ms, reaper_ms=0, max_attempts=5, stop_refusals=False)
    baseline = used_memory(server_url)
    problems: list[str] = []
    faults: dict[str, int] = {}
    orphans: list[float] = []
    with (
        TcpProxy("127.0.0.1", server_port) as proxy,
        redis.Redis.from_url(server_url) as admin,
    ):
        store = _recording(proxy.url, run_dir, "S", socket_timeout=socket_timeout)
        rescuer = _recording(server_url, run_dir, "R")
        ledger = Ledger(run_dir, "producer")
        events = Ledger(run_dir, "chaos")

        def fault(op: str) -> None:
            kind = rng.choice(["delay", "lose"])
            faults[f"{op} {kind}"] = faults.get(f"{op} {kind}", 0) + 1
            if kind == "delay":
                events.write("DELAY", op=op, seconds=delay_s)
                proxy.delay_next_reply(delay_s)
            else:
                events.write("LOSE_REPLY", op=op)
                proxy.lose_next_reply()

        try:
            for n in range(iterations * 4):
                op = ("enqueue", "claim", "renew", "ack")[n % 4]
                job_id = f"s7-{n:05d}"
                ledger.write("ENQ_SENT", q=QUEUE, id=job_id, kind="normal")
                if op == "enqueue":
                    fault(op)
                stored = _retrying(
                    partial(store.enqueue, QUEUE, {"args": [], "kwargs": {}}, id=job_id)
                )
                ledger.write("ENQ_OK", q=QUEUE, id=job_id, state=str(stored.state))
                if op == "claim":
                    fault(op)
                try:
                    jobs = store.claim(QUEUE, worker="S", lease_ms=lease_ms)
                except redis.RedisError:
                    # Every try lost its reply: the lease (if taken) is orphaned until it ends.
                    t0 = time.monotonic()
                    jobs = _rescue(rescuer, admin, lease_ms)
                    orphans.append(time.monotonic() - t0)
                    if orphans[-1] > lease_ms / 1000 + 1:
                        problems.append(
                            f"{job_id}: an orphaned lease came back after {orphans[-1]:.2f} s"
                        )
                    holder = rescuer
                else:
                    holder = store
                if len(jobs) != 1 or jobs[0].id != job_id:
                    problems.append(f"{job_id}: claim gave {[j.id for j in jobs]}")
                    continue
                job = jobs[0]
                if op == "renew":
                    fault(op)
                    with contextlib.suppress(redis.RedisError):
                        holder.renew(job)
                if op == "ack":
                    fault(op)
                _retrying(partial(holder.ack, job))
        finally:
            for actor in (store, rescuer):
                actor.close()
                actor.ledger.close()
            ledger.close()
            events.close()
        totals = redisq.connect(server_url, prefix=PREFIX)
        try:
            completed = totals.totals(QUEUE)["completed"]
            enqueued = totals.totals(QUEUE)["enqueued"]
        finally:
            totals.close()
    if completed != iterations * 4 or enqueued != iterations * 4:
        problems.append(
            f"totals: {enqueued} enqueued and {completed} completed for {iterations * 4} jobs"
        )
    final = collect_final(server_url, PREFIX, [QUEUE], baseline)
    save_run(run_dir, final, limits, scenario="S7", seed=seed)
    report = check(read_ledger(run_dir), final, limits)
    for problem in problems:
        report.add("I2", problem)
    report.figures.update(
        scenario="S7",
        seed=seed,
        wall_s=round(time.monotonic() - started, 1),
        scenario_figures={
            "injected": dict(sorted(faults.items())),
            "orphaned leases": len(orphans),
            "orphan back after (max s)": round(max(orphans), 2) if orphans else None,
            "completed total": completed,
            "enqueued total": enqueued,
        },
    )
    return report


def _retrying(call: Callable[[], Any], tries: int = 5) -> Any:
    """Call until it does not raise a connection error (the store's calls are idempotent)."""
    for attempt in range(tries):
        try:
            return call()
        except redis.RedisError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _rescue(rescuer: RecordingStore, admin: redis.Redis, lease_ms: int) -> list[redisq.Job]:
    """Claim the job whose claim lost every reply, once its lease has ended (or at once when
    the claim never ran)."""
    deadline = time.monotonic() + lease_ms / 1000 + 5
    while time.monotonic() < deadline:
        jobs = rescuer.claim(QUEUE, worker="R", lease_ms=lease_ms)
        if jobs:
            return jobs
        time.sleep(0.01)
    return []
