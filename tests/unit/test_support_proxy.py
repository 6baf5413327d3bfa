"""The fault-injection proxies themselves, against a real valkey-server."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.polling import wait_for
from tests.support.proxy import TcpProxy, TlsTerminatingProxy, tls_proxy
from tests.support.servers import ServerProcess
from tests.support.tls import TlsFiles

INCR = "return redis.call('INCR', KEYS[1])"


def _key() -> str:
    return f"proxy-test:{uuid.uuid4().hex}"


def _raw(proxy: TcpProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("closed before a full line arrived")
        data += chunk
    return data


def test_forwards_both_directions(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    # Given a proxy in front of the server
    proxy = make_proxy(valkey_server.port)
    key, big = _key(), b"x" * (3 << 20)  # larger than the proxy's back-pressure limit

    # When a client talks through it
    with redis.Redis(host="127.0.0.1", port=proxy.port) as client:
        client.set(key, big)
        value = client.get(key)
        client.delete(key)

    # Then every byte arrived, on one connection
    assert value == big
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}"
    assert proxy.accepted == 1


def test_delayed_reply_makes_redis_py_retry_and_reexecute(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    # Given a client whose socket timeout is shorter than the delay of the next reply
    proxy = make_proxy(valkey_server.port)
    key = _key()
    with redis.Redis(
        host="127.0.0.1", port=proxy.port, socket_timeout=0.3
    ) as client:  # default retry policy
        client.ping()
        proxy.delay_next_reply(1.0)

        # When it runs a non-idempotent script
        result = client.eval(INCR, 1, key)

        # Then redis-py timed out, reconnected and ran the script a second time
        assert result == 2
        assert proxy.accepted == 2
        # ... and later traffic is not delayed
        assert client.eval(INCR, 1, key) == 3
        client.delete(key)


def test_delay_holds_only_the_next_chunk(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    with _raw(proxy) as sock:
        proxy.delay_next_reply(0.5)
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(64)  # held
        sock.settimeout(5)
        assert _read_line(sock) == b"+PONG\r\n"  # then delivered
        sock.sendall(b"PING\r\n")
        assert _read_line(sock) == b"+PONG\r\n"


def test_latency_holds_every_reply_until_set_back(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    with _raw(proxy) as sock:
        proxy.set_latency(reply=0.3)
        for _ in range(2):  # every reply, not only the next one
            sock.sendall(b"PING\r\n")
            sock.settimeout(0.1)
            with pytest.raises(TimeoutError):
                sock.recv(64)
            sock.settimeout(5)
            assert _read_line(sock) == b"+PONG\r\n"

        proxy.set_latency()
        sock.settimeout(0.2)
        sock.sendall(b"PING\r\n")
        assert _read_line(sock) == b"+PONG\r\n"


def test_latency_applies_to_requests_too(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    key = _key()
    with _raw(proxy) as sock, valkey_server.client() as admin:
        proxy.set_latency(request=0.5)
        sock.sendall(f"SET {key} 1\r\n".encode())
        # The server has not seen the request yet
        assert admin.get(key) is None
        sock.settimeout(5)
        assert _read_line(sock) == b"+OK\r\n"
        assert admin.get(key) == b"1"
        admin.delete(key)
    with pytest.raises(ValueError, match=">= 0"):
        proxy.set_latency(reply=-1)


def test_lost_reply_means_the_server_ran_the_command(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    # Given a client that does not retry, and a proxy that loses the next reply
    proxy = make_proxy(valkey_server.port)
    key = _key()
    with redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0)) as client:
        client.ping()
        proxy.lose_next_reply()

        # When it runs a script, the connection is reset instead of answering
        with pytest.raises(redis.ConnectionError):
            client.eval(INCR, 1, key)

        # Then the script ran once, and the next call goes through on a new connection
        assert client.eval(INCR, 1, key) == 2
        client.delete(key)
    assert proxy.lost_replies == 1
    assert proxy.accepted == 2


def test_freeze_holds_bytes_until_unfreeze(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    with _raw(proxy) as sock:
        sock.sendall(b"PING\r\n")
        assert _read_line(sock) == b"+PONG\r\n"

        proxy.freeze()
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(64)

        proxy.unfreeze()
        sock.settimeout(5)
        assert _read_line(sock) == b"+PONG\r\n"


def test_freeze_times_out_a_redis_py_client(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    with redis.Redis(
        host="127.0.0.1", port=proxy.port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    ) as client:
        client.ping()
        proxy.freeze()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        proxy.unfreeze()
        assert client.ping() is True


def test_drop_all_resets_connections(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    with _raw(proxy) as sock:
        sock.sendall(b"PING\r\n")
        assert _read_line(sock) == b"+PONG\r\n"
        assert proxy.connections == 1

        assert proxy.drop_all() == 1

        with pytest.raises(ConnectionResetError):  # an RST, not an orderly close (b"")
            sock.recv(64)
    assert proxy.connections == 0
    assert proxy.dropped == 1


def test_drop_all_fails_an_in_flight_command(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    # Given a command blocked in the server, from a client that does not retry
    proxy = make_proxy(valkey_server.port)
    key = _key()
    outcome: list[BaseException | object] = []

    def block() -> None:
        with redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0)) as client:
            try:
                outcome.append(client.blpop([key], timeout=10))
            except redis.RedisError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=block)
    thread.start()
    with valkey_server.client() as admin:
        wait_for(
            lambda: any(c["cmd"] == "blpop" for c in admin.client_list()),
            message="BLPOP to reach the server",
        )

    # When the proxy resets the connections
    proxy.drop_all()
    thread.join(10)

    # Then the command fails with a ConnectionError
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], redis.ConnectionError)


def test_drop_all_between_commands_is_a_transparent_reconnect(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port)
    # redis-py notices the reset connection before it sends the next command.
    with redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0)) as client:
        client.ping()
        proxy.drop_all()
        assert client.ping() is True
    assert proxy.accepted == 2


def test_retarget_moves_new_connections_only(
    valkey_server: ServerProcess,
    make_server: Callable[..., ServerProcess],
    make_proxy: Callable[..., TcpProxy],
) -> None:
    other = make_server("valkey")
    proxy = make_proxy(valkey_server.port)
    with redis.Redis(host="127.0.0.1", port=proxy.port, single_connection_client=True) as old:
        assert int(old.info("server")["tcp_port"]) == valkey_server.port

        proxy.retarget(other.port)

        with redis.Redis(host="127.0.0.1", port=proxy.port) as new:
            assert int(new.info("server")["tcp_port"]) == other.port
        assert int(old.info("server")["tcp_port"]) == valkey_server.port


def test_target_down_resets_the_client(
    make_server: Callable[..., ServerProcess], make_proxy: Callable[..., TcpProxy]
) -> None:
    server = make_server("valkey")
    proxy = make_proxy(server.port)
    server.stop()
    with (
        redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0)) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()
    server.restart()
    with redis.Redis(host="127.0.0.1", port=proxy.port) as client:
        assert client.ping() is True


def test_connection_cap_resets_extra_connections(
    valkey_server: ServerProcess, make_proxy: Callable[..., TcpProxy]
) -> None:
    proxy = make_proxy(valkey_server.port, max_connections=1)
    with _raw(proxy) as first, _raw(proxy) as second:
        first.sendall(b"PING\r\n")
        assert _read_line(first) == b"+PONG\r\n"
        with pytest.raises(ConnectionError):  # reset, or closed: either way not served
            _read_line(second)


def test_close_stops_everything(valkey_server: ServerProcess) -> None:
    proxy = TcpProxy("127.0.0.1", valkey_server.port)
    with _raw(proxy) as sock:
        sock.sendall(b"PING\r\n")
        assert _read_line(sock) == b"+PONG\r\n"
        proxy.close()
        assert proxy.closed
        assert sock.recv(64) == b""  # closed by the proxy
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.freeze()
    proxy.close()  # idempotent


def test_lifetime_bounds_a_forgotten_proxy(valkey_server: ServerProcess) -> None:
    started = time.monotonic()
    proxy = TcpProxy("127.0.0.1", valkey_server.port, lifetime=0.2)
    wait_for(lambda: proxy.closed, timeout=5)
    assert time.monotonic() - started >= 0.2
    proxy.close()


def test_tls_proxy_with_ca_in_url(valkey_server: ServerProcess, tmp_path: Path) -> None:
    proxy, ca_file = tls_proxy("127.0.0.1", valkey_server.port, tmp_path)
    with proxy:
        assert proxy.url == f"rediss://127.0.0.1:{proxy.port}"
        key = _key()
        with redis.Redis.from_url(f"{proxy.url}?ssl_ca_certs={ca_file}") as client:
            assert client.ping() is True
            assert client.eval(INCR, 1, key) == 1
            client.delete(key)


def test_tls_proxy_with_ca_kwarg_and_faults(
    valkey_server: ServerProcess, tls_files: TlsFiles
) -> None:
    with TlsTerminatingProxy("127.0.0.1", valkey_server.port, tls_files.server_context()) as proxy:
        key = _key()
        # Redis(...) applies redis-py's default retry policy; Redis.from_url does not (8.1).
        with redis.Redis(
            host="127.0.0.1",
            port=proxy.port,
            ssl=True,
            ssl_ca_certs=tls_files.ca_file,
            socket_timeout=0.3,
        ) as client:
            client.ping()
            proxy.delay_next_reply(1.0)
            assert client.eval(INCR, 1, key) == 2  # the retry went through TLS again
            proxy.drop_all()
            assert client.ping() is True
            client.delete(key)


def test_tls_proxy_refuses_untrusting_clients(
    valkey_server: ServerProcess, tls_files: TlsFiles
) -> None:
    with TlsTerminatingProxy("127.0.0.1", valkey_server.port, tls_files.server_context()) as proxy:
        # The system store does not know the test CA.
        with (
            redis.Redis.from_url(proxy.url) as client,
            pytest.raises(redis.ConnectionError),
        ):
            client.ping()
        wait_for(lambda: proxy.tls_failures >= 1, message="the proxy to see the failed handshake")
        # A plain-text client cannot talk to it either.
        with _raw(proxy) as sock:
            sock.sendall(b"PING\r\n")
            with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
                _read_line(sock)
