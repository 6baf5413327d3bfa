"""Running Calls on a sync redis-py client: scripts by SHA with a NOSCRIPT fallback.

`SyncTransport` has a lean path for the hot operations: it speaks EVALSHA directly on a
connection (packed by hiredis, sent with send_packed_command, read with read_response),
skipping the per-call bookkeeping of `Redis.execute_command`, which costs more than the round
trip itself on loopback. One connection is kept checked out for whichever thread finds it
free, so the common single-threaded caller also skips the pool's per-call checks; other
threads use the pool. It keeps redis-py's retry policy (every script is safe to run twice)
and its connection handling. Redis Cluster goes through the generic path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import hiredis
import redis
from redis.exceptions import NoScriptError, ResponseError

from redisq._core.ops import Call
from redisq._core.scripts import ScriptSpec
from redisq._server import check_reply_error, check_server_info, command_error

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

__all__ = ["SyncTransport"]

T = TypeVar("T")


def _send_script(conn: Any, spec: ScriptSpec, keys: list[str], args: list[Any]) -> Any:
    packed = [hiredis.pack_command(("EVALSHA", spec.sha, len(keys), *keys, *args))]
    conn.send_packed_command(packed)
    try:
        return conn.read_response()
    except NoScriptError:
        # The server lost its script cache (restart, SCRIPT FLUSH, eviction): load it again.
        conn.send_command("SCRIPT", "LOAD", spec.source)
        conn.read_response()
        conn.send_packed_command(packed)
        return conn.read_response()


class SyncTransport:
    """Runs Calls on a redis-py client (standalone, fakeredis, or Redis Cluster)."""

    def __init__(self, client: redis.Redis | RedisCluster, *, check_server: bool) -> None:
        self.client = client
        self._lean = isinstance(client, redis.Redis)
        self._checked = not check_server
        self._hot: Any = None
        self._hot_pid = 0
        self._hot_lock = threading.Lock()

    def close(self) -> None:
        """Close the client's connections."""
        with self._hot_lock:
            hot, self._hot = self._hot, None
            if hot is not None and self._hot_pid == os.getpid():
                client: Any = self.client
                client.connection_pool.release(hot)
        self.client.close()

    def _script_on(self, conn: Any, spec: ScriptSpec, call: Call[Any]) -> Any:
        return conn.retry.call_with_retry(
            lambda: _send_script(conn, spec, call.keys, call.args),
            lambda _error: conn.disconnect(),
        )

    def _on_connection(self, work: Callable[[Any], T]) -> T:
        """Run `work` on the kept connection when it is free, else on one from the pool.

        (A plain function call rather than a context manager: this is the hot path.)
        """
        client: Any = self.client
        pool = client.connection_pool
        if self._hot_lock.acquire(blocking=False):
            try:
                if self._hot is None or self._hot_pid != os.getpid():
                    # After a fork the parent's connection is not ours: take a new one.
                    self._hot = pool.get_connection()
                    self._hot_pid = os.getpid()
                return work(self._hot)
            finally:
                self._hot_lock.release()
        conn = pool.get_connection()
        try:
            return work(conn)
        finally:
            pool.release(conn)

    def _lean_script(self, spec: ScriptSpec, call: Call[Any]) -> Any:
        return self._on_connection(lambda conn: self._script_on(conn, spec, call))

    def _check(self) -> None:
        self._checked = True
        client: Any = self.client
        nodes = [None] if self._lean else client.get_primaries()
        for node in nodes:
            kwargs: dict[str, Any] = {} if node is None else {"target_nodes": node}
            info = dict(client.info("server", **kwargs))
            info.update(client.info("memory", **kwargs))
            check_server_info(info)

    def run(self, call: Call[Any]) -> Any:
        """Run one Call and parse its reply."""
        if not self._checked:
            self._check()
        client: Any = self.client
        spec = call.spec
        if spec is None:
            try:
                reply = client.execute_command(*call.args)
            except ResponseError as exc:
                raise command_error(call.args, exc) from exc
            return call.parse(reply)
        if self._lean:
            return call.parse(self._lean_script(spec, call))
        return call.parse(self._generic_script(spec, call.keys, call.args))

    def _generic_script(self, spec: ScriptSpec, keys: list[str], args: list[Any]) -> Any:
        client: Any = self.client
        try:
            return client.evalsha(spec.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(spec.source)
            return client.evalsha(spec.sha, len(keys), *keys, *args)

    def pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        """Run Calls in one round trip where the client allows it.

        On the lean path each call is sent as soon as it is packed and each reply parsed as
        soon as it is read, so the server runs one call while the client packs the next and
        the client parses one reply while the server runs the next. Pipelined calls must be
        safe to run twice (reads, or transitions idempotent by id): a connection error
        re-sends them all, and calls refused with NOSCRIPT are sent again after a load.
        """
        if not self._checked:
            self._check()
        if not self._lean:
            # Cluster: the calls may live on different nodes; run them in turn.
            return [self.run(c) for c in calls]
        return self._on_connection(lambda conn: self._pipeline_on(conn, calls))

    def _pipeline_on(self, conn: Any, calls: list[Call[Any]]) -> list[Any]:
        results: list[Any] = conn.retry.call_with_retry(
            lambda: _stream(conn, calls), lambda _error: conn.disconnect()
        )
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            # The server lost its script cache mid-way: load the scripts, re-send those calls.
            sources = {c.spec.sha: c.spec.source for i in missing if (c := calls[i]).spec}
            for source in sources.values():
                conn.send_command("SCRIPT", "LOAD", source)
                conn.read_response()
            again = conn.retry.call_with_retry(
                lambda: _stream(conn, [calls[i] for i in missing]),
                lambda _error: conn.disconnect(),
            )
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, _Failed):
                raise result.error
        return results


class _Failed:
    """A parse that raised, kept until every reply of the pipeline has been read."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _stream(conn: Any, calls: list[Call[Any]]) -> list[Any]:
    """Send each call as soon as it is packed, then read and parse the replies in order."""
    for c in calls:
        if c.spec is None:
            packed = hiredis.pack_command(tuple(c.args))
        else:
            packed = hiredis.pack_command(("EVALSHA", c.spec.sha, len(c.keys), *c.keys, *c.args))
        conn.send_packed_command([packed])
    results: list[Any] = []
    for c in calls:
        try:
            reply = conn.read_response()
        except NoScriptError as exc:
            results.append(exc)
            continue
        except ResponseError as exc:
            reply = exc
        try:
            results.append(c.parse(check_reply_error(c, reply)))
        except Exception as exc:  # every reply is read before raising: the connection stays usable
            results.append(_Failed(exc))
    return results
