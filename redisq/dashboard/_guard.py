"""Who may act, and the checks every action passes: authorisation, the form, redirects."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["default_authorize", "form", "refuse", "safe_next", "who"]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def default_authorize(request: Request, action: str, queue: str | None) -> bool:
    """Allow an action from a client on loopback, or one that showed the token.

    With a token set (`app(token=...)`), the token is checked before any page or action,
    so reaching this means it was shown. Without one, only loopback clients may act: behind
    a reverse proxy every client looks like loopback, so set a token or your own hook.
    """
    if request.scope.get("redisq.token_ok"):
        return True
    client = request.client
    return _is_loopback(client.host if client else None)


def who(request: Request) -> str:
    """Name the person acting: the host app's authenticated user, else the client address."""
    user = request.scope.get("user")
    name = getattr(user, "display_name", None) or getattr(user, "username", None)
    client = request.client
    address = f"{client.host}:{client.port}" if client else "unknown"
    if name:
        return f"{name} ({address})"
    if request.scope.get("redisq.token_ok"):
        return f"token holder ({address})"
    return address


async def form(request: Request) -> FormData:
    """Parse a urlencoded form (all the dashboard's forms are), at most 1 MiB."""
    body = await request.body()
    if len(body) > 1 << 20:
        return FormData()
    pairs: list[tuple[str, str | Any]] = list(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    return FormData(pairs)


def refuse(text: str, status: int) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain")


def safe_next(root: str, target: str) -> str:
    """A redirect target: a path of this app only (never another site)."""
    local = target.startswith("/") and not target.startswith("//") and "\\" not in target
    if local and (not root or target == root or target.startswith(root + "/")):
        return target
    return f"{root}/"
