"""The lifespan example of docs/embedding.md, run as written (its Starlette version; the
FastAPI one differs only in the lifespan's parameter type): the worker starts with the
application, runs its jobs on the application's loop, and stops with it, leaving nothing
leased.

The application is driven as uvicorn drives it: the ASGI lifespan protocol (startup, then
shutdown) and the requests on one event loop (requests through httpx's ASGI transport;
Starlette's TestClient warns about httpx, and the suite turns warnings into errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import redisq
from redisq import JobState

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "embedding.md"


def _block(marker: str) -> str:
    """The ```python block of docs/embedding.md that contains `marker`."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"one block with {marker!r} in {DOC.name}"
    return found[0]


@pytest.fixture
def example(url: str, prefix: str, tmp_path: Path) -> Iterator[ModuleType]:
    """The Starlette example as a module, its App pointed at the test's server and keys."""
    path = tmp_path / "lifespan_example.py"
    path.write_text(_block("from starlette.applications import Starlette"))
    spec = importlib.util.spec_from_file_location("lifespan_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.tasks.url = url  # what `redisq worker --url` does to an App
    module.tasks.prefix = prefix
    yield module
    module.tasks.close()
    sys.modules.pop(spec.name, None)


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Start `app` through the ASGI lifespan protocol, yield a client, then shut it down."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    main = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(outbox.get(), 30))["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await asyncio.wait_for(outbox.get(), 60))["type"] == "lifespan.shutdown.complete"
        await main


def test_the_fastapi_and_starlette_examples_share_the_lifespan() -> None:
    fastapi = _block("from fastapi import FastAPI")
    starlette = _block("from starlette.applications import Starlette")

    def lifespan(code: str) -> str:
        found = re.search(r"(?s)@contextlib\.asynccontextmanager\n(.*?)\n\n\n", code)
        assert found is not None
        return found.group(1).replace("FastAPI", "Starlette")

    assert lifespan(fastapi) == lifespan(starlette)


def test_the_lifespan_runs_the_worker_with_the_app(example: ModuleType) -> None:
    tasks: redisq.App = example.tasks

    async def main() -> dict[str, Any]:
        async with served(example.app) as client:
            # a request enqueues a job, which the worker in the app's own loop runs
            response = await client.post("/signup/7")
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

    body = asyncio.run(main())
    assert body["result"] == "welcome sent to user 7"
    job = tasks.store.get("emails", body["job"])
    assert job is not None
    assert job.state is JobState.COMPLETED
    # the shutdown stopped the worker: nothing is leased, and nothing claims any more
    assert tasks.store.counts("emails")[JobState.LEASED] == 0
    later = example.send_welcome.enqueue(8)
    assert tasks.store.get("emails", later.id).state is JobState.READY  # type: ignore[union-attr]


def test_shutdown_with_jobs_in_flight_loses_nothing(example: ModuleType) -> None:
    # Given jobs that are running when the application shuts down
    tasks: redisq.App = example.tasks
    running: list[int] = []

    @tasks.task(queue="emails", name="slow")
    async def slow(n: int) -> None:
        running.append(n)
        await asyncio.sleep(0.3)

    refs = [slow.enqueue(n) for n in range(30)]

    async def main() -> None:
        async with served(example.app):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not running:  # polled on the loop the handlers run on
                assert loop.time() < deadline, "no slow job started"
                await asyncio.sleep(0.01)

    asyncio.run(main())
    # Then after the lifespan's shutdown every job either completed or is back in ready
    # (released, attempt not counted); none is left leased
    assert tasks.store.counts("emails")[JobState.LEASED] == 0
    states = [tasks.store.get("emails", r.id) for r in refs]
    assert all(s is not None for s in states)
    assert all(
        s.state is JobState.COMPLETED or (s.state is JobState.READY and s.attempts == 0)
        for s in states
        if s is not None
    )
    # the ones that started ran to the end within the grace period
    done = {r.id for r, s in zip(refs, states, strict=True) if s and s.state is JobState.COMPLETED}
    assert {refs[n].id for n in running} <= done
