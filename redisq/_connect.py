"""connect() and connect_async(): URLs to stores.

Schemes: ``redis://``, ``rediss://`` (TLS), ``unix://``, ``redis+cluster://`` and
``rediss+cluster://`` (or ``cluster=True``), ``redis+sentinel://`` and ``rediss+sentinel://``
(a master named by Sentinel, see `redisq._sentinel`), and ``memory://[name]``: an in-process
fakeredis server running the very same Lua scripts, shared by every store of the process that
names it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.backoff import ExponentialWithJitterBackoff

from redisq._async.store import AsyncStore
from redisq._async.transport import AsyncTransport
from redisq._core.calls import Settings
from redisq._core.codec import DEFAULT_PAYLOAD_LIMIT
from redisq._core.validate import MAX_DELAY_MS, MAX_LEASE_MS, check_int
from redisq._sentinel import SCHEMES as _SENTINEL_SCHEMES
from redisq._sentinel import master_client, parse_sentinel_url
from redisq._server import connect_error
from redisq._sync.store import Store
from redisq._sync.transport import SyncTransport
from redisq.errors import ConfigurationError
from redisq.keys import check_prefix
from redisq.models import Retention

__all__ = ["connect", "connect_async", "forget_memory", "memory_server", "redact"]

_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    *_SENTINEL_SCHEMES,
    "memory",
)
_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def memory_server(name: str) -> Any:
    """Return the process-wide fakeredis server called `name` (made on first use)."""
    try:
        import fakeredis
        import lupa  # noqa: F401  (fakeredis runs Lua scripts through lupa)
    except ImportError as exc:
        raise ConfigurationError(
            "memory:// (the in-process store, the default of redisq.App() and connect()) runs"
            f" on fakeredis with Lua support, which is not installed ({exc}): install it with"
            " `pip install 'redisq[memory]'`, or use a server, e.g. redis://localhost:6379"
        ) from exc
    with _memory_lock:
        server = _memory_servers.get(name)
        if server is None:
            server = fakeredis.FakeServer()
            _memory_servers[name] = server
        return server


def forget_memory(url: str) -> bool:
    """Drop the in-process server of a ``memory://name`` URL; True when there was one."""
    name = urlsplit(url).netloc or "default"
    with _memory_lock:
        return _memory_servers.pop(name, None) is not None


def _settings(
    prefix: str,
    payload_limit: int,
    retention: Retention | None,
    lease_ms: int,
    claim_memo_ms: int,
    clock: Callable[[], int] | None,
) -> Settings:
    check_prefix(prefix)
    check_int("payload_limit", payload_limit, 1, 512 * 1024 * 1024)
    check_int("lease_ms", lease_ms, 1, MAX_LEASE_MS)
    check_int("claim_memo_ms", claim_memo_ms, 0, MAX_LEASE_MS)
    kept = retention or Retention()
    for field in ("completed", "dead", "cancelled"):
        check_int(f"retention.{field}", getattr(kept, field), 0, 10**9)
        check_int(f"retention.{field}_age_ms", getattr(kept, f"{field}_age_ms"), 0, 10**13)
    check_int("retention.trim_batch", kept.trim_batch, 1, 10_000)
    check_int("retention.result_ttl_ms", kept.result_ttl_ms, 0, MAX_DELAY_MS)
    return Settings(
        prefix=prefix,
        payload_limit=payload_limit,
        retention=kept,
        lease_ms=lease_ms,
        claim_memo_ms=claim_memo_ms,
        clock=clock,
    )


#: Socket timeouts (s) unless the caller gives others: a hung server must not hang a worker.
DEFAULT_TIMEOUT = 5.0
#: Retries of a command after a connection error or timeout (redis-py's policy). A retried
#: script may run twice on the server: every transition is idempotent by job id or token.
DEFAULT_RETRIES = 3


def _client_options(options: dict[str, Any], asynchronous: bool) -> dict[str, Any]:
    """Fill in timeouts and the retry policy; redis-py's from_url() would retry nothing."""
    filled = dict(options)
    filled.setdefault("socket_timeout", DEFAULT_TIMEOUT)
    filled.setdefault("socket_connect_timeout", DEFAULT_TIMEOUT)
    if "retry" not in filled:
        backoff = ExponentialWithJitterBackoff(base=0.01, cap=1.0)
        retry_class: Any = redis.asyncio.retry.Retry if asynchronous else redis.retry.Retry
        filled["retry"] = retry_class(backoff, DEFAULT_RETRIES)
    return filled


def _blocking(settings: Settings, options: dict[str, Any], is_cluster: bool) -> Settings:
    """Fit blocking waits under the socket timeout (a second to spare), and note a cluster."""
    timeout = options.get("socket_timeout")
    limit = 60_000 if not timeout else max(100, min(60_000, int(timeout * 1000) - 1_000))
    return replace(settings, cluster=is_cluster, max_block_ms=limit)


#: Query options that hold secrets (``redis+sentinel://...?sentinel_password=``).
_SECRET_QUERY = re.compile(r"(?i)(^|&)((?:sentinel_)?password)=[^&]*")


