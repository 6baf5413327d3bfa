"""huey: RedisHuey (blocking BRPOP), `noop(i)` to enqueue, `noop.map(ids)` for bulk, a thread
consumer in the process. Settings: see README.md; `settings` overrides the consumer options.
"""

from __future__ import annotations

from typing import Any

import peerlib
from huey import RedisHuey

#: Consumer options (huey.consumer.Consumer keyword arguments); see README.md.
CONSUMER = {"workers": 8, "worker_type": "thread", "periodic": False}


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**CONSUMER, **settings}
        self.huey = RedisHuey("bench", url=url, blocking=True)

        @self.huey.task(name="noop")
        def noop(i: int) -> None:
            peerlib.record(i)

        self.noop = noop
        self.consumer: Any = None

    def setup(self) -> None:
        self.huey.storage.conn.ping()

    def enqueue_one(self, i: int) -> None:
        self.noop(i)

    def enqueue_bulk(self, ids: range) -> None:
        self.noop.map(ids)

    def prepare_worker(self) -> None:
        self.consumer = self.huey.create_consumer(**self.options)
        self.huey.storage.conn.ping()

    def run_worker(self) -> None:
        self.consumer.run()  # SIGTERM: huey's immediate shutdown

    def close(self) -> None:
        self.huey.storage.conn.close()
