"""`redisq worker` as a real process: several processes, signals, kill -9, restarts, usage.

The subprocesses run `python -m redisq worker tests.integration._proc_app:app` against the
test's server and prefix (passed through REDISQ_PROC_URL / REDISQ_PROC_PREFIX). Each one runs
in its own session, so a test can kill the whole group (supervisor and children) in its
`finally`, whatever happened. Events are ordered by polling Redis and the workers' log lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import redisq
from redisq.cli import main
from redisq.models import Job, JobState
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration._proc_app:app"
ADD = "tests.integration._proc_app.add"
GATE = "tests.integration._proc_app.gate"
NAP = "tests.integration._proc_app.nap"


class WorkerProcess:
    """`python -m redisq worker APP ...` in its own session, with its stderr lines collected."""

    def __init__(self, url: str, prefix: str, *args: str) -> None:
        env = {**os.environ, "REDISQ_PROC_URL": url, "REDISQ_PROC_PREFIX": prefix}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "redisq", "worker", APP, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._lock:
                self.lines.append(line)

    def log(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = 20) -> list[re.Match[str]]:
        """Wait until `pattern` matches a log line; return every match so far."""

        def matches() -> list[re.Match[str]]:
            return list(re.finditer(pattern, self.log()))

        return wait_for(matches, timeout, message=lambda: f"{pattern!r} in:\n{self.log()}")

    def started_pids(self, count: int) -> list[int]:
        """The pids of the supervisor's children, once `count` were started."""
        pattern = r"worker process \d+ started \(pid (\d+)\)"

        def started() -> list[int]:
            pids = [int(m.group(1)) for m in re.finditer(pattern, self.log())]
            return pids if len(pids) >= count else []

        return wait_for(started, 20, message=lambda: f"{count} children in:\n{self.log()}")

    def wait(self, timeout: float = 20) -> int:
        code = self.popen.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        self._reader.join(5)
        if self.popen.stderr is not None:
            self.popen.stderr.close()

    def kill_group(self) -> None:
        """Kill the process and every child of its session (cleanup, even on failure)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(10)
        finally:
            self._close()


@pytest.fixture
def spawn(real_url: str, prefix: str) -> Iterator[type[WorkerProcess]]:
    """Start worker processes on the test's server and prefix; kill them all afterwards."""
    started: list[WorkerProcess] = []

    class Spawned(WorkerProcess):
        def __init__(self, *args: str) -> None:
            super().__init__(real_url, prefix, *args)
            started.append(self)

    try:
        yield Spawned  # type: ignore[misc]
    finally:
        for process in started:
            process.kill_group()


@pytest.fixture
def store(real_url: str, prefix: str) -> Iterator[redisq.Store]:
    """The test's store on the same real server as the worker processes."""
    with redisq.connect(real_url, prefix=prefix) as opened:
        yield opened


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid_of(worker: str | None) -> int:
    """The pid in a default worker name (host-pid-random)."""
    assert worker is not None
    return int(worker.rsplit("-", 2)[-2])


def _task_payload(*args: object) -> dict[str, object]:
    return {"args": list(args), "kwargs": {}}


def _enqueue_gate(store: redisq.Store, prefix: str, id: str) -> None:
    """A gate job, as the task would enqueue it (its 600 ms lease); its key is per test."""
    store.enqueue(
        "q", _task_payload(f"{prefix}:gate:{id}"), id=id, name=GATE, lease_ms=600, max_attempts=5
    )


def _open_gate(store: redisq.Store, prefix: str, id: str) -> None:
    store.redis.set(f"{prefix}:gate:{id}", 1)


def _leased(store: redisq.Store, *ids: str) -> list[Job] | None:
    jobs = [store.get("q", id) for id in ids]
    if all(job is not None and job.state is JobState.LEASED for job in jobs):
        return [job for job in jobs if job is not None]
    return None


def _completed(store: redisq.Store, id: str) -> Job | None:
    job = store.get("q", id)
    return job if job is not None and job.state is JobState.COMPLETED else None


# ------------------------------------------------------------------------------ processes


