"""Django's tasks framework: ``django.tasks`` (Django 6) or the ``django_tasks`` package.

``django_tasks`` (PyPI ``django-tasks``) is the reference implementation that Django 6 merged
as ``django.tasks``; their backend interface is the same. ``django.tasks`` wins when both are
importable. Everything here is typed ``Any``: neither ships types that fit both.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from redisq.errors import MissingExtra

__all__ = [
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "signals",
    "task_backends",
]

_FEATURE = "redisq.integrations.django (the backend of Django's tasks framework)"

try:
    import django  # noqa: F401  (a clear error when Django itself is missing)
except ImportError as exc:  # pragma: no cover - the extra installs it
    raise MissingExtra("django", _FEATURE, "django") from exc


def _framework() -> str:
    """The package of the tasks framework: ``django.tasks`` or ``django_tasks``."""
    for name in ("django.tasks", "django_tasks"):
        try:
            importlib.import_module(f"{name}.backends.base")
        except ImportError:
            continue
        return name
    raise MissingExtra("django", _FEATURE, "django_tasks")


FRAMEWORK: str = _framework()
_package: Any = importlib.import_module(FRAMEWORK)
_base: Any = importlib.import_module(f"{FRAMEWORK}.base")
_backend_base: Any = importlib.import_module(f"{FRAMEWORK}.backends.base")
_exceptions: Any = importlib.import_module(f"{FRAMEWORK}.exceptions")

#: task_enqueued, task_started and task_finished; importing it also connects the receiver
#: that resets the backends when a test overrides TASKS (override_settings).
signals: Any = None
with contextlib.suppress(ImportError):
    signals = importlib.import_module(f"{FRAMEWORK}.signals")

BaseTaskBackend: Any = _backend_base.BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
#: ``InvalidTask`` in Django 6, ``InvalidTaskError`` in django_tasks.
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
#: The configured backends by alias (settings.TASKS).
task_backends: Any = _package.task_backends
