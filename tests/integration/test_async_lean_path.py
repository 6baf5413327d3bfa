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


def test_a_killed_connection_is_replaced_under_the_retry_policy(real_url: str, prefix: str) -> None:
    async def main() -> None:
        store = redisq.connect_async(real_url, prefix=prefix)
        try:
            await store.enqueue("q", "first", id="first")
            with redis.Redis.from_url(real_url) as direct:
                for _ in range(3):
                    # The server drops every other client, the kept connection among them:
                    # the next call's write or read fails, and redis-py's retry reconnects.
                    direct.client_kill_filter(_type="normal", skipme=True)
                    job = await store.enqueue("q", {"after": "kill"})
                    assert (await store.get("q", job.id)) == job
        finally:
            await store.close()

    asyncio.run(main())


def test_a_call_larger_than_the_socket_takes_at_once_is_sent_whole(url: str, prefix: str) -> None:
    async def main() -> None:
        store = redisq.connect_async(url, prefix=prefix)
        try:
            # About 1 MiB per script call: the write outgrows the socket's buffer, and the
            # drain waits for it (within the socket timeout).
            payloads = [{"i": i, "blob": bytes([i % 256]) * 1000} for i in range(2500)]
            jobs = await store.enqueue_many("q", payloads)
            assert [j.payload for j in jobs] == payloads
            stored = await store.get("q", jobs[-1].id)
            assert stored is not None
            assert stored.payload == payloads[-1]
            assert (await store.counts("q"))[JobState.READY] == 2500
        finally:
            await store.close()

    asyncio.run(main())