def test_two_processes_share_the_jobs_and_stop_on_sigterm(
    spawn: type[WorkerProcess], store: redisq.Store, prefix: str
) -> None:
    # Given: two gate jobs (each blocks a process of concurrency 1 until its key exists)
    for name in ("g0", "g1"):
        _enqueue_gate(store, prefix, name)
    store.enqueue_many(
        "q", [redisq.Spec(_task_payload(i, 100), id=f"a{i}", name=ADD) for i in range(20)]
    )
    # When
    supervisor = spawn("--processes", "2", "--concurrency", "1")
    children = supervisor.started_pids(2)
    # Then: each process holds one gate job at the same time
    gates = wait_for(lambda: _leased(store, "g0", "g1"), 20, message=supervisor.log)
    assert {_pid_of(job.worker) for job in gates} == set(children)
    assert supervisor.pid not in children
    _open_gate(store, prefix, "g0")
    _open_gate(store, prefix, "g1")
    wait_for(lambda: store.counts("q")[JobState.COMPLETED] == 22, 20, message=supervisor.log)
    adds = [store.get("q", f"a{i}") for i in range(20)]
    assert [job.result["sum"] for job in adds if job is not None] == [i + 100 for i in range(20)]
    assert {job.result["pid"] for job in adds if job is not None} <= set(children)
    # When: SIGTERM to the supervisor
    supervisor.popen.send_signal(signal.SIGTERM)
    # Then: a clean stop, children gone
    assert supervisor.wait() == 0, supervisor.log()
    assert not [pid for pid in children if _alive(pid)]
    assert "supervisor: stopped\n" in supervisor.log()


def test_slow_jobs_spread_over_the_processes_with_the_default_settings(
    spawn: type[WorkerProcess], store: redisq.Store
) -> None:
    # Given three worker processes with the default settings (10 handlers each), idle
    supervisor = spawn("--processes", "3")
    wait_for(
        lambda: supervisor.log().count("working q with 10 thread handler(s)") == 3,
        30,
        message=supervisor.log,
    )
    # When 60 jobs of 300 ms arrive at once (two rounds of the 30 handlers)
    store.enqueue_many(
        "q", [redisq.Spec(_task_payload(300), id=f"n{i}", name=NAP) for i in range(60)]
    )
    wait_for(lambda: store.counts("q")[JobState.COMPLETED] == 60, 30, message=supervisor.log)
    # Then each process took only what its free handlers could start: no job waited in a
    # process's buffer (it would wait about 300 ms there, behind a running job) while the
    # other processes' handlers were free, and every process ran a share
    results = [job.result for i in range(60) if (job := store.get("q", f"n{i}")) is not None]
    waits = sorted(r["started_ms"] - r["claimed_ms"] for r in results)
    assert waits[-1] < 150, waits
    per_process = Counter(r["pid"] for r in results)
    assert len(per_process) == 3, per_process


def test_sigterm_lets_the_running_job_finish_then_exits_0(
    spawn: type[WorkerProcess], store: redisq.Store, prefix: str
) -> None:
    _enqueue_gate(store, prefix, "slow")
    worker = spawn("--grace-ms", "20000")
    wait_for(lambda: _leased(store, "slow"), 20, message=worker.log)
    worker.popen.send_signal(signal.SIGTERM)
    worker.wait_log(r"stopping \(grace 20000 ms\)")
    job = store.get("q", "slow")
    assert job is not None
    assert job.state is JobState.LEASED  # still running after the signal
    _open_gate(store, prefix, "slow")
    assert worker.wait() == 0, worker.log()
    done = store.get("q", "slow")
    assert done is not None
    assert (done.state, done.attempts, done.result) == (JobState.COMPLETED, 1, worker.pid)


def test_sigterm_past_the_grace_releases_the_job_without_counting_it(
    spawn: type[WorkerProcess], store: redisq.Store, prefix: str
) -> None:
    _enqueue_gate(store, prefix, "stuck")
    worker = spawn("--grace-ms", "100")
    wait_for(lambda: _leased(store, "stuck"), 20, message=worker.log)
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    job = store.get("q", "stuck")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.READY, 0)
    assert "releasing 1 job(s) still running after the grace period" in worker.log()


def test_a_second_signal_makes_the_children_release_their_jobs_at_once(
    spawn: type[WorkerProcess], store: redisq.Store, prefix: str
) -> None:
    supervisor = spawn("--processes", "2", "--concurrency", "1", "--grace-ms", "60000")
    children = supervisor.started_pids(2)
    _enqueue_gate(store, prefix, "h")  # never opened
    # Its handler runs (leased is not enough: a claimed job not yet started is released as
    # prefetched at the first signal)
    wait_for(lambda: store.redis.exists(f"{prefix}:gate:h:started"), 20, message=supervisor.log)
    supervisor.popen.send_signal(signal.SIGTERM)
    supervisor.wait_log(r"supervisor: stopping the workers \(grace 60000 ms\)")
    supervisor.popen.send_signal(signal.SIGTERM)
    assert supervisor.wait() == 0, supervisor.log()
    job = store.get("q", "h")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.READY, 0)  # released, attempt not counted
    assert "releasing 1 job(s) still running (second stop request)" in supervisor.log()
    assert not [pid for pid in children if _alive(pid)]


