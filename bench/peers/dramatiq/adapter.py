"""dramatiq: RedisBroker, `noop.send(i)`, `group(...).run()` for bulk, one Worker in the process.
Settings: see README.md; `settings` overrides the Worker keyword arguments.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import dramatiq
import peerlib
from dramatiq.brokers.redis import RedisBroker

#: dramatiq.Worker keyword arguments: the CLI's default of 8 threads per process; see README.md.
WORKER = {"worker_threads": 8}


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**WORKER, **settings}
        self.broker = RedisBroker(url=url)
        dramatiq.set_broker(self.broker)

        @dramatiq.actor(actor_name="noop", broker=self.broker)
        def noop(i: int) -> None:
            peerlib.record(i)

        self.noop = noop
        self.worker: dramatiq.Worker | None = None
        self.stopping = threading.Event()

    def setup(self) -> None:
        self.broker.client.ping()

    def enqueue_one(self, i: int) -> None:
        self.noop.send(i)

    def enqueue_bulk(self, ids: range) -> None:
        dramatiq.group(self.noop.message(i) for i in ids).run()

    def prepare_worker(self) -> None:
        self.worker = dramatiq.Worker(self.broker, **self.options)
        self.broker.client.ping()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())

    def run_worker(self) -> None:
        assert self.worker is not None
        self.worker.start()
        self.stopping.wait()
        self.worker.stop()

    def close(self) -> None:
        self.broker.close()
