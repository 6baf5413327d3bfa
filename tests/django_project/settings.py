"""Settings of the test project; the redisq server and prefix come from the environment.

The worker process reads them from ``REDISQ_DJANGO_URL`` and ``REDISQ_DJANGO_PREFIX``; the
tests' own process overrides TASKS per test (``django.test.override_settings``).
"""

from __future__ import annotations

import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
ROOT_URLCONF = "tests.django_project.urls"
INSTALLED_APPS: list[str] = ["django.contrib.contenttypes", "redisq.integrations.django"]
DATABASES: dict[str, dict[str, str]] = {}
MIDDLEWARE: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
QUEUES = ["default", "reports"]


def tasks_setting(url: str, prefix: str) -> dict[str, object]:
    """The TASKS setting for a redisq server."""
    return {
        "default": {
            "BACKEND": "redisq.integrations.django.RedisqBackend",
            "QUEUES": QUEUES,
            "OPTIONS": {"url": url, "prefix": prefix},
        }
    }


TASKS = tasks_setting(
    os.environ.get("REDISQ_DJANGO_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("REDISQ_DJANGO_PREFIX", "redisq"),
)