def redact(url: str) -> str:
    """Return `url` with its passwords (before the @ and in the query) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if parts.query and _SECRET_QUERY.search(parts.query):
        parts = parts._replace(query=_SECRET_QUERY.sub(r"\1\2=***", parts.query))
    if password is None:
        return urlunsplit(parts)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}"))


def _database(url: str, path: str, query: str) -> int:
    """The database number of a redis:// URL (path ``/N`` or ``?db=N``), checked."""
    shown = redact(url)
    values = [("the path", unquote(path).strip("/"))] if path.strip("/") else []
    values += [("?db=", v) for v in parse_qs(query).get("db", [])]
    db = 0
    for where, text in values:
        if not text.isdecimal() or not text.isascii():
            raise ConfigurationError(
                f"the database in {shown} must be a number (got {text!r} in {where}): the"
                " database goes after the port, e.g. redis://localhost:6379/0 (0 to 15 on a"
                " server with the default `databases 16`)"
            )
        db = int(text)
    return db


def _check_url(url: str, scheme: str, cluster: bool) -> int:
    """Check the parts of a server URL that redis-py would ignore or fail on late.

    Returns:
        The database number (0 when the URL names none).
    """
    shown = redact(url)
    parts = urlsplit(url)
    if scheme.startswith("unix"):
        if not parts.path:
            raise ConfigurationError(
                f"{shown} names no socket file; write unix:///path/to/redis.sock"
            )
        return _database(url, "", parts.query)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"the port in {shown} cannot work ({exc}): write a number from 1 to 65535,"
            " e.g. redis://localhost:6379"
        ) from None
    if port == 0:
        raise ConfigurationError(
            f"the port in {shown} cannot work (0): write a number from 1 to 65535,"
            " e.g. redis://localhost:6379"
        )
    db = _database(url, parts.path, parts.query)
    if cluster and db != 0:
        raise ConfigurationError(
            f"{shown} names database {db}, but a Redis Cluster has only database 0; leave the"
            " database out of the URL"
        )
    if not cluster:
        from redis.connection import parse_url

        try:
            parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(f"{shown} cannot work: {exc}") from None
    return db


def _missing_database(url: str, db: int) -> ConfigurationError:
    return ConfigurationError(
        f"the server at {redact(url)} has no database {db} (it refused SELECT {db}): use a"
        " database number below the server's `databases` setting (16 by default), e.g."
        f" {redact(url).rsplit('/', 1)[0]}/0"
    )


def _is_missing_database(exc: redis.ResponseError) -> bool:
    text = str(exc).lower()
    return "db index" in text  # "DB index is out of range", "invalid DB index"


def _select_checked(url: str, db: int) -> Callable[[Any], None]:
    """A redis-py connect hook: SELECT refused for a missing database -> ConfigurationError."""

    def on_connect(connection: Any) -> None:
        try:
            connection.on_connect()
        except redis.ResponseError as exc:
            if _is_missing_database(exc):
                raise _missing_database(url, db) from None
            raise

    return on_connect


def _aselect_checked(url: str, db: int) -> Callable[[Any], Any]:
    """The asyncio twin of `_select_checked`."""

    async def on_connect(connection: Any) -> None:
        try:
            await connection.on_connect()
        except redis.ResponseError as exc:
            if _is_missing_database(exc):
                raise _missing_database(url, db) from None
            raise

    return on_connect


