"""redisq.integrations.django: Django's tasks framework on redisq, end to end on a real server.

A minimal project (tests/django_project: settings, tasks, a view that enqueues and one that
reads a result) driven by django.test.Client; the tasks run in a real worker process started
as docs/django.md says: ``redisq worker redisq.integrations.django.worker:app``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django", reason="the django extra: pip install 'redisq[django]'")

from django.test import Client, override_settings  # noqa: E402  (after the importorskip)

import redisq  # noqa: E402
from redisq.integrations.django import (  # noqa: E402
    RedisqBackend,
    _compat,
    django_priority,
    redisq_priority,
)
from tests.support.polling import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = "tests.django_project.settings"


@pytest.fixture(scope="module", autouse=True)
def _django() -> None:
    """Set Django up once with the test project's settings (nothing else reads them)."""
    from django.conf import settings

    if not settings.configured:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    django.setup()


@pytest.fixture
def tasks_url(real_url: str, prefix: str) -> Iterator[str]:
    """TASKS pointed at the test's server and prefix, for this test only."""
    from tests.django_project.settings import tasks_setting

    with override_settings(TASKS=tasks_setting(real_url, prefix)):
        try:
            yield real_url
        finally:
            _compat.task_backends["default"].app.close()


@pytest.fixture
def project() -> Any:
    from tests.django_project import tasks

    return tasks


REDISQ_WORKER = ["-m", "redisq", "worker", "redisq.integrations.django.worker:app"]
#: The management command (the test settings list "redisq.integrations.django" in INSTALLED_APPS).
MANAGE_PY_WORKER = ["-m", "django", "redisq_worker"]


@contextlib.contextmanager
def worker_process(
    url: str, prefix: str, *options: str, how: list[str] = REDISQ_WORKER
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker of the backend in a process (by default as ``redisq worker
    redisq.integrations.django.worker:app``), stopped by SIGTERM."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "REDISQ_DJANGO_URL": url,
        "REDISQ_DJANGO_PREFIX": prefix,
    }
    command = [sys.executable, *how]
    command += ["--registry-ttl-ms", "0", "--log-level", "warning", *options]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, f"worker exited {process.returncode}: {err.decode()}"


def _finished(client: Client, result_id: str, timeout: float = 20.0) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(f"/result/{result_id}/").json()
        return data if data.get("finished") else None

    return wait_for(read, timeout=timeout, message=f"result {result_id} finished")


# ------------------------------------------------------------------------------ end to end


def test_views_enqueue_and_read_results_run_by_a_worker(
    tasks_url: str, prefix: str, project: Any
) -> None:
    # Given: the views of a Django project, and a worker process of the redisq backend
    enqueued: list[Any] = []

    def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        enqueued.append((sender, task_result.id))

    client = Client()
    _compat.signals.task_enqueued.connect(on_enqueued)
    try:
        ok = client.post("/enqueue/add/", {"args": [2, 3]}, content_type="application/json")
        bad = client.post("/enqueue/fail/", {"args": ["no way"]}, content_type="application/json")
    finally:
        _compat.signals.task_enqueued.disconnect(on_enqueued)
    assert ok.status_code == bad.status_code == 200
    assert ok.json()["status"] == "READY"
    ok_id, bad_id = ok.json()["id"], bad.json()["id"]
    assert enqueued == [(RedisqBackend, ok_id), (RedisqBackend, bad_id)]
    # Before any worker ran: READY, no return value yet
    assert client.get(f"/result/{ok_id}/").json()["status"] == "READY"

    # When: the worker runs them
    with worker_process(tasks_url, prefix):
        success = _finished(client, ok_id)
        failure = _finished(client, bad_id)

    # Then: the worker sent the framework's signals around each run
    client_redis = redisq.connect(tasks_url).redis
    sent = sorted(v.decode() for v in client_redis.lrange(f"{{{prefix}}}:signals", 0, -1))
    client_redis.close()
    assert sent == ["FAILED fail", "RUNNING add", "RUNNING fail", "SUCCESSFUL add"]
    # ... SUCCESSFUL with the return value, FAILED with the task's error
    assert success == {
        "status": "SUCCESSFUL",
        "task": "tests.django_project.tasks.add",
        "errors": [],
        "finished": True,
        "return_value": 5,
    }
    assert failure["status"] == "FAILED"
    [error] = failure["errors"]
    assert error["exception_class_path"] == "tests.django_project.tasks.Boom"
    assert "no way" in error["traceback"]
    assert "Traceback" in error["traceback"]
    # The Task API reads the same, with the exception class resolved
    result = project.fail.get_result(bad_id)
    assert result.errors[0].exception_class is project.Boom
    assert result.attempts == 1
    assert project.add.get_result(ok_id).return_value == 5
    assert client.get("/result/default:0123456789abcdef/").status_code == 404


