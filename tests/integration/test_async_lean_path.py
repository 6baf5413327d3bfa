"""The asyncio store's lean script path: EVALSHA packed by hiredis on a kept connection.

The kept connection serves one task at a time (the others go through the pool), a lost
script cache is reloaded, and a call cancelled while its reply is on the way leaves no stale
reply behind for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis

import redisq
from redisq import JobState


def test_concurrent_tasks_each_get_their_own_job(url: str, prefix: str) -> None:
    async def main() -> None:
        store = redisq.connect_async(url, prefix=prefix)
        try:
            await store.enqueue("q", "first", id="first")
            jobs = await asyncio.gather(
                *(store.enqueue("q", {"n": i}, id=f"j{i}") for i in range(50))
            )
            assert [j.id for j in jobs] == [f"j{i}" for i in range(50)]
            assert [j.payload for j in jobs] == [{"n": i} for i in range(50)]
            batches = await asyncio.gather(
                *(store.enqueue_many("q", [{"b": b, "i": i} for i in range(50)]) for b in range(8))
            )
            for b, batch in enumerate(batches):
                assert [j.payload for j in batch] == [{"b": b, "i": i} for i in range(50)]
            assert (await store.counts("q"))[JobState.READY] == 1 + 50 + 8 * 50
        finally:
            await store.close()

    asyncio.run(main())


def test_a_lost_script_cache_is_loaded_again(real_url: str, prefix: str) -> None:
    async def main() -> None:
        store = redisq.connect_async(real_url, prefix=prefix)
        try:
            await store.enqueue("q", "first")
            with redis.Redis.from_url(real_url) as direct:
                direct.script_flush()
            job = await store.enqueue("q", "after the flush")
            assert (await store.get("q", job.id)) == job
        finally:
            await store.close()

    asyncio.run(main())


def test_a_cancelled_call_leaves_no_reply_for_the_next(real_url: str, prefix: str) -> None:
    async def main() -> None:
        store = redisq.connect_async(real_url, prefix=prefix)
        try:
            await store.enqueue("q", "first", id="first")
            for i in range(20):
                # Cancel an enqueue at once, mid-way, or never: whatever the moment, the
                # next call on the kept connection gets its own reply.
                task = asyncio.ensure_future(store.enqueue("q", {"cancelled": i}, id=f"c{i}"))
                for _ in range(i % 4):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                job = await store.enqueue("q", {"n": i}, id=f"j{i}")
                assert (job.id, job.payload) == (f"j{i}", {"n": i})
        finally:
            await store.close()

    asyncio.run(main())
