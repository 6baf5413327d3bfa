"""taskiq with taskiq-redis's RedisStreamBroker: `await noop.kiq(i)`, no bulk API (32 kiq calls
in flight), the receiver run in the process as the `taskiq worker` CLI runs it.
Settings: see README.md; `settings` overrides the run_receiver_task keyword arguments.
"""

from __future__ import annotations

from typing import Any

import peerlib
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

#: run_receiver_task keyword arguments: the `taskiq worker` CLI's defaults; see README.md.
RECEIVER = {"max_async_tasks": 100, "max_prefetch": 0}


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**RECEIVER, **settings}
        self.broker = RedisStreamBroker(url, queue_name="bench")

        @self.broker.task(task_name="noop")
        async def noop(i: int) -> None:
            peerlib.record(i)

        self.noop = noop

    async def setup(self) -> None:
        await self.broker.startup()  # creates the consumer group, before any job is sent

    async def enqueue_one(self, i: int) -> None:
        await self.noop.kiq(i)

    async def enqueue_bulk(self, ids: range) -> None:
        await peerlib.concurrently(self.noop.kiq, ids)

    async def prepare_worker(self) -> None:
        self.broker.is_worker_process = True
        await self.broker.startup()

    async def run_worker(self) -> None:
        await run_receiver_task(self.broker, **self.options)

    async def close(self) -> None:
        await self.broker.shutdown()