def test_the_management_command_runs_a_worker(tasks_url: str, prefix: str, project: Any) -> None:
    # Given: a task enqueued into the "reports" queue
    result = project.record.enqueue(f"{{{prefix}}}:managed", "x")
    # When: `manage.py redisq_worker --backend default --queues reports` runs
    options = ["--backend", "default", "--queues", "reports"]
    with worker_process(tasks_url, prefix, *options, how=MANAGE_PY_WORKER):
        wait_for(lambda: project.record.get_result(result.id).is_finished, 20, message="ran")
    # Then: the task ran there
    assert project.record.get_result(result.id).return_value == ["x"]


def test_priority_order_is_kept(tasks_url: str, prefix: str, project: Any) -> None:
    # Given: tasks of several priorities, enqueued before any worker runs
    key = f"{{{prefix}}}:order"
    priorities = [-100, 0, 50, 100, -5, 1]
    for p in priorities:
        project.record.using(priority=p).enqueue(key, p)
    store = _compat.task_backends["default"].app.store
    jobs = store.list("reports", state=redisq.JobState.READY)
    assert sorted(j.priority for j in jobs) == sorted(redisq_priority(p) for p in priorities)

    # When: one worker runs them one at a time
    with worker_process(tasks_url, prefix, "--concurrency", "1", "--prefetch", "0"):
        client = redisq.connect(tasks_url).redis
        wait_for(lambda: client.llen(key) == len(priorities), timeout=20, message="all ran")

    # Then: highest priority first
    order = [int(v) for v in client.lrange(key, 0, -1)]
    client.close()
    assert order == sorted(priorities, reverse=True)


def test_run_after_is_honoured(tasks_url: str, prefix: str, project: Any) -> None:
    # Given: a task deferred by 1.5 s
    run_after = datetime.now(tz=UTC) + timedelta(seconds=1.5)
    result = project.add.using(run_after=run_after).enqueue(20, 22)
    queue, _, job_id = result.id.rpartition(":")
    job = _compat.task_backends["default"].app.store.get(queue, job_id)
    assert job is not None
    assert job.state is redisq.JobState.SCHEDULED
    assert job.run_at_ms == int(run_after.timestamp() * 1000)

    # When: a worker runs
    with worker_process(tasks_url, prefix):
        wait_for(lambda: project.add.get_result(result.id).is_finished, timeout=20, message="ran")

    # Then: it ran, not before its time
    done = project.add.get_result(result.id)
    assert done.status == _compat.TaskResultStatus.SUCCESSFUL
    assert done.return_value == 42
    assert done.finished_at >= run_after


def test_context_async_and_bad_return_values(tasks_url: str, prefix: str, project: Any) -> None:
    # Given: a task taking the context, an async task and one returning non-JSON data
    with_context = project.attempt.enqueue("x")
    coroutine = project.double.enqueue(21)
    bad = project.not_json.enqueue()

    # When: a worker runs them
    with worker_process(tasks_url, prefix):
        for r in (with_context, coroutine, bad):
            wait_for(lambda r=r: project.add.get_backend().get_result(r.id).is_finished, 20)

    # Then
    backend = project.add.get_backend()
    assert backend.get_result(with_context.id).return_value == {
        "label": "x",
        "attempt": 1,
        "id": with_context.id,
        "started": True,
    }
    assert backend.get_result(coroutine.id).return_value == 42
    failed = backend.get_result(bad.id)
    assert failed.status == _compat.TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.TypeError"


