"""The redisq web dashboard: an ASGI app that reads every figure from Redis.

Serve it with ``redisq dashboard --url redis://... --port 8080`` or mount
``redisq.dashboard.app(url)`` into any ASGI framework (docs/dashboard.md). It needs the
``dashboard`` extra: ``pip install 'redisq[dashboard]'``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401  (checked here so the error names the extra)
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"redisq.dashboard needs the 'dashboard' extra ({exc.name} is missing): "
        "install it with `pip install 'redisq[dashboard]'`."
    ) from exc

from redisq.dashboard._app import ACTIONS, Authorize, app, default_authorize

__all__ = ["ACTIONS", "Authorize", "app", "default_authorize"]
