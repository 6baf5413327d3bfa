"""saq: `await queue.enqueue("noop", i=i)`, no bulk API (32 enqueues in flight), one Worker in
the process. Settings: see README.md; `settings` overrides the Worker keyword arguments.
"""

from __future__ import annotations

from typing import Any

import peerlib
from saq import Queue, Worker

#: saq.Worker keyword arguments: its defaults (concurrency 10); see README.md.
WORKER: dict[str, Any] = {"concurrency": 10}


async def noop(ctx: Any, *, i: int) -> None:
    peerlib.record(i)


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**WORKER, **settings}
        self.url = url
        self.queue: Any = None
        self.worker: Worker | None = None

    async def setup(self) -> None:
        self.queue = Queue.from_url(self.url, name="bench")
        await self.queue.connect()

    async def _enqueue(self, i: int) -> None:
        await self.queue.enqueue("noop", i=i)

    async def enqueue_one(self, i: int) -> None:
        await self.queue.enqueue("noop", i=i)

    async def enqueue_bulk(self, ids: range) -> None:
        await peerlib.concurrently(self._enqueue, ids)

    async def prepare_worker(self) -> None:
        await self.setup()
        self.worker = Worker(self.queue, functions=[noop], **self.options)

    async def run_worker(self) -> None:
        assert self.worker is not None
        await self.worker.start()

    async def close(self) -> None:
        await self.queue.disconnect()
