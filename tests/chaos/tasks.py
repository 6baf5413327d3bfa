"""The task module of the chaos workers: one real `redisq.Worker` per process.

The supervisor starts ``python -m tests.chaos.tasks`` with the run's settings as JSON in the
environment variable ``REDISQ_CHAOS_WORKER`` (see `WorkerConfig`). The process builds an App
whose store is a `RecordingStore`, registers one task per queue (named ``chaos.<queue>``), and
runs a Worker until SIGTERM. Its handlers write HANDLER_START / HANDLER_END lines; the job mix
comes from the payload, ``{"args": [kind, pad], "kwargs": {}}``:

- ``normal``: sleeps 5-30 ms (seeded by seed, id and attempt) and returns;
- ``slow``: runs for twice the lease while the worker renews it; stops early when the lease
  is lost (``ctx.cancelled``);
- ``crash``: on its first attempt ends the whole process with ``os._exit(137)`` mid-handler,
  later attempts run as ``normal``;
- ``poison``: raises every time, so it ends dead after max_attempts;
- ``noop``: returns at once (for scenarios about volume, run without a ledger).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redisq
from redisq import Store

from .ledger import Ledger
from .recording import RecordingStore
from .sabotage import apply

__all__ = ["ENV", "KINDS", "ChaosApp", "WorkerConfig", "main", "task_name"]

ENV = "REDISQ_CHAOS_WORKER"
KINDS = ("normal", "slow", "crash", "poison", "noop")


def task_name(queue: str) -> str:
    """The task (job name) of a chaos queue."""
    return f"chaos.{queue}"


@dataclass
class WorkerConfig:
    """What a chaos worker process needs (JSON in `ENV`)."""

    url: str
    prefix: str
    queues: list[str]
    ledger: str
    source: str
    seed: int
    lease_ms: int = 2_000
    concurrency: int = 2
    reaper_ms: int = 500
    max_attempts: int = 5
    retry_ms: int = 50
    #: Kept long enough for the checker to read every job back.
    keep: int = 1_000_000
    socket_timeout: float = 5.0
    sabotage: list[str] = field(default_factory=list)
    log_level: str = "INFO"
    #: Write the ledger (False for volume scenarios: only the worker's log is kept).
    record: bool = True
    prefetch: int = 0
    #: A Redis Cluster URL; `remap` sends each node's port to its fault proxy.
    cluster: bool = False
    remap: dict[str, int] = field(default_factory=dict)

    def to_env(self) -> str:
        """The JSON for `ENV`."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> WorkerConfig:
        """Read `ENV`."""
        return cls(**json.loads(os.environ[ENV]))


class ChaosApp(redisq.App):
    """An App whose stores record to the ledger."""

    def __init__(self, config: WorkerConfig, ledger: Ledger) -> None:
        options: dict[str, Any] = {}
        if config.cluster:
            options["cluster"] = True
            if config.remap:
                options["address_remap"] = remapper(config.remap)
        super().__init__(
            config.url,
            prefix=config.prefix,
            lease_ms=config.lease_ms,
            retention=redisq.Retention(
                completed=config.keep,
                completed_age_ms=0,
                dead=config.keep,
                dead_age_ms=0,
            ),
            socket_timeout=config.socket_timeout,
            **options,
        )
        self.config = config
        self.ledger = ledger
        self.recording: RecordingStore | None = None

    def connect(self) -> Store:
        """Open a store that writes every transition to the ledger."""
        if not self.config.record:
            return super().connect()
        recording = RecordingStore(super().connect(), self.ledger)
        self.recording = recording
        return cast(Store, recording)


def remapper(remap: dict[str, int]) -> Callable[[tuple[str, int]], tuple[str, int]]:
    """redis-py's address_remap: a cluster node's (host, port) -> its fault proxy."""

    def remap_address(address: tuple[str, int]) -> tuple[str, int]:
        port = remap.get(str(address[1]))
        return address if port is None else ("127.0.0.1", port)

    return remap_address


class Poison(Exception):
    """The failure of a poison job."""


def build(config: WorkerConfig) -> ChaosApp:
    """Make the App and register the chaos task of each queue."""
    ledger = Ledger(Path(config.ledger), config.source)
    app = ChaosApp(config, ledger)

    def handle(kind: str, pad: str, ctx: redisq.Context) -> None:
        if kind == "noop":
            return
        recording = app.recording
        assert recording is not None
        lease = recording.lease(ctx.job)
        ledger.write("HANDLER_START", **lease, attempt=ctx.attempt, kind=kind)
        rng = random.Random(f"{config.seed}:{ctx.id}:{ctx.attempt}")
        if kind == "crash" and ctx.attempt == 1:
            ledger.write("CRASH", **lease)
            os._exit(137)
        if kind == "poison":
            ledger.write("HANDLER_END", **lease, outcome="raise")
            raise Poison(f"poison job {ctx.id}, attempt {ctx.attempt}")
        if kind == "slow":
            until = time.monotonic() + 2 * config.lease_ms / 1000
            while time.monotonic() < until and not ctx.cancelled:
                time.sleep(0.05)
        else:
            time.sleep(rng.uniform(0.005, 0.030))
        ledger.write("HANDLER_END", **lease, outcome="cancelled" if ctx.cancelled else "ok")

    for queue in config.queues:
        app.task(
            name=task_name(queue),
            queue=queue,
            max_attempts=config.max_attempts,
            lease_ms=config.lease_ms,
            backoff=redisq.backoff.fixed(config.retry_ms),
        )(handle)
    return app


def main() -> None:
    """Run one chaos worker until SIGTERM."""
    config = WorkerConfig.from_env()
    for name in config.sabotage:
        apply(name)
    logging.basicConfig(
        filename=str(Path(config.ledger) / f"{config.source}-{os.getpid()}.log"),
        level=getattr(logging, config.log_level),
        format="%(asctime)s %(threadName)s %(levelname)s %(name)s: %(message)s",
    )
    app = build(config)
    worker = redisq.Worker(
        app,
        concurrency=config.concurrency,
        reaper_interval_ms=config.reaper_ms,
        grace_ms=5_000,
        name=f"{config.source}-{os.getpid()}",
        prefetch=config.prefetch,
    )
    app.ledger.write("WORKER_START", worker=worker.name, sabotage=config.sabotage)
    worker.run()
    metrics: dict[str, Any] = worker.metrics.snapshot()
    app.ledger.write("WORKER_STOP", worker=worker.name, metrics=metrics)


if __name__ == "__main__":
    main()
