"""What a new user meets first: URLs, the memory:// extra, the CLI's edges (issue 9, point 9).

Each test repeats one thing that was hit from a fresh install, exactly as written in the
issue, and checks the clear error (or the fixed behaviour) that replaced it.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import redisq
import redisq.demo
from redisq.cli import main
from redisq.keys import QueueKeys, registry_key
from tests.support.polling import wait_for
from tests.support.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def _run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m redisq ARGV` in a fresh interpreter (what a user's shell runs)."""
    return subprocess.run(
        [sys.executable, "-m", "redisq", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        check=False,
    )


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------------------- bad URLs

# (URL, words the one-line message must hold)
BAD_URLS = [
    ("redis://localhost:99999", ["port", "1 to 65535"]),
    ("redis://localhost:abc/0", ["port", "1 to 65535"]),
    ("redis://localhost:0/0", ["port", "1 to 65535"]),
    ("redis://localhost:6379/abc", ["database", "'abc'", "number"]),
    ("redis://localhost:6379/-1", ["database", "'-1'", "number"]),
    ("redis://localhost:6379/1/2", ["database", "number"]),
    ("redis://localhost:6379/?db=x", ["database", "'x'", "number"]),
    ("redis+cluster://localhost:6379/3", ["redis+cluster://", "Cluster", "database 0"]),
    ("unix://", ["socket file"]),
]


@pytest.mark.parametrize(("url", "words"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_a_bad_url_is_a_configuration_error_before_anything_is_sent(
    url: str, words: list[str]
) -> None:
    for opener in (redisq.connect, redisq.connect_async):
        with pytest.raises(redisq.ConfigurationError) as info:
            opener(url)
        for word in words:
            assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(("url", "words"), BAD_URLS[:4], ids=[u for u, _ in BAD_URLS[:4]])
def test_the_cli_refuses_a_bad_url_with_exit_2_and_one_line(
    url: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--url", url]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_line(err).startswith("redisq: ")
    assert all(word in err for word in words)
    assert main(["stats", "--url", url, "--json"]) == 2
    document = json.loads(capsys.readouterr().err)
    assert (document["exit_code"], document["type"]) == (2, "ConfigurationError")


def test_the_issue_command_exits_2_without_a_traceback() -> None:
    # `redisq stats --url redis://localhost:99999` printed a traceback (a ValueError).
    done = _run_cli("stats", "--url", "redis://localhost:99999")
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith("redisq: the port in redis://localhost:99999")


def test_a_database_the_server_lacks_is_a_configuration_error_naming_it(
    real_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = real_url.rstrip("/") + "/99"
    store = redisq.connect(url)
    with pytest.raises(redisq.ConfigurationError, match="no database 99") as info:
        store.counts("q")
    assert "/0" in str(info.value)  # what to use instead
    store.close()

    async def use_async() -> None:
        astore = redisq.connect_async(url)
        try:
            with pytest.raises(redisq.ConfigurationError, match="no database 99"):
                await astore.counts("q")
        finally:
            await astore.close()

    asyncio.run(use_async())
    assert main(["stats", "--url", url]) == 2
    assert "no database 99" in _one_line(capsys.readouterr().err)


def test_an_existing_database_still_works(real_url: str, prefix: str) -> None:
    with redisq.connect(real_url.rstrip("/") + "/3", prefix=prefix) as store:
        store.enqueue("q", 1, id="one")
        assert store.redis.connection_pool.connection_kwargs["db"] == 3
        assert store.get("q", "one") is not None
        for key in store.redis.scan_iter(match=f"*{prefix}*"):  # (the fixture cleans db 0)
            store.redis.delete(key)


# --------------------------------------------------------------------- memory:// extra


@pytest.fixture
def no_fakeredis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import fakeredis` fail, as in an install without the [memory] extra."""
    monkeypatch.setitem(sys.modules, "fakeredis", None)


HINT = "pip install 'redisq[memory]'"


@pytest.mark.usefixtures("no_fakeredis")
def test_memory_without_its_extra_names_the_extra_everywhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for opener in (redisq.connect, redisq.connect_async):
        with pytest.raises(redisq.ConfigurationError, match=HINT.replace("[", r"\[")):
            opener("memory://")
    app = redisq.App()  # memory:// by default; the store opens on first use
    task = app.task(name="t")(lambda: None)
    with pytest.raises(redisq.ConfigurationError) as info:
        task.enqueue()
    assert HINT in str(info.value)
    assert main(["stats", "--url", "memory://"]) == 2
    assert HINT in _one_line(capsys.readouterr().err)


@pytest.mark.usefixtures("no_fakeredis")
def test_the_demo_without_a_server_binary_or_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_binary(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("no server binary")

    monkeypatch.setattr(redisq.demo, "EmbeddedServer", no_binary)
    assert main(["demo", "--jobs", "10"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "redisq[server]" in err
    assert HINT in err


# ---------------------------------------------------------------- warnings on the CLI


def test_the_cli_prints_a_server_warning_as_one_line(
    real_backend: str,
    make_server: Callable[..., ServerProcess],
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_server(real_backend, extra_args=["--maxmemory-policy", "allkeys-lru"])
    assert main(["stats", "--url", server.url, "--prefix", prefix]) == 0
    err = capsys.readouterr().err
    assert err == (
        "redisq: warning: the server's maxmemory-policy is 'allkeys-lru': under memory"
        " pressure it may evict queue keys and lose jobs; set `maxmemory-policy noeviction`"
        " for queue data\n"
    )
    assert main(["stats", "--url", server.url, "--prefix", prefix, "--json"]) == 0
    document = json.loads(capsys.readouterr().err)
    assert document["type"] == "ServerConfigWarning"
    assert "allkeys-lru" in document["warning"]


def test_the_installed_command_prints_no_source_line_under_a_warning(
    real_backend: str, make_server: Callable[..., ServerProcess], prefix: str
) -> None:
    server = make_server(real_backend, extra_args=["--maxmemory-policy", "allkeys-lru"])
    done = _run_cli("stats", "--url", server.url, "--prefix", prefix)
    assert done.returncode == 0
    assert done.stderr.startswith("redisq: warning: the server's maxmemory-policy")
    assert done.stderr.count("\n") == 1
    assert "sys.exit" not in done.stderr


# -------------------------------------------------------------------- unknown queues


@pytest.fixture
def known(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    """A store whose prefix has two queues, emails and reports."""
    store = redisq.connect(real_url, prefix=prefix)
    store.enqueue("emails", {"to": "ada"}, id="e1")
    store.enqueue("reports", {"day": 1}, id="r1")
    yield store
    store.close()


def _keys(store: redisq.Store) -> set[bytes]:
    return set(store.redis.scan_iter(match=f"*{store.prefix}*", count=1000))


UNKNOWN = [
    ["stats", "emials"],
    ["stats", "emails", "emials"],
    ["ls", "emials"],
    ["show", "emials", "e1"],
    ["retry-dead", "emials"],
    ["purge", "emials", "--yes"],
    ["pause", "emials"],
    ["resume", "emials"],
    ["reap", "emials"],
    ["migrate", "--queue", "emials"],
]


@pytest.mark.parametrize("argv", UNKNOWN, ids=[" ".join(a) for a in UNKNOWN])
def test_an_unknown_queue_is_refused_and_nothing_is_written(
    argv: list[str],
    known: redisq.Store,
    real_url: str,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _keys(known)
    capsys.readouterr()
    assert main([*argv, "--url", real_url, "--prefix", prefix]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_line(err).startswith(f"redisq: no queue named 'emials' under prefix {prefix!r}")
    assert "did you mean 'emails'?" in err
    assert "its queues: emails, reports" in err
    assert _keys(known) == before
    assert main([*argv, "--url", real_url, "--prefix", prefix, "--json"]) == 1
    document = json.loads(capsys.readouterr().err)
    assert document["queue"] == "emials"
    assert (document["known"], document["closest"]) == (["emails", "reports"], ["emails"])
    assert document["exit_code"] == 1


def test_pause_of_an_unknown_queue_tells_how_to_pause_it_ahead(
    known: redisq.Store, real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--url", real_url, "--prefix", prefix]
    assert main(["pause", "later", *common]) == 1
    assert "`redisq pause --create later`" in capsys.readouterr().err
    assert known.redis.exists(QueueKeys.build(prefix, "later").meta) == 0

    # --create pauses it before its first job; then it is a known queue.
    assert main(["pause", "--create", "later", *common]) == 0
    capsys.readouterr()
    known.enqueue("later", 1, id="l1")
    assert known.claim("later", worker="w") == []  # paused
    assert main(["stats", "later", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queues"]["later"]["ready"] == 1
    assert main(["resume", "later", *common]) == 0
    assert [j.id for j in known.claim("later", worker="w")] == ["l1"]


def test_a_queue_paused_ahead_is_known_before_its_first_job(
    known: redisq.Store, real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    known.pause("ahead")  # the store API takes any valid name: it pauses ahead of time
    assert not known.redis.sismember(registry_key(prefix), "ahead")
    assert main(["resume", "ahead", "--url", real_url, "--prefix", prefix]) == 0
    assert "resumed queue ahead" in capsys.readouterr().out


def test_no_queues_at_all_says_so(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "emails", "--url", real_url, "--prefix", prefix]) == 1
    assert "the prefix has no queues yet" in _one_line(capsys.readouterr().err)


# --------------------------------------------------------- a task module that raises

BROKEN = """\
import redisq

app = redisq.App()


def load_settings():
    return {}["missing"]


SETTINGS = load_settings()
"""


@pytest.mark.parametrize("in_process", [True, False], ids=["main", "python -m redisq"])
def test_a_task_module_that_raises_on_import_exits_2_with_its_own_traceback(
    in_process: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "broken_tasks.py").write_text(BROKEN)
    if in_process:
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))
        code = main(["worker", "broken_tasks:app", "--url", "redis://127.0.0.1:1"])
        err = capsys.readouterr().err
    else:
        done = _run_cli("worker", "broken_tasks:app", "--url", "redis://127.0.0.1:1", cwd=tmp_path)
        code, err = done.returncode, done.stderr
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    frames = [line for line in lines if line.lstrip().startswith("File ")]
    # The user's frames only: their module, then their function; none of redisq's internals.
    assert len(frames) == 2, err
    assert all("broken_tasks.py" in frame for frame in frames)
    assert "KeyError: 'missing'" in lines
    assert lines[-1].startswith(
        "redisq: cannot load broken_tasks:app: importing module 'broken_tasks' raised"
        " KeyError: 'missing'"
    )


def test_the_json_error_of_a_broken_module_carries_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_json.py").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["worker", "broken_json:app", "--json"]) == 2
    document = json.loads(capsys.readouterr().err)
    assert (document["type"], document["app"]) == ("AppImportFailed", "broken_json:app")
    assert "broken_json.py" in document["traceback"]
    assert "redisq/" not in document["traceback"]


def test_a_missing_module_is_still_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["worker", "no_such_module_here:app"]) == 2
    assert "cannot import module 'no_such_module_here'" in _one_line(capsys.readouterr().err)


# ------------------------------------------------ docs/cli.md's enqueue, and the worker


def _docs_example() -> tuple[list[str], str]:
    """docs/cli.md's first `redisq enqueue` line (as argv) and its tasks.py."""
    docs = (ROOT / "docs" / "cli.md").read_text()
    line = next(ln for ln in docs.splitlines() if ln.startswith("redisq enqueue "))
    argv = shlex.split(line.split("  #")[0])[1:]
    module = docs.split("```python\n", 1)[1].split("```", 1)[0]
    return argv, module


def _work(app: redisq.App, until: Callable[[], bool]) -> None:
    worker = redisq.Worker(app, handle_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(until, timeout=20, message="the worker did not finish the jobs")
    finally:
        worker.stop()
        thread.join(30)


def test_the_cli_docs_example_makes_a_job_the_worker_runs(
    real_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # docs/cli.md's example made a job a worker dead-lettered at once ("no task named None").
    argv, module = _docs_example()
    assert argv[:3] == ["enqueue", "emails", "--task"]
    (tmp_path / "tasks.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tasks", raising=False)
    app = redisq.load_app("tasks:app", url=real_url, prefix=prefix)
    monkeypatch.delitem(sys.modules, "tasks")
    assert main([*argv, "--url", real_url, "--prefix", prefix]) == 0
    capsys.readouterr()
    completed = redisq.JobState.COMPLETED
    _work(app, lambda: app.store.counts("emails")[completed] == 1)
    assert "welcome mail to ada@example.com" in capsys.readouterr().out
    app.close()


def test_a_job_without_a_task_name_is_dead_lettered_with_how_to_enqueue_one(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example docs/cli.md had: a plain payload, no task name.
    argv = ["enqueue", "emails", '{"to": "ada@example.com"}', "--priority", "5", "--json"]
    assert main([*argv, "--url", real_url, "--prefix", prefix]) == 0
    job_id = json.loads(capsys.readouterr().out)["id"]
    app = redisq.App(real_url, prefix=prefix)
    app.task(queue="emails", name="send")(lambda to: None)
    dead: list[redisq.Job] = []

    def died() -> bool:
        job = app.store.get("emails", job_id)
        if job is not None and job.state is redisq.JobState.DEAD:
            dead.append(job)
        return bool(dead)

    _work(app, died)
    error = dead[0].last_error or ""
    assert "None" not in error
    assert error.startswith("the job has no task name")
    assert "--task NAME" in error
    assert "task.enqueue" in error
    app.close()
