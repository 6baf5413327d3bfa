"""prometheus-client, imported on first use, and the HTTP server both exporters run."""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from redisq.errors import ConfigurationError, MissingExtra

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["Server", "require_prometheus"]


def require_prometheus(feature: str = "redisq.metrics") -> Any:
    """Import prometheus_client, or raise `MissingExtra` naming ``redisq[metrics]``.

    Args:
        feature: what needs it, for the message (an option's name).
    """
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise MissingExtra("metrics", feature, "prometheus_client") from exc


class Server:
    """Serves a registry at ``/metrics`` (every path, in fact) from a daemon thread.

    Args:
        registry: what a scrape collects.
        host: the address to listen on.
        port: the port (0: any free one; `port` tells which).
        what: for the error message.

    Raises:
        ConfigurationError: the address cannot be bound (the port is in use...).
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int, what: str) -> None:
        prometheus = require_prometheus(what)
        try:
            server, thread = prometheus.start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve {what} on {host}:{port}: {exc.strerror or exc}; choose another"
                " port (0 takes any free one), or stop what listens there"
            ) from exc
        self._server = server
        self._thread: threading.Thread = thread
        self.host = host
        #: The port it listens on.
        self.port: int = server.server_port

    @property
    def url(self) -> str:
        """Where to scrape it (the loopback address when it listens on every interface)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
