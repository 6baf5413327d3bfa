"""A broken queue for the peer benchmark's own test: a Redis list whose worker runs every
seventh job twice. The harness must report it as failing "every job once", not hide it.

It runs in the harness's interpreter (no requirements.txt), with redis-py.
"""

from __future__ import annotations

from typing import Any

import peerlib
import redis

KEY = "dup-queue"


class Adapter:
    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.client = redis.Redis.from_url(url)

    def setup(self) -> None:
        self.client.ping()

    def enqueue_one(self, i: int) -> None:
        self.client.lpush(KEY, i)

    def enqueue_bulk(self, ids: range) -> None:
        self.client.lpush(KEY, *ids)

    def prepare_worker(self) -> None:
        self.client.ping()

    def run_worker(self) -> None:
        while True:  # until SIGTERM
            popped = self.client.brpop([KEY], timeout=1)
            if popped is None:
                continue
            i = int(popped[1])
            peerlib.record(i)
            if i % 7 == 0:
                peerlib.record(i)  # the bug: this job "runs" twice

    def close(self) -> None:
        self.client.close()
