"""The moving parts of a chaos run: worker fleet, chaos schedule, producer, final state.

- `Fleet` runs K worker processes (``python -m tests.chaos.tasks``), each in its own session,
  restarts one that died after ``restart_delay``, and kills (SIGKILL), stops (SIGSTOP, then
  SIGCONT after a while) or ends them; every action and death goes to the chaos ledger.
- `Chaos` runs a seeded schedule of periodic actions and actions at a share of the jobs
  enqueued (a server restart at 50%), in a thread of the test process.
- `Producer` enqueues a seeded plan of jobs with fixed ids, retrying each one until Redis
  acknowledges it (enqueue is idempotent by id), writing ENQ_SENT / ENQ_OK / ENQ_ERR.
- `collect_final` reads the final state the checker needs, straight from the server.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redisq
from redisq.keys import QueueKeys, registry_key, registry_keys

from .checker import KEPT_PARTS, FinalJob, FinalState
from .ledger import Ledger
from .tasks import ENV, WorkerConfig, remapper, task_name

__all__ = ["Chaos", "Fleet", "JobPlan", "Producer", "collect_final", "plan_jobs"]

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------- fleet


@dataclass
class _Slot:
    source: str
    process: subprocess.Popen[bytes] | None = None
    stopped_until: float | None = None
    respawn_at: float | None = None
    spawned: int = 0


class Fleet:
    """K chaos worker processes, restarted when they die.

    Args:
        config: the settings every worker gets (its ``source`` is replaced per slot).
        count: how many worker processes run at once.
        events: the chaos ledger (SPAWN, EXIT, KILL, STOP, CONT lines).
        restart_delay: seconds between a death and the restart.
    """

    def __init__(
        self, config: WorkerConfig, count: int, events: Ledger, restart_delay: float = 0.5
    ) -> None:
        self.config = config
        self.events = events
        self.restart_delay = restart_delay
        self.slots = [_Slot(f"w{i}") for i in range(count)]
        self._lock = threading.Lock()
        self._closing = False
        self._halt = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="chaos-fleet", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> None:
        """Start every worker process and the thread that restarts them."""
        with self._lock:
            for slot in self.slots:
                self._spawn(slot)
        self._monitor.start()

    def _spawn(self, slot: _Slot) -> None:
        config = replace(self.config, source=slot.source)
        log = open(Path(config.ledger) / f"{slot.source}.stderr", "ab")  # noqa: SIM115
        with log:
            slot.process = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.tasks"],
                cwd=ROOT,
                env={**os.environ, ENV: config.to_env()},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        slot.spawned += 1
        slot.respawn_at = None
        slot.stopped_until = None
        self.events.write("SPAWN", target=slot.process.pid, slot=slot.source)

    def _watch(self) -> None:
        while not self._halt.wait(0.02):
            try:
                self._tick()
            except BaseException as exc:  # kept for the run to report
                self.errors.append(exc)
                return

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closing:
                return
            for slot in self.slots:
                process = slot.process
                stopped = slot.stopped_until
                if process is not None and stopped is not None and now >= stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGCONT)
                    slot.stopped_until = None
                    self.events.write("CONT", target=process.pid, slot=slot.source)
                if process is not None and process.poll() is not None:
                    self.events.write(
                        "EXIT", target=process.pid, slot=slot.source, rc=process.returncode
                    )
                    slot.process = None
                    slot.stopped_until = None
                    slot.respawn_at = now + self.restart_delay
                if slot.process is None and slot.respawn_at is not None and now >= slot.respawn_at:
                    self._spawn(slot)

    def _live(self, stoppable: bool) -> list[_Slot]:
        return [
            s
            for s in self.slots
            if s.process is not None
            and s.process.poll() is None
            and (not stoppable or s.stopped_until is None)
        ]

    def kill(self, rng: random.Random) -> int | None:
        """SIGKILL a random live worker; return its pid (None when none runs)."""
        with self._lock:
            live = self._live(stoppable=False)
            if not live:
                return None
            slot = rng.choice(live)
            assert slot.process is not None
            pid = slot.process.pid
            self.events.write("KILL", target=pid, slot=slot.source)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return pid

    def stop(self, rng: random.Random, seconds: float) -> int | None:
        """SIGSTOP a random running worker for `seconds` (then SIGCONT); return its pid."""
        with self._lock:
            live = self._live(stoppable=True)
            if not live:
                return None
            slot = rng.choice(live)
            assert slot.process is not None
            pid = slot.process.pid
            self.events.write("STOP", target=pid, slot=slot.source, seconds=seconds)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            slot.stopped_until = time.monotonic() + seconds
            return pid

    def pids(self) -> list[int]:
        """The pids of the workers alive now."""
        with self._lock:
            return [s.process.pid for s in self._live(stoppable=False) if s.process is not None]

    def close(self, grace: float = 15.0) -> None:
        """Continue stopped workers, SIGTERM all, wait up to `grace` s, then SIGKILL."""
        with self._lock:
            self._closing = True
        self._halt.set()
        if self._monitor.is_alive():
            self._monitor.join(5)
        processes = [s.process for s in self.slots if s.process is not None]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
            self.events.write("TERM", target=process.pid)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.events.write("KILL", target=process.pid, at_close=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            self.events.write("EXIT", target=process.pid, rc=process.returncode, at_close=True)
        for slot in self.slots:
            slot.process = None


# ------------------------------------------------------------------------------- chaos


@dataclass
class Periodic:
    """An action every `every` seconds, first after `first` seconds."""

    name: str
    every: float
    action: Callable[[random.Random], Any]
    first: float | None = None


@dataclass
class AtShare:
    """A one-off action once the producer has enqueued this share of its jobs."""

    name: str
    share: float
    action: Callable[[random.Random], Any]


class Chaos:
    """Runs a seeded chaos schedule in a thread until `stop`.

    Args:
        rng: the seeded random source (victims, phases).
        periodic: actions repeated at a fixed period (each starts at a seeded phase unless
            `first` is given).
        at_share: one-off actions at a share of the producer's progress.
        progress: returns the producer's progress, 0.0 to 1.0.
    """

    def __init__(
        self,
        rng: random.Random,
        periodic: Sequence[Periodic],
        at_share: Sequence[AtShare],
        progress: Callable[[], float],
    ) -> None:
        self.rng = rng
        self.progress = progress
        start = time.monotonic()
        self._next = [
            (start + (p.first if p.first is not None else rng.uniform(0.3, 1.0) * p.every), p)
            for p in periodic
        ]
        self._pending = sorted(at_share, key=lambda a: a.share)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.errors: list[BaseException] = []
        self.done: list[str] = []

    def start(self) -> None:
        """Start the schedule."""
        self._thread.start()

    def stop(self) -> None:
        """End the schedule (an action under way finishes first)."""
        self._halt.set()
        self._thread.join(60)

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                now = time.monotonic()
                if self._pending and self.progress() >= self._pending[0].share:
                    action = self._pending.pop(0)
                    action.action(self.rng)
                    self.done.append(action.name)
                    continue
                due = min(self._next, key=lambda item: item[0], default=None)
                if due is not None and due[0] <= now:
                    at, periodic = due
                    self._next.remove(due)
                    self._next.append((at + periodic.every, periodic))
                    periodic.action(self.rng)
                    self.done.append(periodic.name)
                    continue
                wait = 0.05 if due is None else min(0.05, due[0] - now)
                self._halt.wait(max(0.0, wait))
        except BaseException as exc:  # kept for the run to report
            self.errors.append(exc)


# ----------------------------------------------------------------------------- producer


@dataclass(frozen=True)
class JobPlan:
    """One job a producer enqueues (with `parents`, (queue, id) pairs: its depends_on)."""

    queue: str
    id: str
    kind: str
    parents: tuple[tuple[str, str], ...] = ()


def plan_jobs(
    rng: random.Random, count: int, queues: Sequence[str], mix: dict[str, float]
) -> list[JobPlan]:
    """A seeded job plan: ids ``j00000``..., kinds drawn from `mix`, queues in turn."""
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    return [
        JobPlan(queues[n % len(queues)], f"j{n:06d}", rng.choices(kinds, weights)[0])
        for n in range(count)
    ]


class Producer:
    """Enqueues `plan` at `rate` jobs/s through `url`, each until Redis acknowledges it.

    Args:
        url: where to enqueue (the proxy, to share the faults).
        prefix: the key prefix.
        plan: the jobs, in order.
        rate: jobs per second (0: as fast as it goes).
        ledger: its own ledger.
        lease_ms, max_attempts: the jobs' options.
        payload_bytes: size of each job's padding.
        give_up_s: how long one job may keep failing before the producer stops (a bug).
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        plan: Sequence[JobPlan],
        rate: float,
        ledger: Ledger,
        *,
        lease_ms: int,
        max_attempts: int,
        payload_bytes: int = 1024,
        give_up_s: float = 60.0,
        socket_timeout: float = 5.0,
        cluster: bool = False,
        remap: dict[str, int] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.plan = list(plan)
        self.rate = rate
        self.ledger = ledger
        self.lease_ms = lease_ms
        self.max_attempts = max_attempts
        self.pad = "x" * payload_bytes
        self.give_up_s = give_up_s
        self.socket_timeout = socket_timeout
        self.cluster = cluster
        self.remap = dict(remap or {})
        self.sent = 0
        self.errors = 0
        self.failure: BaseException | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)
        self.finished_at: float | None = None

    def progress(self) -> float:
        """The share of the plan enqueued so far."""
        return self.sent / len(self.plan) if self.plan else 1.0

    @property
    def done(self) -> bool:
        """True once every job of the plan was acknowledged (or the producer gave up)."""
        return not self._thread.is_alive() and self.finished_at is not None

    def start(self) -> None:
        """Start enqueueing in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop early (the run is over)."""
        self._halt.set()
        self._thread.join(30)

    def _run(self) -> None:
        options: dict[str, Any] = {}
        if self.remap:
            options["address_remap"] = remapper(self.remap)
        store = redisq.connect(
            self.url,
            prefix=self.prefix,
            socket_timeout=self.socket_timeout,
            cluster=self.cluster,
            **options,
        )
        try:
            start = time.monotonic()
            for n, job in enumerate(self.plan):
                if self.rate:
                    self._halt.wait(max(0.0, start + n / self.rate - time.monotonic()))
                if self._halt.is_set():
                    return
                self._enqueue(store, job)
                self.sent = n + 1
        except BaseException as exc:  # kept for the run to report
            self.failure = exc
        finally:
            self.finished_at = time.monotonic()
            with contextlib.suppress(Exception):
                store.close()

    def _enqueue(self, store: redisq.Store, job: JobPlan) -> None:
        payload = {"args": [job.kind, self.pad], "kwargs": {}}
        deps: dict[str, Any] = {}
        if job.parents:
            deps["depends_on"] = list(job.parents)
        give_up = time.monotonic() + self.give_up_s
        pause = 0.05
        while True:
            if job.parents:
                parents = [list(parent) for parent in job.parents]
                self.ledger.write(
                    "ENQ_SENT", q=job.queue, id=job.id, kind=job.kind, parents=parents
                )
            else:
                self.ledger.write("ENQ_SENT", q=job.queue, id=job.id, kind=job.kind)
            try:
                stored = store.enqueue(
                    job.queue,
                    payload,
                    id=job.id,
                    name=task_name(job.queue),
                    max_attempts=self.max_attempts,
                    lease_ms=self.lease_ms,
                    **deps,
                )
            except Exception as exc:
                self.errors += 1
                self.ledger.write(
                    "ENQ_ERR", q=job.queue, id=job.id, err=f"{type(exc).__name__}: {exc}"
                )
                if time.monotonic() > give_up:
                    raise
                if self._halt.wait(pause):
                    return
                pause = min(pause * 2, 1.0)
                continue
            self.ledger.write("ENQ_OK", q=job.queue, id=job.id, state=str(stored.state))
            return


