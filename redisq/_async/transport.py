"""Running Calls on a redis.asyncio client: scripts by SHA with a NOSCRIPT fallback.

Like the sync transport, scripts on a standalone server take a lean path: EVALSHA packed by
hiredis (redis.asyncio packs every argument in Python), sent and read on a connection kept
checked out for whichever task finds it free (other tasks use the pool), under redis-py's
retry policy (every script is safe to run twice) and its connection handling (a read or
write that fails or is cancelled disconnects; the next use reconnects). Redis Cluster goes
through the generic path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hiredis
import redis.asyncio
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redisq._core.calls import Call
from redisq._core.scripts import ScriptSpec
from redisq._server import (
    UNREACHABLE,
    check_reply_error,
    command_error,
    connect_error,
    judge_server,
    script_error,
)

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
        self._check_server = check_server
        # The work of the first call: connect a cluster client (to name an ACL refusal of
        # its topology commands), and check the server.
        self._checked = not (check_server or cluster)
        self._check_lock = asyncio.Lock()
        self._no_waits = False
        # The lean path's connection (see the module docstring), and whether a task uses it.
        self._hot: Any = None
        self._hot_busy = False

    @property
    def client(self) -> Any:
        """The redis.asyncio client, made on first use."""
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            hot, self._hot = self._hot, None
            if hot is not None:
                await self._client.connection_pool.release(hot)
            await self._client.aclose()
            self._client = None

    async def _check(self) -> None:
        """Check the server on the first call that reaches it (see `judge_server`).

        Until a check has run, every call tries: a first call that fails to connect raises
        redis-py's error, and the next call checks.
        """
        async with self._check_lock:
            if self._checked:
                return
            client = self.client
            if self._cluster:
                # The primaries are known once it has connected.
                try:
                    await client.initialize()
                except (RedisClusterException, RedisError) as exc:
                    denied = connect_error(exc)
                    if denied is None:
                        raise
                    raise denied from exc
            if self._check_server:
                await self._check_nodes(client)
            self._checked = True

    async def _check_nodes(self, client: Any) -> None:
        infos: list[dict[str, Any] | ResponseError] = []
        unreachable: list[str] = []
        if not self._cluster:
            infos.append(await self._info({}))
        else:
            failure: Exception | None = None
            for node in client.get_primaries():
                try:
                    infos.append(await self._info({"target_nodes": node}))
                except UNREACHABLE as exc:
                    unreachable.append(node.name)
                    failure = exc
            if failure is not None and not infos:
                # No primary answered: the call would fail too; the next one checks.
                raise failure
        judge_server(infos, unreachable)

    async def _info(self, target: dict[str, Any]) -> dict[str, Any] | ResponseError:
        client = self.client
        try:
            info = dict(await client.info("server", **target))
            info.update(await client.info("memory", **target))
        except ClusterError:
            raise  # a node that cannot answer now (ClusterDownError is a ResponseError too)
        except ResponseError as exc:
            return exc  # refused: judge_server warns that the check could not run
        return info

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
        try:
            reply = await self._script(client, call.spec, call.keys, call.args)
        except ResponseError as exc:
            error = script_error(call.spec, call.keys, exc)
            if error is exc:
                raise
            raise error from exc
        return call.parse(reply)

    async def _script(self, client: Any, spec: ScriptSpec, keys: list[str], args: list[Any]) -> Any:
        if not self._cluster:
            return await self._lean_script(client, spec, keys, args)
        try:
            return await client.evalsha(spec.sha, len(keys), *keys, *args)
        except NoScriptError:
            if self._cluster and keys:
                # Load it where it runs: redis-py would send SCRIPT LOAD to every primary,
                # and fail the call when any of them is down.
                node = client.get_node_from_key(keys[0])
                await client.execute_command("SCRIPT LOAD", spec.source, target_nodes=node)
            else:
                await client.script_load(spec.source)
            return await client.evalsha(spec.sha, len(keys), *keys, *args)

    async def _lean_script(
        self, client: Any, spec: ScriptSpec, keys: list[str], args: list[Any]
    ) -> Any:
        """Run a script on the kept connection when it is free, else on one from the pool."""
        packed = hiredis.pack_command(("EVALSHA", spec.sha, len(keys), *keys, *args))
        pool = client.connection_pool
        if self._hot_busy:
            conn = await pool.get_connection()
            try:
                return await _script_on(conn, spec, packed)
            finally:
                await pool.release(conn)
        self._hot_busy = True
        try:
            if self._hot is None:
                self._hot = await pool.get_connection()
            return await _script_on(self._hot, spec, packed)
        finally:
            self._hot_busy = False

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
                        try:
                            await client.script_load(c.spec.source)
                        except ResponseError as exc:
                            error = script_error(c.spec, [], exc)
                            if error is exc:
                                raise
                            raise error from exc
                continue
            break
        return [c.parse(check_reply_error(c, r)) for c, r in zip(calls, replies, strict=True)]


async def _script_on(conn: Any, spec: ScriptSpec, packed: bytes) -> Any:
    """Send a packed EVALSHA and read its reply, under the connection's retry policy."""
    return await conn.retry.call_with_retry(
        lambda: _send_script(conn, spec, packed), lambda _error: conn.disconnect()
    )


async def _send_script(conn: Any, spec: ScriptSpec, packed: bytes) -> Any:
    await _send(conn, packed)
    try:
        return await conn.read_response()
    except NoScriptError:
        # The server lost its script cache (restart, SCRIPT FLUSH, eviction): load it again.
        await conn.send_command("SCRIPT", "LOAD", spec.source)
        await conn.read_response()
        await _send(conn, packed)
        return await conn.read_response()


async def _send(conn: Any, packed: bytes) -> None:
    """Write a packed command, as `send_packed_command` does, without its cost per call.

    redis.asyncio bounds each write by socket_timeout with asyncio.wait_for, which makes a
    task per command (about 15 us of CPU here). On a connected socket without health checks
    this writes to the stream and bounds only a drain that may wait (what the socket did not
    take at once) with asyncio.timeout; a failed, timed-out or cancelled write disconnects,
    as redis-py's does, with the errors its retry policy knows. Anything else goes the
    redis-py way.
    """
    writer = conn._writer
    if type(writer) is not asyncio.StreamWriter or conn.health_check_interval:
        await conn.send_packed_command([packed])
        return
    try:
        writer.write(packed)
        if writer.transport.get_write_buffer_size():
            # Not all sent at once: the drain may wait, within the socket timeout.
            async with asyncio.timeout(conn.socket_timeout):
                await writer.drain()
        else:
            await writer.drain()  # (never waits: nothing is buffered)
    except TimeoutError:
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