# ------------------------------------------------------------------------------ the backend


def test_backend_flags_and_priorities() -> None:
    assert RedisqBackend.supports_defer is True
    assert RedisqBackend.supports_async_task is True
    assert RedisqBackend.supports_get_result is True
    assert RedisqBackend.supports_priority is True
    assert [redisq_priority(p) for p in (-100, -1, 0, 1, 100)] == [-1000, -10, 0, 10, 1000]
    assert all(django_priority(redisq_priority(p)) == p for p in range(-100, 101))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({}, "['url']"),
        ({"url": "redis://localhost", "max_attempts": 0}, "['max_attempts']"),
        ({"url": "redis://localhost", "lease_ms": -1}, "['lease_ms']"),
        ({"url": "redis://localhost", "colour": "red"}, "'colour'"),
        ({"url": "redis://localhost", "connect_options": 3}, "['connect_options']"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(redisq.ConfigurationError, match="TASKS") as caught:
        RedisqBackend("default", {"OPTIONS": options})
    assert field in str(caught.value)


def test_bad_queue_name_in_settings_is_refused() -> None:
    with pytest.raises(redisq.ConfigurationError, match=r"\['QUEUES'\]\[0\]"):
        RedisqBackend("default", {"QUEUES": [""], "OPTIONS": {"url": "redis://localhost"}})


def test_enqueue_refuses_what_cannot_work(tasks_url: str, project: Any) -> None:
    with pytest.raises(_compat.InvalidTask, match="Queue"):
        project.add.using(queue_name="elsewhere").enqueue(1, 2)
    with pytest.raises(TypeError, match="JSON"):
        project.add.enqueue(object(), 2)
    with pytest.raises(_compat.InvalidTask, match="priority"):
        project.add.using(priority=101).enqueue(1, 2)
    store = _compat.task_backends["default"].app.store
    assert store.counts("default") == dict.fromkeys(redisq.JobState, 0)
    for missing in ("nothing", "default:", ":abc", "default:abc"):
        with pytest.raises(_compat.TaskResultDoesNotExist):
            project.add.get_result(missing)


def test_a_job_of_another_kind_is_not_a_django_result(tasks_url: str, project: Any) -> None:
    store = _compat.task_backends["default"].app.store
    job = store.enqueue("default", {"args": [], "kwargs": {}}, name="os.path.join")
    with pytest.raises(_compat.TaskResultDoesNotExist, match="not a task"):
        project.add.get_backend().get_result(f"default:{job.id}")


def test_worker_module_needs_the_settings_module() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "redisq", "worker", "redisq.integrations.django.worker:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"DJANGO_SETTINGS_MODULE is not set" in done.stderr


@pytest.mark.parametrize("missing", ["django", "django_tasks"])
def test_without_the_extra_the_import_says_what_to_install(missing: str) -> None:
    # A fresh interpreter where the module cannot be imported (django_tasks matters only
    # where Django has no django.tasks of its own, i.e. before Django 6)
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "try:\n"
        "    import django.tasks  # noqa\n"
        "    has_builtin = True\n"
        "except ImportError:\n"
        "    has_builtin = False\n"
        f"if has_builtin and {missing!r} == 'django_tasks':\n"
        "    print('skip'); raise SystemExit(0)\n"
        "import redisq.integrations.django\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if done.stdout.strip() == "skip":
        pytest.skip("Django 6 has django.tasks built in")
    assert done.returncode == 1
    assert "redisq.errors.MissingExtra" in done.stderr
    assert "pip install 'redisq[django]'" in done.stderr
