"""The Django app of redisq's backend: add ``"redisq.integrations.django"`` to INSTALLED_APPS for
``python manage.py redisq_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class RedisqConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    """redisq's Django app: it holds the ``redisq_worker`` management command."""

    name = "redisq.integrations.django"
    label = "redisq"
    verbose_name = "redisq"
