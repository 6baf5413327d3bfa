"""``redis+sentinel://`` URLs: parsing them, and clients of the master a Sentinel names.

Format (docs/sentinel.md)::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/DB][?options]
    rediss+sentinel://...                   the same, with TLS to the master (and sentinels)

- hosts: the sentinels, comma-separated; the port defaults to 26379;
- MASTER: the name the sentinels monitor (``sentinel monitor MASTER ...``);
- DB: the database number (0 by default), or ``?db=N``;
- the user and password in the URL are the master's (``?password=`` may give it instead);
- ``?sentinel_username=``, ``?sentinel_password=``: the sentinels' own credentials, when
  they need any (none by default).

Every error names the part of the URL at fault and says what to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel

from redisq.errors import ConfigurationError

__all__ = ["DEFAULT_SENTINEL_PORT", "SentinelTarget", "master_client", "parse_sentinel_url"]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
_QUERY = ("db", "password", "sentinel_username", "sentinel_password")
_EXAMPLE = "redis+sentinel://host1:26379,host2:26379/mymaster/0"


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    #: The sentinels, as (host, port).
    sentinels: tuple[tuple[str, int], ...]
    #: The master's name, as the sentinels monitor it.
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def _fail(shown: str, what: str) -> ConfigurationError:
    return ConfigurationError(f"{what} in {shown}; write e.g. {_EXAMPLE}")


def _host(shown: str, index: int, text: str) -> tuple[str, int]:
    where = f"sentinel host {index + 1} ({text!r})"
    if not text:
        raise _fail(shown, f"{where} is empty: the hosts are comma-separated host[:port]")
    if text.startswith("["):  # [IPv6]:port
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _fail(shown, f"{where} is not [IPv6]:port")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
        if ":" in port_text:
            raise _fail(shown, f"{where} has several ':' (an IPv6 address goes in [brackets])")
    if not host:
        raise _fail(shown, f"{where} names no host")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdecimal() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
        raise _fail(shown, f"the port of {where} must be a number from 1 to 65535")
    return host, int(port_text)


def _one(query: dict[str, list[str]], name: str, shown: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _fail(shown, f"?{name}= is given {len(values)} times")
    return values[0]


def parse_sentinel_url(url: str, shown: str) -> SentinelTarget:
    """Check and split a ``redis+sentinel://`` URL (`shown` is the URL with its password
    hidden, for messages).

    Raises:
        ConfigurationError: a part cannot work; the message names it.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    userinfo, at, hosts_text = netloc.rpartition("@")
    if not at:
        userinfo, hosts_text = "", netloc
    if not hosts_text:
        raise _fail(shown, "the URL names no sentinel host")
    sentinels = tuple(_host(shown, i, h.strip()) for i, h in enumerate(hosts_text.split(",")))
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or not segments[0]:
        raise _fail(shown, "the master name is missing: it is the path's first part")
    if len(segments) > 2:
        raise _fail(shown, f"the path has {len(segments)} parts; it is /MASTER or /MASTER/DB")
    service = segments[0]
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_QUERY))
    if unknown:
        raise _fail(
            shown,
            f"unknown query option(s) {', '.join(map(repr, unknown))} (known: {', '.join(_QUERY)})",
        )
    db_texts = ([("the path", segments[1])] if len(segments) == 2 else []) + [
        ("?db=", v) for v in query.get("db", [])
    ]
    db = 0
    for where, text in db_texts:
        if not text.isdecimal() or not text.isascii():
            raise _fail(shown, f"the database must be a number (got {text!r} in {where})")
        db = int(text)
    query_password = _one(query, "password", shown)
    if query_password is not None:
        if password is not None:
            raise _fail(shown, "the password is given twice (before the @ and in ?password=)")
        password = query_password
    return SentinelTarget(
        sentinels=sentinels,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_username=_one(query, "sentinel_username", shown),
        sentinel_password=_one(query, "sentinel_password", shown),
        tls=scheme.startswith("rediss"),
    )


#: Options of the client that the sentinels' connections share.
_SHARED = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")


def _split(
    target: SentinelTarget, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options of the sentinels' connections, options of the master's)."""
    master = dict(options)
    master["db"] = target.db
    if target.username is not None:
        master["username"] = target.username
    if target.password is not None:
        master["password"] = target.password
    sentinel = {k: options[k] for k in _SHARED if k in options}
    if target.sentinel_username is not None:
        sentinel["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        sentinel["password"] = target.sentinel_password
    if target.tls:
        master["ssl"] = True  # the TLS connection class is picked in master_client
        sentinel["ssl"] = True
        for k, v in options.items():
            if k.startswith("ssl_"):
                sentinel[k] = v
    return sentinel, master


class _Managed(redis.sentinel.SentinelManagedConnection):
    """A master connection that asks the sentinels where the master is on every reconnect.

    redis-py reconnects a dropped connection inside send_packed_command through
    ``connect_check_health``, which skips SentinelManagedConnection's ``connect`` (the method
    that asks the sentinels): a retried command would go back to the old master's address,
    dead or demoted, again and again. Here a reconnect goes through ``connect``.
    """

    _resolving = False

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        if self._sock is None and not self._resolving and self.connection_pool.is_master:
            self._resolving = True
            try:
                self.connect()  # type: ignore[no-untyped-call]  # asks the sentinels, then back here
            finally:
                self._resolving = False
            return
        super().connect_check_health(*args, **kwargs)


class _ManagedSSL(_Managed, redis.connection.SSLConnection):
    """`_Managed` over TLS."""


class _AsyncManaged(redis.asyncio.sentinel.SentinelManagedConnection):
    """The asyncio twin of `_Managed`."""

    _resolving = False

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        if not self.is_connected and not self._resolving and self.connection_pool.is_master:
            self._resolving = True
            try:
                await self.connect()  # type: ignore[no-untyped-call]
            finally:
                self._resolving = False
            return
        await super().connect_check_health(*args, **kwargs)


class _AsyncManagedSSL(_AsyncManaged, redis.asyncio.connection.SSLConnection):
    """`_AsyncManaged` over TLS."""


class _SentinelRedis(redis.Redis):
    """The master's client; closing it closes the sentinels' connections too."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            pool: Any = self.connection_pool  # a SentinelConnectionPool
            for client in pool.sentinel_manager.sentinels:
                client.close()


class _AsyncSentinelRedis(redis.asyncio.Redis):
    """The asyncio twin of `_SentinelRedis`."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool: Any = self.connection_pool  # a SentinelConnectionPool
            for client in pool.sentinel_manager.sentinels:
                await client.aclose()


def master_client(target: SentinelTarget, options: dict[str, Any], asynchronous: bool) -> Any:
    """A redis-py client of the master: it asks the sentinels where the master is whenever
    it connects, so after a failover its next connection reaches the new master."""
    sentinel_options, master_options = _split(target, options)
    tls = master_options.pop("ssl", False)
    if asynchronous:
        master_options.setdefault("connection_class", _AsyncManagedSSL if tls else _AsyncManaged)
        manager: Any = redis.asyncio.sentinel.Sentinel(
            list(target.sentinels), sentinel_kwargs=sentinel_options
        )
        return manager.master_for(target.service, redis_class=_AsyncSentinelRedis, **master_options)
    master_options.setdefault("connection_class", _ManagedSSL if tls else _Managed)
    manager = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    return manager.master_for(target.service, redis_class=_SentinelRedis, **master_options)
