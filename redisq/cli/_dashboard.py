"""`dashboard`: serve the web dashboard (docs/dashboard.md) until Ctrl-C."""

from __future__ import annotations

import argparse
import os

from redisq.cli._base import EXIT_OK, Commands, Context, Failed
from redisq.cli._server import _check_free, _port

__all__ = ["add_dashboard"]


def _dashboard(args: argparse.Namespace, ctx: Context) -> int:
    try:
        import uvicorn

        from redisq.dashboard import app
    except ImportError as exc:
        raise Failed(
            f"the dashboard needs the 'dashboard' extra ({exc}); "
            "install it with `pip install 'redisq[dashboard]'`"
        ) from None
    token = os.environ.get("REDISQ_DASHBOARD_TOKEN") or None
    if args.port:
        _check_free(args.host, args.port)
    application = app(ctx.url, prefix=ctx.prefix, read_only=args.read_only, token=token)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    mode = "read-only" if args.read_only else "actions from loopback" if not token else "token"
    ctx.emit(
        {"url": f"http://{shown}:{args.port}/", "read_only": args.read_only},
        f"redisq dashboard: http://{shown}:{args.port}/ ({mode}); Ctrl-C stops it",
    )
    uvicorn.run(
        application,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
    )
    return EXIT_OK


def add_dashboard(commands: Commands) -> None:
    """Add `redisq dashboard`."""
    parser = commands.add(
        "dashboard",
        _dashboard,
        help="serve the web dashboard (needs redisq[dashboard])",
        description=(
            "Serve the web dashboard in the foreground until Ctrl-C: queues, jobs, dead\n"
            "letters, workers, schedules and Redis, all read from Redis. Actions (retry,\n"
            "cancel, delete, pause, purge, ...) are allowed from loopback clients only,\n"
            "unless $REDISQ_DASHBOARD_TOKEN is set: then every page and action needs that\n"
            "token. --read-only turns every action off."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="TCP port (8080)")
    parser.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (info); actions are logged at info by redisq.dashboard",
    )
