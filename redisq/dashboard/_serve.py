"""Serve the dashboard with uvicorn in a background thread (the demo's `--dashboard`)."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["Serving"]


class Serving:
    """uvicorn serving an ASGI app on host:port in a daemon thread, until `stop`."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="redisq-dashboard")
        self._thread.daemon = True
        self.url = f"http://{host}:{port}/"

    def start(self, timeout_s: float = 10.0) -> Serving:
        """Start serving; raise RuntimeError when it has not started within `timeout_s`."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.url} (port taken?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (at most 10 s)."""
        self._server.should_exit = True
        self._thread.join(10)
