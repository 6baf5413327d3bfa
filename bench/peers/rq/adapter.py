"""rq: `queue.enqueue(noop, i)`, `queue.enqueue_many(...)` for bulk, a SimpleWorker in the process.
Settings: see README.md; `settings` overrides the work() keyword arguments.
"""

from __future__ import annotations

from typing import Any

import peerlib
from redis import Redis
from rq import Queue, SimpleWorker

#: SimpleWorker.work() keyword arguments (the CLI's `rq worker -w rq.SimpleWorker -q`).
WORK = {"logging_level": "WARNING"}


def noop(i: int) -> None:
    peerlib.record(i)


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**WORK, **settings}
        self.redis = Redis.from_url(url)
        self.queue = Queue("bench", connection=self.redis)
        self.worker: SimpleWorker | None = None

    def setup(self) -> None:
        self.redis.ping()

    def enqueue_one(self, i: int) -> None:
        self.queue.enqueue(noop, i)

    def enqueue_bulk(self, ids: range) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in ids])

    def prepare_worker(self) -> None:
        self.worker = SimpleWorker([self.queue], connection=self.redis)
        self.redis.ping()

    def run_worker(self) -> None:
        assert self.worker is not None
        self.worker.work(**self.options)  # SIGTERM: rq's warm shutdown

    def close(self) -> None:
        self.redis.close()
