"""Django tasks of the test project."""

from __future__ import annotations

import os
from typing import Any

import redis

from redisq.contrib.django import _compat

task = _compat._package.task


class Boom(Exception):
    """What `fail` raises."""


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def fail(message: str) -> None:
    raise Boom(message)


@task(queue_name="reports")
def record(key: str, value: Any) -> list[Any]:
    """Append `value` to the Redis list `key` (on the test's server) and return it whole."""
    client = redis.Redis.from_url(os.environ["REDISQ_DJANGO_URL"])
    try:
        client.rpush(key, str(value))
        return [v.decode() for v in client.lrange(key, 0, -1)]
    finally:
        client.close()


@task(takes_context=True)
def attempt(context: Any, label: str) -> dict[str, Any]:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}


@task()
async def double(value: int) -> int:
    return value * 2


@task()
def not_json() -> object:
    return object()
