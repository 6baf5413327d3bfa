"""The test-server harness itself: server processes, the cluster, cleanup, fixtures."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.cleanup import delete_prefix, prefix_patterns
from tests.support.cluster import ClusterProcess
from tests.support.polling import Deadline, wait_for
from tests.support.servers import (
    ServerError,
    ServerProcess,
    binary_version,
    free_port,
    redis_binary,
    valkey_binary,
)
from tests.support.tls import TlsFiles

# ------------------------------------------------------------------------ session servers


def test_real_server_configuration(real_server: ServerProcess, real_url: str) -> None:
    assert real_url == real_server.url == f"redis://127.0.0.1:{real_server.port}"
    with real_server.client() as client:
        config = client.config_get("*")
        assert client.ping() is True
        assert int(client.info("server")["process_id"]) == real_server.pid
    assert config["bind"] == "127.0.0.1"
    assert config["save"] == ""
    assert config["appendonly"] == "no"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["daemonize"] == "no"
    assert Path(config["dir"]) == real_server.dir
    assert real_server.logfile.exists()


def test_versions(valkey_server: ServerProcess) -> None:
    # Valkey reports the Redis version it is compatible with; its own version separately.
    assert valkey_server.flavor == "valkey"
    assert valkey_server.version >= (7, 2, 0)
    assert valkey_server.product_version >= (8, 0, 0)
    binary = valkey_binary()
    assert binary is not None
    assert binary_version(binary) == valkey_server.product_version


def test_redis_binary_version(redis7_server: ServerProcess) -> None:
    binary = redis_binary()
    assert binary is not None
    assert binary_version(binary) == redis7_server.version
    assert redis7_server.flavor == "redis"


def test_free_ports_are_distinct() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert all(1024 < port < 65536 for port in ports)


# ----------------------------------------------------------------------- server lifecycle


@pytest.mark.parametrize("flavor", ["valkey", "redis7"])
def test_stop_restart_same_port_and_dir(
    flavor: str, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server(flavor)
    port, folder, pid = server.port, server.dir, server.pid

    server.stop()
    assert not server.running
    with pytest.raises(ServerError):
        _ = server.pid
    with (
        pytest.raises(redis.ConnectionError),
        redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0)) as client,
    ):
        client.ping()

    server.restart()
    assert (server.port, server.dir) == (port, folder)
    assert server.pid != pid
    with server.client() as client:
        assert client.ping() is True


def test_kill_and_restart_keeps_aof_data(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("valkey", appendonly=True)
    with server.client() as client:
        client.set("survivor", "yes")
    process_id = server.pid

    server.kill()  # SIGKILL: no chance to save anything more

    assert not server.running
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(process_id, os.WNOHANG)
    server.restart()
    with server.client() as client:
        assert client.get("survivor") == b"yes"


def test_sigterm_stops_gracefully(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("valkey")
    server.kill(signal.SIGTERM)
    assert not server.running
    assert "ready to exit" in server.log_tail(50).lower()


def test_pause_and_resume(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("valkey")
    with server.client(socket_timeout=0.2, retry=Retry(NoBackoff(), 0)) as client:
        client.ping()
        server.pause()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        assert client.ping() is True


def test_stop_while_paused(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("valkey")
    server.pause()
    server.stop()
    assert not server.running


def test_close_removes_the_folder(valkey_server: ServerProcess) -> None:
    binary = valkey_binary()
    assert binary is not None
    with ServerProcess(binary) as server:
        folder = server.dir
        assert folder.is_dir()
    assert not folder.exists()
    with pytest.raises(ServerError, match="closed"):
        server.start()


def test_bad_configuration_reports_the_log() -> None:
    binary = valkey_binary()
    if binary is None:
        pytest.skip("valkey-server not found")
    with pytest.raises(ServerError, match="exited with code"):
        ServerProcess(binary, extra_args=["--no-such-option", "1"])


def test_requirepass(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("valkey", password="s3cret")
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries AuthenticationError (a ConnectionError)
    with (
        redis.Redis(host="127.0.0.1", port=server.port, retry=no_retry) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.ping()
    with redis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{server.port}") as client:
        assert client.ping() is True
    server.stop()  # SHUTDOWN NOSAVE authenticated
    assert not server.running


def test_acl_user_from_extra_args(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(
        "redis7",
        extra_args=["--user", "alice", "on", ">secret", "~*", "&*", "+@all"],
    )
    with redis.Redis.from_url(f"redis://alice:secret@127.0.0.1:{server.port}") as client:
        assert client.acl_whoami() == "alice"


def test_default_user_off_still_starts_and_stops(
    make_server: Callable[..., ServerProcess],
) -> None:
    # The harness cannot authenticate: readiness is any reply, stopping falls back to SIGTERM.
    server = make_server(
        "valkey",
        extra_args=["--user", "default", "off", "--user", "bob", "on", ">pw", "~*", "+@all"],
    )
    assert server.version >= (7, 2, 0)  # from --version, since INFO is refused
    with redis.Redis(host="127.0.0.1", port=server.port, username="bob", password="pw") as client:
        assert client.ping() is True
    server.stop()
    assert not server.running


def test_tls_port_on_redis(make_server: Callable[..., ServerProcess], tls_files: TlsFiles) -> None:
    server = make_server("redis7", tls=tls_files)
    assert server.tls_port is not None
    assert server.tls_url == f"rediss://127.0.0.1:{server.tls_port}"
    url = f"{server.tls_url}?ssl_ca_certs={tls_files.ca_file}"
    with redis.Redis.from_url(url) as client:
        assert client.ping() is True
    with redis.Redis.from_url(
        server.tls_url,
        ssl_ca_certs=tls_files.ca_file,
        ssl_certfile=tls_files.client_cert_file,
        ssl_keyfile=tls_files.client_key_file,
    ) as client:
        assert client.ping() is True


# ---------------------------------------------------------------------------------- cluster


def test_session_cluster(redis_cluster: ClusterProcess, cluster_url: str, prefix: str) -> None:
    assert cluster_url == f"redis+cluster://127.0.0.1:{redis_cluster.ports[0]}"
    assert redis_cluster.slot_ranges == [(0, 5460), (5461, 10922), (10923, 16383)]
    with redis_cluster.client() as client:
        for queue in ("a", "b", "c", "d"):
            key = f"{{{prefix}:{queue}}}:ready"
            client.set(key, queue)
            owner = redis_cluster.node_for_key(key)
            with owner.client() as direct:
                assert direct.get(key) == queue.encode()
        client.set(f"{prefix}:queues", "registry")
    assert delete_prefix(cluster_url, prefix) == 5
    with redis_cluster.client() as client:
        assert client.dbsize() == 0 or not list(client.scan_iter(match=f"*{prefix}*"))


def test_cluster_built_from_python(make_server: Callable[..., ServerProcess]) -> None:
    binary = redis_binary() or valkey_binary()
    if binary is None:
        pytest.skip("no server binary")
    with ClusterProcess(binary, use_redis_cli=False, masters=3) as cluster:
        with cluster.client() as client:
            client.set("{x}:1", "one")
            assert client.get("{x}:1") == b"one"
        assert len({cluster.node_for_slot(s).port for s in (0, 8000, 16383)}) == 3
    assert all(not node.running for node in cluster.nodes)


# ------------------------------------------------------------------------ cleanup, prefix


def test_delete_prefix_deletes_only_that_prefix(real_url: str, prefix: str) -> None:
    mine = [f"{{{prefix}:q}}:ready", f"{{{prefix}}}:workers", f"{prefix}:queues"]
    mine += [f"{{{prefix}:q}}:job:{n}" for n in range(1200)]  # several SCAN pages and DELs
    others = [f"{{{prefix}x:q}}:ready", f"x{prefix}:queues", f"{{redisq:{prefix}}}:ready"]
    with redis.Redis.from_url(real_url) as client:
        client.mset(dict.fromkeys(mine + others, "1"))
        assert delete_prefix(real_url, prefix) == len(mine)
        assert client.exists(*mine) == 0
        assert client.exists(*others) == len(others)
        client.delete(*others)


@pytest.mark.parametrize("bad", ["", "t", "t*", "t{x}", "a:b", "a b", "x" * 65])
def test_unsafe_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unsafe prefix"):
        prefix_patterns(bad)


_LEAK: dict[str, str] = {}


def test_prefix_fixture_writes(real_url: str, prefix: str) -> None:
    assert re.fullmatch(r"t[0-9a-f]{10}", prefix)
    with redis.Redis.from_url(real_url) as client:
        client.set(f"{{{prefix}:q}}:ready", "1")
    _LEAK[real_url] = prefix


def test_prefix_fixture_cleaned_up(real_url: str) -> None:
    # Runs after test_prefix_fixture_writes for the same backend (definition order).
    leaked = _LEAK.get(real_url)
    if leaked is None:
        pytest.skip("test_prefix_fixture_writes did not run for this backend")
    with redis.Redis.from_url(real_url) as client:
        assert client.exists(f"{{{leaked}:q}}:ready") == 0


def test_backend_urls(backend: str, url: str, backend_server: ServerProcess | None) -> None:
    if backend == "memory":
        assert re.fullmatch(r"memory://[a-z0-9-]+-[0-9a-f]{8}", url)
        assert backend_server is None
    elif backend == "external":
        assert url == os.environ["REDISQ_TEST_REDIS_URL"]
    else:
        assert backend_server is not None
        assert url == backend_server.url


def test_memory_urls_are_unique(request: pytest.FixtureRequest) -> None:
    from tests.conftest import _memory_url

    assert _memory_url(request) != _memory_url(request)


@pytest.mark.min_redis(7, 0)
def test_min_redis_runs_on_new_enough_servers(backend: str) -> None:
    assert backend in ("valkey", "redis7", "memory", "external")


@pytest.mark.min_redis(99, 0)
def test_min_redis_skips_older_servers(real_backend: str) -> None:
    pytest.fail(f"min_redis(99, 0) should have skipped this test on {real_backend}")


# ---------------------------------------------------------------------------------- polling


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls: list[int] = []

    def third_time() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert wait_for(third_time, timeout=5) == 3


def test_wait_for_times_out_with_a_message() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the moon"):
        wait_for(lambda: None, timeout=0.05, message="the moon")
    deadline = Deadline(0.01)
    wait_for(deadline.expired, timeout=5)
    assert deadline.remaining() == 0.0
