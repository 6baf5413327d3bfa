"""Helpers of the dashboard tests: a store with a job in every state, an HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

import redisq

T = TypeVar("T")

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)  # TEST-NET-3: never routed; only a name in the ASGI scope


def fill(store: redisq.Store, queue: str = "emails") -> dict[str, str]:
    """Put one job of `queue` in each state; return state -> job id."""
    ids: dict[str, str] = {}
    for state in ("leased", "completed", "dead"):
        store.enqueue(queue, {"n": state}, name=f"task.{state}")
        [job] = store.claim(queue, worker="worker-1")
        if state == "completed":
            store.ack(job, {"ok": True})
        elif state == "dead":
            store.nack(job, error="ValueError: boom\nTraceback line", dead=True)
        ids[state] = job.id
    ids["ready"] = store.enqueue(queue, {"n": "ready"}, name="task.ready").id
    ids["scheduled"] = store.enqueue(
        queue, {"n": "scheduled"}, name="task.scheduled", delay_ms=3_600_000
    ).id
    ids["cancelled"] = store.enqueue(queue, {"n": "cancelled"}, name="task.cancelled").id
    store.cancel(queue, ids["cancelled"])
    return ids


def drive(
    app: Any,
    scenario: Callable[[httpx.AsyncClient], Awaitable[T]],
    client: tuple[str, int] = LOOPBACK,
) -> T:
    """Run `scenario` against the ASGI app in one event loop, as the given client address."""

    async def main() -> T:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as c:
            try:
                return await scenario(c)
            finally:
                await app.state.store.close()

    return asyncio.run(main())


async def post(
    c: httpx.AsyncClient, action: str, csrf: str | None = None, base: str = "", **fields: Any
) -> httpx.Response:
    """POST an action's form with the client's CSRF cookie (load a page first)."""
    data = {"csrf": csrf if csrf is not None else c.cookies.get("redisq_csrf", ""), **fields}
    return await c.post(f"{base}/actions/{action}", data=data)
