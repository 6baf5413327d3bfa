"""The App a redisq worker runs for Django: ``redisq worker redisq.integrations.django.worker:app``.

Importing this module sets Django up (``DJANGO_SETTINGS_MODULE`` names the settings, as for
``manage.py``), then exposes:

- ``app``: the `DjangoApp` of the ``"default"`` entry of ``TASKS``;
- ``apps.NAME``: the one of the entry called NAME (``redisq worker
  redisq.integrations.django.worker:apps.emails``).

Every option of ``redisq worker`` applies (--queues, --concurrency, --processes...). The
worker works the entry's QUEUES unless --queues names some.
"""

from __future__ import annotations

import os
from typing import Any

from redisq.errors import ConfigurationError
from redisq.integrations.django.backend import DjangoApp, RedisqBackend

__all__ = ["app", "app_for", "apps"]


def _setup() -> None:
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigurationError(
            "DJANGO_SETTINGS_MODULE is not set: name your settings module, e.g."
            " `DJANGO_SETTINGS_MODULE=mysite.settings redisq worker"
            " redisq.integrations.django.worker:app`, from the folder that holds manage.py"
        )
    import django

    django.setup()


def app_for(alias: str = "default") -> DjangoApp:
    """Return the redisq App of the TASKS entry called `alias`.

    Raises:
        ConfigurationError: there is no such entry, or its BACKEND is not RedisqBackend.
    """
    from redisq.integrations.django import _compat

    try:
        backend = _compat.task_backends[alias]
    except Exception as exc:  # Django's InvalidTaskBackend(Error), an ImproperlyConfigured
        raise ConfigurationError(f"TASKS has no usable entry {alias!r}: {exc}") from exc
    if not isinstance(backend, RedisqBackend):
        raise ConfigurationError(
            f"TASKS[{alias!r}]['BACKEND'] is {type(backend).__module__}."
            f"{type(backend).__qualname__}, not redisq.integrations.django.RedisqBackend: a redisq"
            " worker runs only the tasks of a redisq backend"
        )
    return backend.app


class _Apps:
    """``apps.NAME``: the App of TASKS entry NAME."""

    def __getattr__(self, alias: str) -> Any:
        if alias.startswith("__"):
            raise AttributeError(alias)
        return app_for(alias)


_setup()
apps = _Apps()
app: DjangoApp = app_for("default")
