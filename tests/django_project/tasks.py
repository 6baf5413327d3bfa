"""Django tasks of the test project."""

from __future__ import annotations

import os
from typing import Any

import redis

from redisq.integrations.django import _compat

task = _compat._package.task


def _record_signal(sender: Any, task_result: Any, **kwargs: Any) -> None:
    """Worker side: push "<status> <task name>" for each task_started / task_finished."""
    url = os.environ.get("REDISQ_DJANGO_URL")
    prefix = os.environ.get("REDISQ_DJANGO_PREFIX")
    if not url or not prefix:
        return  # not in a worker of the tests
    client = redis.Redis.from_url(url)
    try:
        client.rpush(f"{{{prefix}}}:signals", f"{task_result.status} {task_result.task.name}")
    finally:
        client.close()


_compat.signals.task_started.connect(_record_signal, dispatch_uid="tests-started")
_compat.signals.task_finished.connect(_record_signal, dispatch_uid="tests-finished")


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
    started = context.task_result.started_at
    return {
        "label": label,
        "attempt": context.attempt,
        "id": context.task_result.id,
        "started": started is not None,
    }


@task()
async def double(value: int) -> int:
    return value * 2


@task()
def not_json() -> object:
    return object()
