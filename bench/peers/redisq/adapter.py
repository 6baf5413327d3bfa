"""redisq from this checkout, through its task API: `noop.enqueue`, `noop.enqueue_many`, Worker.

Settings are Worker keyword arguments ({} = redisq's defaults; the tuned row passes
{"concurrency": 4, "prefetch": 500}, see run.py --tuned).
"""

from __future__ import annotations

from typing import Any

import peerlib

import redisq

QUEUE = "bench"


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.app = redisq.App(url)
        self.noop = self.app.task(name="bench.noop", queue=QUEUE)(self._noop)
        self.worker: redisq.Worker | None = None

    @staticmethod
    def _noop(i: int) -> None:
        peerlib.record(i)

    def setup(self) -> None:
        self.app.store.redis.ping()

    def enqueue_one(self, i: int) -> None:
        self.noop.enqueue(i)

    def enqueue_bulk(self, ids: range) -> None:
        self.noop.enqueue_many([self.noop.call(i) for i in ids])

    def prepare_worker(self) -> None:
        self.worker = redisq.Worker(self.app, **self.settings)
        self.app.store.redis.ping()  # the connection is open before the barrier

    def run_worker(self) -> None:
        assert self.worker is not None
        self.worker.run()  # until SIGTERM

    def close(self) -> None:
        self.app.close()
