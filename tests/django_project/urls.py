"""Two views: one enqueues a task, one reads its result."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path

from redisq.integrations.django import _compat
from tests.django_project import tasks


def enqueue(request: HttpRequest, name: str) -> JsonResponse:
    body: dict[str, Any] = json.loads(request.body or b"{}")
    task = getattr(tasks, name)
    result = task.enqueue(*body.get("args", []), **body.get("kwargs", {}))
    return JsonResponse({"id": result.id, "status": str(result.status)})


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        found = _compat.task_backends["default"].get_result(result_id)
    except _compat.TaskResultDoesNotExist:
        return JsonResponse({"error": "no such result"}, status=404)
    data: dict[str, Any] = {
        "status": str(found.status),
        "task": found.task.module_path,
        "errors": [
            {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
            for e in found.errors
        ],
        "finished": found.is_finished,
    }
    if found.status == _compat.TaskResultStatus.SUCCESSFUL:
        data["return_value"] = found.return_value
    return JsonResponse(data)


urlpatterns = [
    path("enqueue/<str:name>/", enqueue),
    path("result/<str:result_id>/", result),
]
