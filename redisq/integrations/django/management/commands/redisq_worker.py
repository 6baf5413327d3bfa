"""``python manage.py redisq_worker [--backend NAME] [redisq worker options]``.

The same as ``DJANGO_SETTINGS_MODULE=... redisq worker redisq.integrations.django.worker:app``;
every option of ``redisq worker`` passes through (``--queues``, ``--concurrency``,
``--processes``...; ``redisq worker --help`` lists them).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand


def _command(arguments: list[str]) -> list[str]:
    """The ``redisq`` command line for a redisq_worker command line."""
    target = "redisq.integrations.django.worker:app"
    rest = list(arguments)
    for i, item in enumerate(rest):
        if item == "--backend" and i + 1 < len(rest):
            target = f"redisq.integrations.django.worker:apps.{rest[i + 1]}"
            del rest[i : i + 2]
            break
        if item.startswith("--backend="):
            target = f"redisq.integrations.django.worker:apps.{item.split('=', 1)[1]}"
            del rest[i]
            break
    return ["worker", target, *rest]


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = (
        "Run a redisq worker for the tasks of a TASKS entry (--backend NAME, default"
        " 'default'); every option of `redisq worker` applies."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        # redisq's own parser takes the options (Django's would refuse them).
        from redisq.cli import main

        sys.exit(main(_command(argv[2:])))

    def handle(self, *args: Any, **options: Any) -> None:
        from redisq.cli import main

        code = main(_command(list(args)))
        if code:
            sys.exit(code)