def test_kill_9_loses_the_lease_and_another_worker_finishes_the_job(
    spawn: type[WorkerProcess], store: redisq.Store, prefix: str
) -> None:
    # Given: two workers; the gate task's lease is 600 ms
    workers = {
        w.pid: w
        for w in (
            spawn("--concurrency", "1", "--reaper-interval-ms", "100"),
            spawn("--concurrency", "1", "--reaper-interval-ms", "100"),
        )
    }
    _enqueue_gate(store, prefix, "k")
    (first,) = wait_for(lambda: _leased(store, "k"), 20)
    holder = _pid_of(first.worker)
    (other,) = set(workers) - {holder}
    # When: the holder dies without a word
    os.kill(holder, signal.SIGKILL)
    workers[holder].wait()

    # Then: the other worker takes the job over once the lease expired, on a second attempt
    def taken_over() -> Job | None:
        job = store.get("q", "k")
        return job if job is not None and job.worker != first.worker else None

    second = wait_for(taken_over, 20, message=workers[other].log)
    assert _pid_of(second.worker) == other
    assert second.attempts == 2
    _open_gate(store, prefix, "k")
    done = wait_for(lambda: _completed(store, "k"), 20, message=workers[other].log)
    assert (done.attempts, done.result, done.worker) == (2, other, second.worker)


def test_the_supervisor_restarts_a_killed_child(
    spawn: type[WorkerProcess], store: redisq.Store, prefix: str
) -> None:
    supervisor = spawn("--processes", "2", "--concurrency", "1")
    victim, survivor = supervisor.started_pids(2)
    os.kill(victim, signal.SIGKILL)
    supervisor.wait_log(rf"worker process 0 \(pid {victim}\) exited with -9; restarting in 0\.5 s")
    (restarted,) = supervisor.started_pids(3)[2:]
    assert restarted not in (victim, survivor)
    # Jobs keep completing, and the new child takes its share.
    for name in ("r0", "r1"):
        _enqueue_gate(store, prefix, name)
    gates = wait_for(lambda: _leased(store, "r0", "r1"), 20, message=supervisor.log)
    assert {_pid_of(job.worker) for job in gates} == {survivor, restarted}
    _open_gate(store, prefix, "r0")
    _open_gate(store, prefix, "r1")
    wait_for(lambda: store.counts("q")[JobState.COMPLETED] == 2, 20, message=supervisor.log)
    supervisor.popen.send_signal(signal.SIGINT)
    assert supervisor.wait() == 0, supervisor.log()
    assert not _alive(restarted)
    assert not _alive(survivor)


# ---------------------------------------------------------------------------------- usage


@pytest.fixture(autouse=True)
def _restore_the_app() -> Iterator[None]:
    """`load_app` applies --url/--prefix to the imported App (in-process tests): undo it."""
    from tests.integration import _proc_app

    saved = _proc_app.app.url, _proc_app.app.prefix
    yield
    _proc_app.app.url, _proc_app.app.prefix = saved
    _proc_app.app.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.integration._proc_app"], "is not MODULE:ATTR"),
        (["no_such_module_for_redisq:app"], "cannot import module 'no_such_module_for_redisq'"),
        (["tests.integration._proc_app:nothing"], "has no attribute 'nothing'"),
        (["tests.integration._proc_app:NOT_AN_APP"], "is of type 'int', not a redisq.App"),
        ([APP], "a store private to this process"),  # its url is memory:// without --url
        ([APP, "--url", "redis://127.0.0.1:1", "--queues", "q,nope"], "queue 'nope' has no task"),
        ([APP, "--url", "redis://127.0.0.1:1", "--weights", "q"], "expected QUEUE=WEIGHT"),
        ([APP, "--url", "redis://127.0.0.1:1", "--weights", "q=0"], "weights['q'] must be"),
        ([APP, "--url", "redis://127.0.0.1:1", "--concurrency", "0"], "must be 1 or more"),
    ],
)
def test_usage_errors_exit_2_and_say_what_to_do(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith(("usage:", "redisq worker: error:", "redisq: "))


def test_supervisor_options_are_checked_before_any_child_starts() -> None:
    with pytest.raises(redisq.InvalidArgument, match="processes must be an int in"):
        redisq.Supervisor(APP, processes=0)
    with pytest.raises(redisq.InvalidArgument, match="worker_options must be among queues"):
        redisq.Supervisor(APP, name="w1")  # each child names itself
    with pytest.raises(redisq.ConfigurationError, match="worker processes cannot share it"):
        redisq.Supervisor(APP, processes=2).check()  # the app's url is memory:// here
    with pytest.raises(redisq.InvalidArgument, match="concurrency must be"):
        redisq.Supervisor(APP, url="redis://127.0.0.1:1", concurrency=0).check()


def test_an_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", APP, "--url", "redis://127.0.0.1:1"]) == 3
    assert "cannot reach the server at redis://127.0.0.1:1" in capsys.readouterr().err