def _parse(url: str, cluster: bool | None, options: dict[str, Any]) -> tuple[str, Any, bool, int]:
    """Split a URL into (kind, url for redis-py, cluster?, database), checking it.

    For ``redis+sentinel://`` the second item is a `SentinelTarget`.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a str such as 'redis://localhost:6379'; got {url!r}")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # "Invalid IPv6 URL": an unbalanced [ or ]
        raise ConfigurationError(
            f"{redact(url)} cannot work ({exc}): an IPv6 address goes in [brackets], e.g."
            " redis://[::1]:6379"
        ) from None
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported URL scheme {scheme!r} in {redact(url)!r}; use one of"
            f" {', '.join(s + '://' for s in _SCHEMES)}"
        )
    if options.get("decode_responses"):
        raise ConfigurationError(
            "decode_responses=True cannot work: payloads are binary msgpack; leave it off"
        )
    if scheme == "memory":
        if cluster:
            raise ConfigurationError("memory:// is a single in-process server, not a cluster")
        return "memory", urlsplit(url).netloc or "default", False, 0
    if scheme in _SENTINEL_SCHEMES:
        if cluster:
            raise ConfigurationError(
                f"{redact(url)} names a master through Sentinel, not a Redis Cluster: leave"
                " cluster=True out, or give a cluster node's redis+cluster:// URL"
            )
        sentinel = parse_sentinel_url(url, redact(url))
        return "sentinel", sentinel, False, sentinel.db
    if scheme.endswith("+cluster"):
        target = scheme.split("+")[0] + url[len(scheme) :]
        return "redis", target, True, _check_url(url, scheme, True)
    is_cluster = bool(cluster)
    return "redis", url, is_cluster, _check_url(url, scheme, is_cluster)


def connect(
    url: str = "memory://",
    *,
    prefix: str = "redisq",
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
    retention: Retention | None = None,
    lease_ms: int = 30_000,
    claim_memo_ms: int = 10_000,
    cluster: bool | None = None,
    check_server: bool = True,
    clock: Callable[[], int] | None = None,
    **redis_options: Any,
) -> Store:
    """Open a job store (sync).

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` (TLS; redis-py's
            ``ssl_*`` options pass through), ``unix:///path.sock``, ``redis+cluster://host:port``,
            ``redis+sentinel://host:26379[,host:26379...]/MASTER[/db]`` (the master a Sentinel
            names, followed across failovers; docs/sentinel.md), or ``memory://[name]``
            (in-process, the default).
        prefix: the key prefix; all keys of queue Q live under the hash tag ``{prefix:Q}``.
        payload_limit: largest encoded payload, result or progress value in bytes (512 KiB).
        retention: how many completed, dead and cancelled jobs are kept, and how long.
        lease_ms: default lease length for claims.
        claim_memo_ms: how long a claim remembers what it leased under its request id, so
            that a client retry (after a reply later than socket_timeout) gets the same jobs
            back; 10 s covers the first retry. Memos cost about 45 bytes per leased job while
            they live (0 disables: unreturned leases then expire and are reaped).
        cluster: treat the URL as a Redis Cluster seed node.
        check_server: on first use, refuse servers older than 6.2 and warn when
            maxmemory-policy is not noeviction.
        clock: test clock in ms that replaces the Redis clock in scripts; tests only.
        **redis_options: passed to redis-py (socket_timeout, retry, ssl_ca_certs, ...).

    Raises:
        ConfigurationError: the URL or an option cannot work: an unknown scheme, a port out
            of range, a database that is not a number, a prefix with ':' (see
            `redisq.keys.check_prefix`), or ``memory://`` without fakeredis (``pip install
            'redisq[memory]'``). A database the server lacks is refused the same way when
            the first connection opens.
    """
    settings = _settings(prefix, payload_limit, retention, lease_ms, claim_memo_ms, clock)
    kind, target, is_cluster, db = _parse(url, cluster, redis_options)
    client: Any
    if kind == "memory":
        server = memory_server(target)  # first: it says what to install when fakeredis is not
        import fakeredis

        client = fakeredis.FakeRedis(server=server, **redis_options)
        settings = _blocking(settings, redis_options, False)
        return Store(SyncTransport(client, check_server=False), settings)
    options = _client_options(redis_options, asynchronous=False)
    if db and "redis_connect_func" not in options:
        options["redis_connect_func"] = _select_checked(url, db)
    settings = _blocking(settings, options, is_cluster)
    if kind == "sentinel":
        client = master_client(target, options, asynchronous=False)
    elif is_cluster:
        try:  # redis-py's cluster client connects here, to learn the topology
            client = redis.cluster.RedisCluster.from_url(target, **options)
        except (redis.exceptions.RedisClusterException, redis.RedisError) as exc:
            denied = connect_error(exc)  # an ACL user without cluster|slots or command
            if denied is None:
                raise
            raise denied from exc
    else:
        client = redis.Redis.from_url(target, **options)
    return Store(SyncTransport(client, check_server=check_server), settings)


def connect_async(
    url: str = "memory://",
    *,
    prefix: str = "redisq",
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
    retention: Retention | None = None,
    lease_ms: int = 30_000,
    claim_memo_ms: int = 10_000,
    cluster: bool | None = None,
    check_server: bool = True,
    clock: Callable[[], int] | None = None,
    **redis_options: Any,
) -> AsyncStore:
    """Open a job store for asyncio; a plain function: the connection opens on first use.

    Takes the same arguments as `connect`.
    """
    settings = _settings(prefix, payload_limit, retention, lease_ms, claim_memo_ms, clock)
    kind, target, is_cluster, db = _parse(url, cluster, redis_options)
    factory: Callable[[], Any]
    if kind == "memory":
        server = memory_server(target)  # first: it says what to install when fakeredis is not
        import fakeredis

        def factory() -> Any:
            return fakeredis.FakeAsyncRedis(server=server, **redis_options)

        settings = _blocking(settings, redis_options, False)
        return AsyncStore(AsyncTransport(factory, check_server=False, cluster=False), settings)
    options = _client_options(redis_options, asynchronous=True)
    if db and "redis_connect_func" not in options:
        options["redis_connect_func"] = _aselect_checked(url, db)
    settings = _blocking(settings, options, is_cluster)
    if kind == "sentinel":

        def factory() -> Any:
            return master_client(target, options, asynchronous=True)

    elif is_cluster:

        def factory() -> Any:
            return redis.asyncio.cluster.RedisCluster.from_url(target, **options)

    else:

        def factory() -> Any:
            return redis.asyncio.Redis.from_url(target, **options)

    transport = AsyncTransport(factory, check_server=check_server, cluster=is_cluster)
    return AsyncStore(transport, settings)
