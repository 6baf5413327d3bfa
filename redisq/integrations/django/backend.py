"""`RedisqBackend`: a backend of Django's tasks framework that enqueues into redisq.

A Django task call becomes one redisq job (msgpack, never pickle):

- name: the task's module path (``myapp.tasks.send_mail``), as redisq task names are;
- payload: ``{"args": [...], "kwargs": {...}}``, the JSON-safe arguments Django allows;
- queue: the task's ``queue_name``, unchanged;
- priority: Django's -100..100 times 10, onto redisq's -1000..1000 (higher runs first in
  both, and the order of any two tasks is kept);
- run_at_ms: the task's ``run_after`` (a time, not a delay), in ms since the epoch.

The result id Django hands out is ``"<queue>:<job id>"``, so `get_result` reads the one job
with one round trip. Workers run the jobs through `DjangoApp` (see
``redisq.integrations.django.worker``), which finds each task by the job's name.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from inspect import iscoroutinefunction
from typing import Any

from redisq._core.tasks import make_payload
from redisq._core.validate import MAX_ATTEMPTS, MAX_DELAY_MS, MAX_LEASE_MS, check_int, check_name
from redisq.app import App
from redisq.context import current_context
from redisq.errors import ConfigurationError, InvalidArgument
from redisq.integrations.django import _compat
from redisq.models import Job, JobState
from redisq.task import Task, TaskSettings

__all__ = ["DjangoApp", "RedisqBackend", "django_priority", "redisq_priority"]

logger = logging.getLogger("redisq.integrations.django")

#: Django priorities are whole numbers in [-100, 100]; redisq's in [-1000, 1000].
PRIORITY_SCALE = 10

#: redisq states -> Django's TaskResultStatus names.
_STATUS = {
    JobState.WAITING: "READY",
    JobState.SCHEDULED: "READY",
    JobState.READY: "READY",
    JobState.LEASED: "RUNNING",
    JobState.COMPLETED: "SUCCESSFUL",
    JobState.DEAD: "FAILED",
    JobState.CANCELLED: "FAILED",
}

#: The OPTIONS a RedisqBackend takes, with their defaults.
_OPTIONS: dict[str, Any] = {
    "url": None,
    "prefix": "redisq",
    "max_attempts": 1,
    "lease_ms": None,
    "timeout_ms": None,
    "result_ttl_ms": None,
    "connect_options": None,
}

#: An exception's name at the start of a job's last_error (``pkg.mod.Error: text``).
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def redisq_priority(priority: int) -> int:
    """Map a Django task priority (-100..100) onto redisq's range (-1000..1000)."""
    return priority * PRIORITY_SCALE


def django_priority(priority: int) -> int:
    """Map a redisq job priority back onto Django's range (rounded toward zero)."""
    return int(priority / PRIORITY_SCALE)


