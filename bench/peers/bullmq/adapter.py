"""bullmq (the Python port): `await queue.add(...)`, `await queue.addBulk(...)` for bulk, one
Worker in the process. Settings: see README.md; `settings` overrides the Worker options.
"""

from __future__ import annotations

from typing import Any

import peerlib
from bullmq import Queue, Worker

#: Worker options: concurrency 50, as in BullMQ's concurrency guide; see README.md.
WORKER: dict[str, Any] = {"concurrency": 50}
#: Job options: completed jobs are removed (BullMQ keeps them forever by default).
JOB = {"removeOnComplete": True}


async def process(job: Any, token: str) -> None:
    peerlib.record(job.data["i"])


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.url = url
        self.options = {**WORKER, **settings}
        self.queue: Queue | None = None
        self.worker: Worker | None = None

    async def setup(self) -> None:
        self.queue = Queue("bench", {"connection": self.url})

    async def enqueue_one(self, i: int) -> None:
        assert self.queue is not None
        await self.queue.add("noop", {"i": i}, JOB)

    async def enqueue_bulk(self, ids: range) -> None:
        assert self.queue is not None
        await self.queue.addBulk([{"name": "noop", "data": {"i": i}, "opts": JOB} for i in ids])

    async def prepare_worker(self) -> None:
        options = {"connection": self.url, "autorun": False, **self.options}
        self.worker = Worker("bench", process, options)

    async def run_worker(self) -> None:
        assert self.worker is not None
        await self.worker.run()

    async def close(self) -> None:
        assert self.queue is not None
        await self.queue.close()
