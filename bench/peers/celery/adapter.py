"""celery with the Redis broker (kombu): `noop.delay(i)`, `group(...).apply_async()` for bulk,
one worker (thread pool) in the process. Settings: see README.md; `settings` overrides the
Worker keyword arguments.
"""

from __future__ import annotations

from typing import Any

import peerlib
from celery import Celery, group

#: app.Worker keyword arguments (the CLI's `celery worker --pool threads -c 8
#: --prefetch-multiplier 64 --without-gossip --without-mingle --without-heartbeat -l WARNING`).
WORKER = {
    "pool": "threads",
    "concurrency": 8,
    "prefetch_multiplier": 64,
    "without_gossip": True,
    "without_mingle": True,
    "without_heartbeat": True,
    "loglevel": "WARNING",
    "quiet": True,
}


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.options = {**WORKER, **settings}
        self.app = Celery("bench", broker=url)
        self.app.conf.update(
            task_ignore_result=True,
            broker_connection_retry_on_startup=True,
            worker_hijack_root_logger=False,
        )

        @self.app.task(name="noop")
        def noop(i: int) -> None:
            peerlib.record(i)

        self.noop = noop
        self.worker: Any = None

    def setup(self) -> None:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)

    def enqueue_one(self, i: int) -> None:
        self.noop.delay(i)

    def enqueue_bulk(self, ids: range) -> None:
        group(self.noop.s(i) for i in ids).apply_async()

    def prepare_worker(self) -> None:
        self.worker = self.app.Worker(**self.options)
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=3)

    def run_worker(self) -> None:
        self.worker.start()  # SIGTERM: celery's warm shutdown

    def close(self) -> None:
        self.app.close()
