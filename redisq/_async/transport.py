"""Running Calls on a redis.asyncio client: scripts by SHA with a NOSCRIPT fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from redisq._core.calls import Call
from redisq._server import check_reply_error, check_server_info, command_error

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

__all__ = ["AsyncTransport"]


class AsyncTransport:
    """Runs Calls on a redis.asyncio client (standalone, fakeredis, or Redis Cluster)."""

    def __init__(
        self,
        factory: Callable[[], redis.asyncio.Redis | AsyncRedisCluster],
        *,
        check_server: bool,
        cluster: bool,
    ) -> None:
        # The client is made on first use, inside the running event loop.
        self._factory = factory
        self._client: Any = None
        self._cluster = cluster
        self._checked = not check_server
        self._no_waits = False

    @property
    def client(self) -> Any:
        """The redis.asyncio client, made on first use."""
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _check(self) -> None:
        self._checked = True
        client = self.client
        nodes = client.get_primaries() if self._cluster else [None]
        for node in nodes:
            kwargs: dict[str, Any] = {} if node is None else {"target_nodes": node}
            info = dict(await client.info("server", **kwargs))
            info.update(await client.info("memory", **kwargs))
            check_server_info(info)

    def stop_waiting(self) -> None:
        """Skip the blocking waits to come (parsed as timed out).

        A wait under way ends at its own timeout, or when its task is cancelled (the asyncio
        way to interrupt it); what is pipelined behind it still runs.
        """
        self._no_waits = True

    async def run(self, call: Call[Any]) -> Any:
        """Run one Call and parse its reply."""
        if call.blocking and self._no_waits:
            return call.parse(None)
        if not self._checked:
            await self._check()
        client = self.client
        if call.spec is None:
            try:
                reply = await client.execute_command(*call.args)
            except ResponseError as exc:
                raise command_error(call.args, exc) from exc
            return call.parse(reply)
        spec, keys, args = call.spec, call.keys, call.args
        try:
            reply = await client.evalsha(spec.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL runs it on the node of its keys and caches it there (SCRIPT LOAD on a
            # cluster client goes to every primary, and fails while any one is down).
            reply = await client.eval(spec.source, len(keys), *keys, *args)
        return call.parse(reply)

    async def pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        """Run Calls in one round trip where the client allows it.

        Pipelined calls must be safe to run twice (reads, or transitions idempotent by id or
        request): calls refused with NOSCRIPT are sent again, all of them, after a load.
        """
        if calls[0].blocking and self._no_waits:
            rest = await self.pipeline(calls[1:]) if len(calls) > 1 else []
            return [calls[0].parse(None), *rest]
        if not self._checked:
            await self._check()
        if self._cluster:
            return [await self.run(c) for c in calls]
        client = self.client
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for c in calls:
                if c.spec is None:
                    pipe.execute_command(*c.args)
                else:
                    pipe.evalsha(c.spec.sha, len(c.keys), *c.keys, *c.args)
            replies = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                for c in calls:
                    if c.spec is not None:
                        await client.script_load(c.spec.source)
                continue
            break
        return [c.parse(check_reply_error(c, r)) for c, r in zip(calls, replies, strict=True)]
