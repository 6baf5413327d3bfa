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
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import hiredis
import redis
from redis.exceptions import NoScriptError, ResponseError

from redisq._core.calls import Call
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
        # Blocking waits: the server-side ids of the connections blocked now (to unblock
        # them), and whether waits are cut short from now on (see stop_waiting).
        self._wait_lock = threading.Lock()
        self._blocked: set[int] = set()
        self._no_waits = False

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

    def stop_waiting(self) -> None:
        """Cut short the blocking waits under way, and skip those to come.

        A wait under way on the lean path is unblocked on the server (CLIENT UNBLOCK, which
        makes it return as if timed out); what is pipelined behind it (a claim) still runs
        and its reply is returned. Later blocking calls are skipped (parsed as timed out).
        Elsewhere (Redis Cluster) a wait under way ends at its own timeout.
        """
        with self._wait_lock:
            self._no_waits = True
            blocked = list(self._blocked)
        client: Any = self.client
        for client_id in blocked:
            # The id is registered just before its wait is sent: if the wait is not blocked
            # yet, try again for a moment (it ends the moment it is unblocked or returns).
            for _ in range(_UNBLOCK_TRIES):
                if client.execute_command("CLIENT", "UNBLOCK", client_id):
                    break
                with self._wait_lock:
                    if client_id not in self._blocked:
                        break
                time.sleep(_UNBLOCK_PAUSE_S)

    def _blocking_on(self, conn: Any, calls: list[Call[Any]]) -> list[Any]:
        """Run calls that start with a blocking command, where stop_waiting can reach it."""
        client_id = conn.retry.call_with_retry(
            lambda: _client_id(conn), lambda _error: conn.disconnect()
        )
        with self._wait_lock:
            skip = self._no_waits
            if not skip and client_id is not None:
                self._blocked.add(client_id)
        if skip:
            rest = self._pipeline_on(conn, calls[1:]) if len(calls) > 1 else []
            return [calls[0].parse(None), *rest]
        try:
            return self._pipeline_on(conn, calls)
        finally:
            if client_id is not None:
                with self._wait_lock:
                    self._blocked.discard(client_id)

    def run(self, call: Call[Any]) -> Any:
        """Run one Call and parse its reply."""
        if call.blocking:
            return self.pipeline([call])[0]
        if not self._checked:
            self._check()
        spec = call.spec
        if spec is None:
            return self._command(call)
        if self._lean:
            return call.parse(self._lean_script(spec, call))
        return call.parse(self._generic_script(spec, call.keys, call.args))

    def _generic_script(self, spec: ScriptSpec, keys: list[str], args: list[Any]) -> Any:
        client: Any = self.client
        try:
            return client.evalsha(spec.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL runs it on the node of its keys and caches it there (SCRIPT LOAD on a
            # cluster client goes to every primary, and fails while any one is down).
            return client.eval(spec.source, len(keys), *keys, *args)

    def pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        """Run Calls in one round trip where the client allows it.

        On the lean path the calls go out in one write and each reply is parsed as soon as
        it is read, so the client parses one reply while the server runs the next. Pipelined
        calls must be safe to run twice (reads, or transitions idempotent by id): a
        connection error re-sends them all, and calls refused with NOSCRIPT are sent again
        after a load.
        """
        if not self._checked:
            self._check()
        if not self._lean:
            # Cluster: the calls may live on different nodes; run them in turn.
            return [self._run_generic(c) for c in calls]
        if calls[0].blocking:
            return self._on_connection(lambda conn: self._blocking_on(conn, calls))
        return self._on_connection(lambda conn: self._pipeline_on(conn, calls))

    def _run_generic(self, call: Call[Any]) -> Any:
        if call.blocking:
            with self._wait_lock:
                if self._no_waits:
                    return call.parse(None)
            return self._command(call)
        return self.run(call)

    def _command(self, call: Call[Any]) -> Any:
        client: Any = self.client
        try:
            reply = client.execute_command(*call.args)
        except ResponseError as exc:
            raise command_error(call.args, exc) from exc
        return call.parse(reply)

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


#: How often, and how far apart, stop_waiting tries to unblock a wait not blocked yet.
_UNBLOCK_TRIES = 50
_UNBLOCK_PAUSE_S = 0.002


def _client_id(conn: Any) -> int | None:
    """The server-side id of a connection (CLIENT ID), asked once per socket; None if the
    server does not say (then a wait under way cannot be unblocked and ends at its timeout)."""
    sock = getattr(conn, "_sock", None)
    cached = getattr(conn, "_redisq_client_id", None)
    if sock is not None and cached is not None and cached[0] is sock:
        return int(cached[1])
    try:
        conn.send_command("CLIENT", "ID")
        client_id = int(conn.read_response())
    except ResponseError:
        return None
    conn._redisq_client_id = (getattr(conn, "_sock", None), client_id)
    return client_id


class _Failed:
    """A parse that raised, kept until every reply of the pipeline has been read."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _stream(conn: Any, calls: list[Call[Any]]) -> list[Any]:
    """Send the calls in one write, then read and parse the replies in order.

    One write (not one per call) matters for a wait with its claim behind it: sent apart,
    the server may read and answer the wait alone, and the pair costs two round trips.
    """
    packed = [
        hiredis.pack_command(tuple(c.args))
        if c.spec is None
        else hiredis.pack_command(("EVALSHA", c.spec.sha, len(c.keys), *c.keys, *c.args))
        for c in calls
    ]
    conn.send_packed_command([b"".join(packed)])
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
