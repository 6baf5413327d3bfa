"""Without prometheus-client (the metrics extra), redisq imports and runs, and every metrics
option says which extra to install (simulated by blocking the import)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import redisq
from redisq.cli import main

EXTRA = "pip install 'redisq[metrics]'"


@pytest.fixture
def no_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import prometheus_client` raise ImportError.
    for name in [n for n in sys.modules if n.split(".")[0] == "prometheus_client"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)


@pytest.fixture
def app() -> Iterator[redisq.App]:
    made = redisq.App("memory://metrics-extra")
    made.task(name="t", queue="q")(lambda: None)
    yield made
    made.close()


def test_a_worker_with_metrics_port_names_the_extra(no_prometheus: None, app: redisq.App) -> None:
    with pytest.raises(redisq.MissingExtra) as raised:
        redisq.Worker(app, metrics_port=9100)
    assert EXTRA in str(raised.value)
    assert "metrics_port" in str(raised.value)
    assert isinstance(raised.value, ImportError)
    assert isinstance(raised.value, redisq.ConfigurationError)
    assert raised.value.extra == "metrics"
    assert raised.value.name == "prometheus_client"


def test_the_queue_collector_names_the_extra(no_prometheus: None, app: redisq.App) -> None:
    from redisq.metrics import QueueCollector, QueueExporter

    with pytest.raises(redisq.MissingExtra, match=r"redisq\[metrics\]"):
        QueueCollector(app.store)
    with pytest.raises(redisq.MissingExtra, match=r"redisq\[metrics\]"):
        QueueExporter(app.store, "127.0.0.1", 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", "--url", "redis://127.0.0.1:1", "--port", "0"],
        [
            "worker",
            "tests.integration._proc_app:app",
            "--url",
            "redis://127.0.0.1:1",
            "--metrics-port",
            "0",
        ],
    ],
    ids=["metrics", "worker"],
)
def test_the_commands_name_the_extra(
    no_prometheus: None, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Checked before the server is reached (this one is not there).
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert EXTRA in err


def test_without_the_extra_redisq_imports_and_a_worker_runs() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # not installed
        import threading
        import redisq, redisq.cli, redisq.metrics

        app = redisq.App("memory://no-extra")
        done = threading.Event()
        app.task(name="t", queue="q")(done.set)
        app.store.enqueue("q", {"args": [], "kwargs": {}}, name="t")
        worker = redisq.Worker(app, handle_signals=False, idle_wait_ms=50)
        thread = threading.Thread(target=worker.run)
        thread.start()
        assert done.wait(10)
        worker.stop(grace=False)
        thread.join(10)
        assert worker.metrics.completed == 1
        assert sys.modules["prometheus_client"] is None
        print("ran")
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran"