# ------------------------------------------------------------------------- final state


def collect_final(
    url: str,
    prefix: str,
    queues: Sequence[str],
    baseline_memory: int,
    *,
    cluster: bool = False,
) -> FinalState:
    """Read what the checker needs from the server (directly, not through the proxy)."""
    store = redisq.connect(url, prefix=prefix, cluster=cluster, socket_timeout=30)
    try:
        jobs: dict[tuple[str, str], FinalJob] = {}
        sets: dict[str, dict[str, int]] = {}
        allowed = {registry_key(prefix)}
        expiring: list[str] = []
        raw: Any = store.redis
        for queue in queues:
            for job in store.list(queue):
                jobs[(queue, job.id)] = FinalJob(
                    state=str(job.state),
                    attempts=job.attempts,
                    max_attempts=job.max_attempts,
                    token=job.token,
                    last_error=job.last_error,
                    finished_at=job.finished_at_ms,
                )
            keys = QueueKeys.build(prefix, queue)
            sets[queue] = {
                part: int(raw.zcard(getattr(keys, part)))
                for part in ("ready", "scheduled", "leased", "waiting")
            }
            allowed.update(getattr(keys, part) for part in KEPT_PARTS)
            expiring.append(keys.memo_prefix)
            # The dependency edges `flow` reads expire (7 days); every other deps key must go.
            expiring += [keys.deps_prefix + "u/", keys.deps_prefix + "d/"]
        found: dict[str, tuple[str, int]] = {}
        # The worker registry: its index is kept (pruned by readers), each record expires.
        workers = registry_keys(prefix)
        allowed.add(workers.workers)
        expiring.append(workers.worker_prefix)
        for name in raw.scan_iter(count=1000):
            key = name.decode() if isinstance(name, bytes) else str(name)
            kind = raw.type(key)
            found[key] = (
                kind.decode() if isinstance(kind, bytes) else str(kind),
                int(raw.pttl(key)),
            )
        used = _used_memory(raw, cluster)
        retained = 0
        for name in allowed:
            if name in found:
                retained += int(raw.memory_usage(name, samples=0) or 0)
    finally:
        store.close()
    return FinalState(
        jobs=jobs,
        sets=sets,
        keys=found,
        allowed=allowed,
        expiring_prefixes=tuple(expiring),
        used_memory=used,
        baseline_memory=baseline_memory,
        retained_memory=retained,
    )


def _used_memory(raw: Any, cluster: bool) -> int:
    if not cluster:
        return int(raw.info("memory")["used_memory"])
    info = raw.info("memory", target_nodes=raw.PRIMARIES)
    if "used_memory" in info:  # one primary
        return int(info["used_memory"])
    return sum(int(node["used_memory"]) for node in info.values())


def used_memory(url: str, *, cluster: bool = False) -> int:
    """INFO memory used_memory of the server (summed over a cluster's nodes)."""
    store = redisq.connect(url, cluster=cluster)
    try:
        return _used_memory(store.redis, cluster)
    finally:
        store.close()
