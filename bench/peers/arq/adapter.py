"""arq: `await pool.enqueue_job("noop", i)`, no bulk API (32 enqueues in flight), one Worker in
the process. Settings: see README.md; `settings` overrides the Worker keyword arguments.
"""

from __future__ import annotations

from typing import Any

import peerlib
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

#: arq.Worker keyword arguments: its defaults (max_jobs 10, poll_delay 0.5 s); see README.md.
WORKER: dict[str, Any] = {"max_jobs": 10}


async def noop(ctx: Any, i: int) -> None:
    peerlib.record(i)


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**WORKER, **settings}
        self.redis_settings = RedisSettings.from_dsn(url)
        self.pool: Any = None
        self.worker: Worker | None = None

    async def setup(self) -> None:
        self.pool = await create_pool(self.redis_settings)

    async def _enqueue(self, i: int) -> None:
        await self.pool.enqueue_job("noop", i)

    async def enqueue_one(self, i: int) -> None:
        await self.pool.enqueue_job("noop", i)

    async def enqueue_bulk(self, ids: range) -> None:
        await peerlib.concurrently(self._enqueue, ids)

    async def prepare_worker(self) -> None:
        self.pool = await create_pool(self.redis_settings)
        self.worker = Worker(functions=[noop], redis_pool=self.pool, **self.options)

    async def run_worker(self) -> None:
        assert self.worker is not None
        await self.worker.async_run()

    async def close(self) -> None:
        await self.pool.aclose()
