"""redisq as the backend of Django's tasks framework (``pip install 'redisq[django]'``).

Settings::

    TASKS = {
        "default": {
            "BACKEND": "redisq.integrations.django.RedisqBackend",
            "OPTIONS": {"url": "redis://localhost:6379/0"},
        }
    }

Workers: ``DJANGO_SETTINGS_MODULE=mysite.settings redisq worker
redisq.integrations.django.worker:app`` (docs/django.md).

Django 6's ``django.tasks`` is used when importable, else the ``django-tasks`` package (the
reference implementation Django merged, for Django 4.2 to 5.2 and Python below 3.12).
"""

from __future__ import annotations

from redisq.integrations.django._compat import FRAMEWORK
from redisq.integrations.django.backend import (
    DjangoApp,
    RedisqBackend,
    django_priority,
    redisq_priority,
)

__all__ = ["FRAMEWORK", "DjangoApp", "RedisqBackend", "django_priority", "redisq_priority"]
