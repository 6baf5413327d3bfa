"""redis+sentinel:// URLs: the format of docs/sentinel.md, and typed errors naming the part."""

from __future__ import annotations

from typing import Any

import pytest

import redisq
from redisq._connect import DEFAULT_RETRIES, DEFAULT_TIMEOUT, redact
from redisq._sentinel import SentinelTarget, master_client, parse_sentinel_url


def _parse(url: str) -> SentinelTarget:
    return parse_sentinel_url(url, redact(url))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://h1:26379,h2:26380/mymaster/2?password=s%40cret",
            SentinelTarget((("h1", 26379), ("h2", 26380)), "mymaster", 2, None, "s@cret"),
        ),
        (
            "redis+sentinel://alice:pw@h1/main?sentinel_password=sp&sentinel_username=bob",
            SentinelTarget((("h1", 26379),), "main", 0, "alice", "pw", "bob", "sp"),
        ),
        (
            "rediss+sentinel://[::1]:5000,h2/m/?db=3",
            SentinelTarget((("::1", 5000), ("h2", 26379)), "m", 3, tls=True),
        ),
    ],
)
def test_good_urls(url: str, expected: SentinelTarget) -> None:
    assert _parse(url) == expected


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis+sentinel:///mymaster", "names no sentinel host"),
        ("redis+sentinel://h1,,h2/m", "sentinel host 2"),
        ("redis+sentinel://h1:0/m", "port of sentinel host 1"),
        ("redis+sentinel://h1:99999/m", "port of sentinel host 1"),
        ("redis+sentinel://h1:abc/m", "port of sentinel host 1"),
        ("redis+sentinel://h1,::1/m", "sentinel host 2"),
        ("redis+sentinel://h1", "master name is missing"),
        ("redis+sentinel://h1/m/x", "database must be a number"),
        ("redis+sentinel://h1/m?db=-1", "database must be a number"),
        ("redis+sentinel://h1/m/0/extra", "/MASTER or /MASTER/DB"),
        ("redis+sentinel://h1/m?colour=red", "unknown query option(s) 'colour'"),
        ("redis+sentinel://:pw@h1/m?password=other", "password is given twice"),
        ("redis+sentinel://h1/m?password=a&password=b", "?password= is given 2 times"),
    ],
)
def test_bad_urls_name_the_part(url: str, named: str) -> None:
    with pytest.raises(redisq.ConfigurationError) as caught:
        redisq.connect(url)
    assert named in str(caught.value)
    assert "redis+sentinel://host1:26379,host2:26379/mymaster/0" in str(caught.value)
    with pytest.raises(redisq.ConfigurationError):
        redisq.connect_async(url)


def test_an_unbalanced_bracket_is_a_configuration_error() -> None:
    for url in ("redis+sentinel://h1,[::1/m", "redis://[::1:6379"):
        with pytest.raises(redisq.ConfigurationError, match="IPv6"):
            redisq.connect(url)


def test_errors_and_redact_hide_every_password() -> None:
    url = "redis+sentinel://u:topsecret@h1/m/x?sentinel_password=alsosecret&password=third"
    with pytest.raises(redisq.ConfigurationError) as caught:
        redisq.connect(url)
    text = str(caught.value)
    assert "topsecret" not in text
    assert "alsosecret" not in text
    assert "third" not in text
    assert redact("redis+sentinel://h1/m?sentinel_password=x&db=1") == (
        "redis+sentinel://h1/m?sentinel_password=***&db=1"
    )


def test_cluster_and_sentinel_do_not_mix() -> None:
    with pytest.raises(redisq.ConfigurationError, match="not a Redis Cluster"):
        redisq.connect("redis+sentinel://h1/m", cluster=True)


def test_the_clients_get_the_plain_urls_timeouts_and_retries() -> None:
    # Given/When: stores on a sentinel URL (no server is reached: clients connect lazily)
    store = redisq.connect("redis+sentinel://:pw@h1:1234,h2/mymaster/3?sentinel_password=sp")
    client: Any = store.redis
    pool = client.connection_pool
    # Then: the master's connections have redisq's defaults, the database and the password
    kwargs = pool.connection_kwargs
    assert (
        kwargs["socket_timeout"] == redisq.DEFAULT_TIMEOUT
        if hasattr(redisq, "DEFAULT_TIMEOUT")
        else kwargs["socket_timeout"] == DEFAULT_TIMEOUT
    )
    assert kwargs["db"] == 3
    assert kwargs["password"] == "pw"
    assert kwargs["retry"].get_retries() == DEFAULT_RETRIES
    # ... and the sentinels', the timeouts and their own password
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"]) for s in sentinels] == ["h1", "h2"]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == DEFAULT_TIMEOUT
    store.close()


def test_tls_picks_tls_connections() -> None:
    target = _parse("rediss+sentinel://h1/m")
    client = master_client(target, {"socket_timeout": 1.0}, asynchronous=False)
    import redis.connection

    assert issubclass(client.connection_pool.connection_class, redis.connection.SSLConnection)
    client.close()
    aclient = master_client(target, {"socket_timeout": 1.0}, asynchronous=True)
    import redis.asyncio.connection

    assert issubclass(
        aclient.connection_pool.connection_class, redis.asyncio.connection.SSLConnection
    )