def normalize_json(value: Any) -> Any:
    """Turn `value` into JSON-safe data (lists, dicts, str, int, float, bool, None).

    The same rules as Django's: tuples become lists, bytes must be UTF-8 text.

    Raises:
        TypeError: `value` holds something JSON cannot carry.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {normalize_json(k): normalize_json(v) for k, v in value.items()}
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise TypeError("bytes that are not UTF-8 text cannot be JSON") from None
    if isinstance(value, Sequence):
        return [normalize_json(v) for v in value]
    raise TypeError(f"a {type(value).__name__} cannot be JSON (use lists, dicts, str, numbers)")


def _options(alias: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a backend's OPTIONS; every error names the setting and what it must be."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    given = params.get("OPTIONS") or {}
    if not isinstance(given, Mapping):
        raise ConfigurationError(f"{where} must be a dict such as {{'url': 'redis://...'}}")
    unknown = sorted(set(given) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown option(s) {', '.join(map(repr, unknown))}; the options are"
            f" {', '.join(map(repr, _OPTIONS))} (docs/django.md)"
        )
    options = {**_OPTIONS, **given}
    url = options["url"]
    if not isinstance(url, str) or not url:
        raise ConfigurationError(
            f"{where}['url'] must name the redisq server, e.g. 'redis://localhost:6379/0'"
            f" (got {url!r}): workers in other processes read the jobs from there"
        )
    try:
        check_int(f"{where}['max_attempts']", options["max_attempts"], 1, MAX_ATTEMPTS)
        if options["lease_ms"] is not None:
            check_int(f"{where}['lease_ms']", options["lease_ms"], 1, MAX_LEASE_MS)
        if options["timeout_ms"] is not None:
            check_int(f"{where}['timeout_ms']", options["timeout_ms"], 1, MAX_DELAY_MS)
        if options["result_ttl_ms"] is not None:
            check_int(f"{where}['result_ttl_ms']", options["result_ttl_ms"], 0, MAX_DELAY_MS)
        queues = params.get("QUEUES")
        for i, queue in enumerate(queues or ()):
            check_name(f"TASKS[{alias!r}]['QUEUES'][{i}]", queue)
    except InvalidArgument as exc:
        raise ConfigurationError(str(exc)) from None
    extra = options["connect_options"]
    if extra is not None and not isinstance(extra, Mapping):
        raise ConfigurationError(
            f"{where}['connect_options'] must be a dict of redisq.connect() options, e.g."
            f" {{'socket_timeout': 5}} (got {extra!r})"
        )
    return options


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _run_at_ms(run_after: datetime) -> int:
    """The redisq run time of a task's run_after (a naive time is in Django's time zone)."""
    from django.utils import timezone

    if timezone.is_naive(run_after):
        run_after = timezone.make_aware(run_after)
    return max(0, int(run_after.timestamp() * 1000))


def _task_error(last_error: str) -> Any:
    """A Django TaskError from a job's last_error: ``Summary: text\\n\\nTraceback...``.

    redisq keeps the latest error of a job, as text; its first line names the exception
    (``module.Class`` outside builtins). An error the worker gave on its own (a lease lost,
    a task no worker knows) is reported as ``redisq.errors.JobFailed``.
    """
    summary = last_error.split("\n", 1)[0]
    name = summary.split(":", 1)[0].strip()
    if not _EXCEPTION_NAME.fullmatch(name):
        path = "redisq.errors.JobFailed"
    elif "." in name:
        path = name
    else:
        path = f"builtins.{name}"
    return _compat.TaskError(exception_class_path=path, traceback=last_error)


class RedisqBackend(_compat.BaseTaskBackend):  # type: ignore[misc]  # Any: see _compat
    """Django's task backend on redisq: ``TASKS = {"default": {"BACKEND":
    "redisq.integrations.django.RedisqBackend", "OPTIONS": {"url": "redis://..."}}}``.

    OPTIONS:
        url: the redisq server (required): any URL `redisq.connect` takes.
        prefix: the key prefix of redisq's queues ("redisq").
        max_attempts: runs of a task allowed before it is FAILED (1: Django's tasks have no
            retries of their own; more retries a failure after redisq's backoff).
        lease_ms: the lease of each run (the worker renews it); None: the worker's default.
        timeout_ms: the hard time limit of one run (None: none).
        result_ttl_ms: how long a result stays readable after the task finished (None:
            redisq's default, one day).
        connect_options: more `redisq.connect` options (socket_timeout, retention...).

    QUEUES (optional): the queue names tasks may use (Django's default: ["default"]).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        options = _options(alias, params)
        super().__init__(alias, params)
        self.max_attempts: int = options["max_attempts"]
        self.lease_ms: int | None = options["lease_ms"]
        self.timeout_ms: int | None = options["timeout_ms"]
        self.result_ttl_ms: int | None = options["result_ttl_ms"]
        self.app = DjangoApp(
            self, options["url"], prefix=options["prefix"], **(options["connect_options"] or {})
        )

    # ------------------------------------------------------------------------ enqueue

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Enqueue one call of `task`; its arguments must be JSON-safe data."""
        self.validate_task(task)
        try:
            check_name("queue_name", task.queue_name)
        except InvalidArgument as exc:
            raise _compat.InvalidTask(str(exc)) from None
        payload = make_payload(normalize_json(list(args)), normalize_json(dict(kwargs)))
        job = self.app.store.enqueue(
            task.queue_name,
            payload,
            name=task.module_path,
            priority=redisq_priority(task.priority),
            run_at_ms=None if task.run_after is None else _run_at_ms(task.run_after),
            max_attempts=self.max_attempts,
            lease_ms=self.lease_ms,
        )
        result = self._result(task, job)
        _send("task_enqueued", type(self), result)
        return result

    # ------------------------------------------------------------------------ results

    def get_result(self, result_id: str) -> Any:
        """Read the result of a task by the id `enqueue` gave.

        Raises:
            TaskResultDoesNotExist: no such job (never enqueued, or trimmed by retention
                and its result expired), or the job is not a Django task's.
        """
        queue, sep, job_id = str(result_id).rpartition(":")
        try:
            check_name("queue", queue)
            if not sep or not job_id:
                raise InvalidArgument("result_id", "'<queue>:<job id>'", result_id)
        except InvalidArgument:
            raise _compat.TaskResultDoesNotExist(result_id) from None
        job = self.app.store.get(queue, job_id)
        if job is None:
            raise _compat.TaskResultDoesNotExist(result_id)
        task = _django_task(job.name or "")
        if task is None:
            raise _compat.TaskResultDoesNotExist(
                f"{result_id}: job {job.name!r} is not a task of Django's tasks framework"
            )
        return self._result(task, job)

    def _result(self, task: Any, job: Job) -> Any:
        status = _compat.TaskResultStatus[_STATUS[job.state]]
        payload = job.payload if isinstance(job.payload, dict) else {}
        errors = []
        if job.last_error and (job.state is not JobState.COMPLETED):
            errors.append(_task_error(job.last_error))
        result = _compat.TaskResult(
            task=task,
            id=f"{job.queue}:{job.id}",
            status=status,
            enqueued_at=_when(job.created_at_ms),
            # redisq keeps no start time of an attempt: only a finished job's end.
            started_at=None,
            last_attempted_at=None,
            finished_at=_when(job.finished_at_ms),
            args=payload.get("args", []),
            kwargs=payload.get("kwargs", {}),
            backend=self.alias,
            errors=errors,
            worker_ids=[job.worker or ""] * job.attempts,
        )
        if job.state is JobState.COMPLETED:
            object.__setattr__(result, "_return_value", job.result)
        return result


def _django_task(path: str) -> Any:
    """The Django Task at a module path, or None when there is none."""
    from django.utils.module_loading import import_string

    if not path or not _EXCEPTION_NAME.fullmatch(path) or "." not in path:
        return None
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, _compat.Task) else None


# --------------------------------------------------------------------------- workers


def _send(name: str, sender: type[Any], result: Any) -> None:
    """Send one of the framework's signals (task_enqueued, task_started, task_finished)."""
    signal = getattr(_compat.signals, name, None)
    if signal is not None:
        signal.send(sender=sender, task_result=result)


def _begin(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """The RUNNING TaskResult of the job this worker thread runs; sends task_started."""
    from django.utils import timezone

    ctx = current_context()
    now = timezone.now()
    result = _compat.TaskResult(
        task=task,
        id=f"{ctx.queue}:{ctx.id}",
        status=_compat.TaskResultStatus.RUNNING,
        enqueued_at=_when(ctx.job.created_at_ms),
        started_at=now,
        last_attempted_at=now,
        finished_at=None,
        args=list(args),
        kwargs=dict(kwargs),
        backend=task.backend,
        errors=[],
        worker_ids=[ctx.worker] * ctx.attempt,
    )
    _send("task_started", RedisqBackend, result)
    return result


def _end(result: Any, error: BaseException | None, value: Any = None) -> None:
    """Mark `result` finished (SUCCESSFUL with `value`, or FAILED with `error`); sends
    task_finished. A run that fails is FAILED here even when redisq will retry it."""
    from django.utils import timezone

    object.__setattr__(result, "finished_at", timezone.now())
    if error is None:
        object.__setattr__(result, "status", _compat.TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
    else:
        object.__setattr__(result, "status", _compat.TaskResultStatus.FAILED)
        kind = type(error)
        result.errors.append(
            _compat.TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback="".join(traceback.format_exception(error)),
            )
        )
    _send("task_finished", RedisqBackend, result)


def _handler(task: Any) -> Callable[..., Any]:
    """The redisq handler that runs a Django task and returns its JSON-safe result."""
    from django.db import close_old_connections

    func = task.func
    takes_context = bool(task.takes_context)

    if iscoroutinefunction(func):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            result = _begin(task, args, kwargs)
            try:
                if takes_context:
                    value = await func(_compat.TaskContext(task_result=result), *args, **kwargs)
                else:
                    value = await func(*args, **kwargs)
                value = normalize_json(value)
            except BaseException as exc:
                _end(result, exc)
                raise
            _end(result, None, value)
            return value

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = _begin(task, args, kwargs)
            try:
                if takes_context:
                    value = func(_compat.TaskContext(task_result=result), *args, **kwargs)
                else:
                    value = func(*args, **kwargs)
                value = normalize_json(value)
            except BaseException as exc:
                _end(result, exc)
                raise
            _end(result, None, value)
            return value
        finally:
            # As after a request: a connection past CONN_MAX_AGE or broken is closed.
            close_old_connections()

    return run


class _Tasks(Mapping[str, Task[Any, Any]]):
    """The App's tasks: each Django task is registered the first time a job names it."""

    def __init__(self, app: DjangoApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._missing: set[str] = set()

    def __getitem__(self, name: str) -> Task[Any, Any]:
        found = self._app._tasks.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._app._tasks.get(name)
            if found is not None:
                return found
            if name in self._missing:
                raise KeyError(name)
            try:
                task = _django_task(name)
            except Exception:  # the module raised on import: the job dead-letters
                logger.exception("importing Django task %r failed", name)
                task = None
            if task is None:
                self._missing.add(name)
                raise KeyError(name)
            return self._app._register(_handler(task), self._app._settings(name, task))

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._app._tasks))

    def __len__(self) -> int:
        return len(self._app._tasks)


class DjangoApp(App):
    """The redisq App of a RedisqBackend: its tasks are the Django tasks jobs name.

    A worker of it (``redisq worker redisq.integrations.django.worker:app``) works the backend's
    QUEUES, and imports each task by its module path the first time a job names it.
    """

    def __init__(self, backend: RedisqBackend, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.backend = backend
        self._lazy = _Tasks(self)

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The Django tasks met so far, and any other by name on lookup."""
        return self._lazy

    @property
    def task_queues(self) -> list[str]:
        """The backend's QUEUES (``["default"]`` unless the settings name others)."""
        return sorted(self.backend.queues) or ["default"]

    def get_task(self, name: str) -> Task[Any, Any] | None:
        """Return the task called `name` (a Django task's module path), or None."""
        return self._lazy.get(name)

    def _settings(self, name: str, task: Any) -> TaskSettings:
        b = self.backend
        return TaskSettings.build(
            name=name,
            queue=task.queue_name,
            max_attempts=b.max_attempts,
            lease_ms=b.lease_ms or 30_000,
            timeout_ms=b.timeout_ms,
            backoff=None,
            priority=redisq_priority(task.priority),
            retry_for=None,
            non_retryable=(),
            store_result=True,
            result_ttl_ms=b.result_ttl_ms,
        )
