"""streaq: `await noop.enqueue(i)`, `await worker.enqueue_many(...)` for bulk, the Worker run in
the process. Settings: see README.md; `settings` overrides the Worker keyword arguments.
"""

from __future__ import annotations

from typing import Any

import peerlib
from streaq import Worker

#: streaq.Worker keyword arguments: its defaults (concurrency 16, prefetch = concurrency).
WORKER: dict[str, Any] = {"concurrency": 16}


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.worker = Worker(redis_url=url, queue_name="bench", **{**WORKER, **settings})

        @self.worker.task(name="noop")
        async def noop(i: int) -> None:
            peerlib.record(i)

        self.noop = noop

    async def setup(self) -> None:
        await self.worker.__aenter__()

    async def enqueue_one(self, i: int) -> None:
        await self.noop.enqueue(i)

    async def enqueue_bulk(self, ids: range) -> None:
        await self.worker.enqueue_many([self.noop.enqueue(i) for i in ids])

    async def prepare_worker(self) -> None:
        pass  # run_async connects; the Worker was built in __init__

    async def run_worker(self) -> None:
        await self.worker.run_async()

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)
