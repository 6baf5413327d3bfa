"""Every script's work per call is capped (lua/lib/caps.lua), and the client loops for more.

No accepted argument may make a script block Redis for long (bench/bench_caps.py measures
the worst calls). Two sides are tested on every backend:

- the client: a caller asking for more than one call may carry (jobs, payload or result
  bytes, stored record bytes) gets it all, in order, over several script calls;
- the scripts: an over-cap argument sent directly (by an old or foreign client) is refused
  with BAD_ARGUMENT before anything is written, or clamped, as each header says.

Payloads of 300,000 bytes make a few jobs pass the 1 MiB budgets while staying cheap.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import redisq
from redisq import JobState, Retention, Spec
from redisq._core import calls as core_calls
from redisq._core.calls import CHUNK, CHUNK_BYTES, READ_BYTES, script_call
from redisq._core.scripts import lua_dir, script
from redisq._core.status import ScriptStatus
from redisq.keys import QueueKeys
from tests.integration.test_hostile_keyspace import keyspace
from tests.integration.test_migrate import to_layout2

Q = "caps"
BIG = 300_000  # bytes: three fit in a 1 MiB budget, four do not
N = 8


def big(i: int = 0) -> bytes:
    return bytes([i % 256]) * BIG


# ----------------------------------------------------------------------------- the caps


def test_the_python_caps_are_the_lua_caps() -> None:
    text = (lua_dir() / "lib" / "caps.lua").read_text()
    lua = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\w+) = (\d+),", text, re.M)}
    assert lua["BATCH"] == CHUNK
    assert lua["ARG_BYTES"] == CHUNK_BYTES
    assert lua["READ_BYTES"] == READ_BYTES
    assert lua["READ_GROUP"] == core_calls.READ_GROUP
    assert lua["ERROR_BYTES"] == core_calls.MAX_ERROR_LENGTH
    # The trim caps let a call that finishes a full batch still trim more than it adds.
    assert lua["TRIM"] > lua["BATCH"]
    assert lua["TRIM_BYTES"] > lua["READ_BYTES"] + lua["ARG_BYTES"]


def test_every_batch_script_declares_its_caps() -> None:
    for name in ("enqueue", "ack", "renew", "retry_dead", "purge", "list_jobs", "peek", "migrate"):
        source = (lua_dir() / f"{name}.lua").read_text()
        assert '--- @include "lib/caps"' in source, name
        assert "CAPS.BATCH" in source, name


# --------------------------------------------------------------------------- counting calls


class Calls:
    """Counts the script calls a store sends, by script name (sync or async transport)."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        store = getattr(client, "_store", client)  # the AsyncAdapter keeps the AsyncStore
        transport = store._transport
        self.names: Counter[str] = Counter()
        self.sent: list[tuple[str, list[Any]]] = []
        run, pipeline = transport.run, transport.pipeline

        def note(call: Any) -> None:
            if call.spec is not None:
                self.names[call.spec.name] += 1
                self.sent.append((call.spec.name, list(call.args)))

        if inspect.iscoroutinefunction(run):

            async def arun(call: Any) -> Any:
                note(call)
                return await run(call)

            async def apipeline(calls: list[Any]) -> Any:
                for c in calls:
                    note(c)
                return await pipeline(calls)

            monkeypatch.setattr(transport, "run", arun)
            monkeypatch.setattr(transport, "pipeline", apipeline)
        else:

            def srun(call: Any) -> Any:
                note(call)
                return run(call)

            def spipeline(calls: list[Any]) -> Any:
                for c in calls:
                    note(c)
                return pipeline(calls)

            monkeypatch.setattr(transport, "run", srun)
            monkeypatch.setattr(transport, "pipeline", spipeline)

    def reset(self) -> None:
        self.names.clear()
        self.sent.clear()


@pytest.fixture
def counted(client: Any, monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(client, monkeypatch)


def leased(client: Any, n: int = N, size: int = BIG) -> list[redisq.Job]:
    client.enqueue_many(Q, [bytes([i]) * size for i in range(n)])
    jobs: list[redisq.Job] = []
    while len(jobs) < n:
        got = client.claim(Q, worker="w", count=n - len(jobs), lease_ms=600_000)
        assert got
        jobs += got
    return jobs


# ------------------------------------------------------------------------ the client loops


def test_enqueue_many_splits_calls_by_payload_bytes(client: Any, counted: Calls) -> None:
    payloads = [big(i) for i in range(N)]
    jobs = client.enqueue_many(Q, payloads)
    assert [j.payload for j in jobs] == payloads
    assert counted.names["enqueue"] == 3  # 3 + 3 + 2 payloads of 300,000 bytes
    for _, args in counted.sent:
        count = int(args[2])
        sizes = [len(args[3 + 9 * i + 1]) for i in range(count)]
        assert count == 1 or sum(sizes) <= CHUNK_BYTES
    assert [j.payload for j in client.claim(Q, worker="w", count=N)] == payloads


def test_enqueue_many_splits_calls_by_count(client: Any, counted: Calls) -> None:
    jobs = client.enqueue_many(Q, list(range(2 * CHUNK + 1)))
    assert [j.payload for j in jobs] == list(range(2 * CHUNK + 1))
    assert counted.names["enqueue"] == 3
    assert client.counts(Q)[JobState.READY] == 2 * CHUNK + 1


def test_enqueue_of_existing_big_jobs_is_answered_over_several_calls(
    client: Any, counted: Calls
) -> None:
    # Given: jobs whose stored records are large
    first = client.enqueue_many(Q, [Spec(big(i), id=f"j{i}") for i in range(N)])
    counted.reset()
    # When: the same ids are enqueued again with small payloads, in one call's worth
    again = client.enqueue_many(Q, [Spec(i, id=f"j{i}") for i in range(N)])
    # Then: the script stops reading at its budget and the client sends the rest again
    assert again == first
    assert counted.names["enqueue"] >= 3
    assert client.counts(Q)[JobState.READY] == N


def test_enqueue_of_unique_keys_held_by_big_jobs_is_answered_over_several_calls(
    client: Any, counted: Calls
) -> None:
    held = client.enqueue_many(Q, [Spec(big(i), unique_key=f"k{i}") for i in range(N)])
    counted.reset()
    again = client.enqueue_many(Q, [Spec(i, unique_key=f"k{i}") for i in range(N)])
    assert [j.id for j in again] == [j.id for j in held]
    assert counted.names["enqueue"] >= 3
    assert client.counts(Q)[JobState.READY] == N


def test_ack_many_splits_calls_by_result_bytes(client: Any, counted: Calls) -> None:
    jobs = leased(client, size=10)
    counted.reset()
    results = [big(i) for i in range(N)]
    done = client.ack_many(jobs, results)
    assert [j.result for j in done] == results
    assert counted.names["ack"] == 3
    assert [client.get(Q, j.id).result for j in jobs] == results


def test_ack_many_of_big_jobs_is_done_over_several_calls(client: Any, counted: Calls) -> None:
    jobs = leased(client)
    counted.reset()
    done = client.ack_many(jobs)
    assert [j.id for j in done] == [j.id for j in jobs]
    assert {j.state for j in done} == {JobState.COMPLETED}
    assert counted.names["ack"] >= 3
    assert client.counts(Q)[JobState.COMPLETED] == N


def test_renew_many_of_big_jobs_is_done_over_several_calls(client: Any, counted: Calls) -> None:
    jobs = leased(client)
    counted.reset()
    renewed = client.renew_many(jobs, lease_ms=900_000)
    assert [j.id for j in renewed] == [j.id for j in jobs]
    assert all(isinstance(j, redisq.Job) for j in renewed)
    assert counted.names["renew"] >= 3


@pytest.mark.parametrize("how", ["oldest", "ids"])
def test_retry_dead_of_big_jobs_is_done_over_several_calls(
    client: Any, counted: Calls, how: str
) -> None:
    jobs = leased(client)
    for job in jobs:
        client.nack(job, error="e", dead=True)
    counted.reset()
    ids = None if how == "oldest" else [j.id for j in jobs]
    assert client.retry_dead(Q, ids) == N
    assert client.counts(Q)[JobState.READY] == N
    assert counted.names["retry_dead"] >= 3


def test_purge_of_big_jobs_is_done_over_several_calls(client: Any, counted: Calls) -> None:
    client.enqueue_many(Q, [big(i) for i in range(N)])
    assert client.purge(Q) == N
    assert sum(client.counts(Q).values()) == 0
    assert counted.names["purge"] >= 3


def test_list_and_peek_of_big_jobs_are_read_over_several_calls(client: Any, counted: Calls) -> None:
    jobs = client.enqueue_many(Q, [big(i) for i in range(N)])
    assert [j.id for j in client.list(Q)] == [j.id for j in jobs]
    assert counted.names["list_jobs"] >= 3
    assert [j.id for j in client.peek(Q, 100)] == [j.id for j in jobs]
    assert counted.names["peek"] >= 3
    assert [j.id for j in client.list(Q, limit=5, offset=2)] == [j.id for j in jobs[2:7]]
    assert [j.id for j in client.peek(Q, 5)] == [j.id for j in jobs[:5]]


def test_peek_pages_merge_due_jobs_in_claim_order(client: Any, clock: Any) -> None:
    # Ready jobs of priority 0, and scheduled ones now due at priorities around them: the
    # pages (a few jobs per call here, for the read budget) keep the one claim order.
    client.enqueue_many(Q, [Spec(big(i), id=f"r{i}") for i in range(4)])
    client.enqueue_many(
        Q, [Spec(big(i), id=f"s{i}", priority=p, delay_ms=1_000) for i, p in enumerate([5, -5])]
    )
    clock.advance(2_000)
    expected = ["s0", "r0", "r1", "r2", "r3", "s1"]
    assert [j.id for j in client.peek(Q, 10)] == expected
    assert [j.id for j in client.claim(Q, worker="w", count=10)] == expected


def test_migrate_of_big_records_converts_over_several_calls(
    client: Any, counted: Calls, raw: Any, prefix: str
) -> None:
    client.enqueue_many(Q, [big(i) for i in range(N)])
    keys = QueueKeys.build(prefix, Q)
    records = dict(raw.hgetall(keys.jobs))
    for job_id, record in records.items():
        raw.hset(keys.jobs, job_id, to_layout2(record))
    raw.hset(keys.meta, "schema", "2")
    counted.reset()
    [migration] = client.migrate(Q, batch=10_000)
    assert (migration.converted, migration.done) == (N, True)
    assert dict(raw.hgetall(keys.jobs)) == records
    assert counted.names["migrate"] >= 3


# ------------------------------------------------------------------ direct over-cap calls


@pytest.fixture
def send(raw: Any, prefix: str) -> Callable[..., list[Any]]:
    """Send one script call by hand (as a foreign client would); return its raw reply."""
    keys = QueueKeys.build(prefix, Q)

    def call(name: str, **argv: Any) -> list[Any]:
        built = script_call(name, keys, lambda r: r, **argv)
        reply: list[Any] = raw.eval(script(name).source, len(built.keys), *built.keys, *built.args)
        return reply

    return call


def test_enqueue_refuses_over_cap_calls(send: Callable[..., Any], raw: Any, prefix: str) -> None:
    def job(i: int, payload: bytes = b"\xc0") -> list[Any]:
        return [f"id{i}", payload, "", 0, "", 0, 3, "", "", ""]

    over_count = [v for i in range(CHUNK + 1) for v in job(i)]
    reply = send("enqueue", now_ms="", lib_version="t", count=CHUNK + 1, jobs=over_count)
    assert reply[0] == ScriptStatus.BAD_ARGUMENT
    half = b"x" * (CHUNK_BYTES // 2 + 1)
    reply = send("enqueue", now_ms="", lib_version="t", count=2, jobs=job(1, half) + job(2, half))
    assert reply[0] == ScriptStatus.BAD_ARGUMENT
    assert keyspace(raw, prefix) == {}
    # One job alone may be larger (up to the payload limit).
    alone = b"x" * (CHUNK_BYTES + 1)
    reply = send("enqueue", now_ms="", lib_version="t", count=1, jobs=job(1, alone))
    assert reply[0] == ScriptStatus.OK


def test_batch_scripts_refuse_over_cap_counts(
    client: Any, send: Callable[..., Any], raw: Any, prefix: str
) -> None:
    client.enqueue_many(Q, list(range(10)))
    before = keyspace(raw, prefix)
    many = [f"id{i}" for i in range(CHUNK + 1)]
    trim = {"keep": 0, "max_age_ms": 0, "batch": 100, "result_ttl_ms": 0}
    acks = [v for i in many for v in (i, 1, "")]
    assert send("ack", now_ms="", **trim, count=len(many), jobs=acks)[0] == 7
    results = [v for i in range(2) for v in (f"id{i}", 1, b"r" * (CHUNK_BYTES // 2 + 1))]
    assert send("ack", now_ms="", **trim, count=2, jobs=results)[0] == 7
    renews = [v for i in many for v in (i, 1)]
    reply = send("renew", now_ms="", lease_ms=1000, default_ms=1000, count=len(many), jobs=renews)
    assert reply[0] == 7
    assert send("retry_dead", now_ms="", limit=CHUNK + 1, count=0, ids=[])[0] == 7
    assert send("retry_dead", now_ms="", limit=1, count=len(many), ids=many)[0] == 7
    assert send("purge", state="", limit=CHUNK + 1)[0] == 7
    error = "e" * (core_calls.MAX_ERROR_LENGTH + 1)
    nack = {"id": "id1", "token": 1, "delay_ms": 0, "dead": 0}
    reply = send("nack", now_ms="", **nack, error=error, dead_keep=10, dead_age_ms=0, batch=10)
    assert reply[0] == 7
    assert keyspace(raw, prefix) == before


def test_reads_clamp_over_cap_limits(client: Any, send: Callable[..., Any], clock: Any) -> None:
    client.enqueue_many(Q, list(range(CHUNK + 5)))
    reply = send("list_jobs", state="", offset=0, limit=5 * CHUNK)
    assert (reply[1], reply[2], (len(reply) - 3) // 2) == (CHUNK, 1, CHUNK)
    reply = send("list_jobs", state="", offset=CHUNK, limit=5 * CHUNK)
    assert (reply[1], reply[2], (len(reply) - 3) // 2) == (5, 0, 5)
    reply = send("peek", now_ms="", offset=0, limit=5 * CHUNK, batch=10**9)
    assert (reply[1], reply[2], (len(reply) - 3) // 2) == (CHUNK, 1, CHUNK)


def test_batch_scripts_stop_at_the_read_budget(
    client: Any, send: Callable[..., Any], raw: Any, prefix: str
) -> None:
    jobs = leased(client)
    acks = [v for j in jobs for v in (j.id, j.token, "")]
    reply = send(
        "ack", now_ms="", keep=100, max_age_ms=0, batch=100, result_ttl_ms=0, count=N, jobs=acks
    )
    assert reply[0] == ScriptStatus.OK
    handled = len(reply[2])
    assert 1 <= handled < N
    assert handled * BIG <= READ_BYTES
    keys = QueueKeys.build(prefix, Q)
    assert raw.zcard(keys.done) == handled
    assert raw.zcard(keys.leased) == N - handled


def test_retention_trims_at_most_the_trim_cap_per_call(
    client_factory: Callable[..., Any], raw: Any, prefix: str
) -> None:
    text = (lua_dir() / "lib" / "caps.lua").read_text()
    trim_cap = int(re.search(r"TRIM = (\d+)", text).group(1))  # type: ignore[union-attr]
    keeper = client_factory(retention=Retention(completed=10**6))
    keeper.enqueue_many(Q, list(range(3 * CHUNK)))
    for _ in range(3):
        keeper.ack_many(keeper.claim(Q, worker="w", count=CHUNK))
    trimmer = client_factory(retention=Retention(completed=0, trim_batch=10_000))
    trimmer.enqueue(Q, "last")
    [job] = trimmer.claim(Q, worker="w")
    trimmer.ack(job)
    keys = QueueKeys.build(prefix, Q)
    assert raw.zcard(keys.done) == 3 * CHUNK + 1 - trim_cap


def test_scripts_of_this_module_exist() -> None:
    # Guard against a renamed script silently skipping the direct checks above.
    for name in ("enqueue", "ack", "renew", "retry_dead", "purge", "list_jobs", "peek", "nack"):
        assert (Path(lua_dir()) / f"{name}.lua").is_file()


def test_retention_frees_at_most_the_trim_bytes_per_call(
    client_factory: Callable[..., Any], raw: Any, prefix: str
) -> None:
    # Given: big completed records kept, then a store that keeps none acks one small job
    text = (lua_dir() / "lib" / "caps.lua").read_text()
    trim_bytes = int(re.search(r"TRIM_BYTES = (\d+)", text).group(1))  # type: ignore[union-attr]
    keeper = client_factory(retention=Retention(completed=10**6))
    keeper.ack_many(leased(keeper, n=20))
    trimmer = client_factory(retention=Retention(completed=0))
    trimmer.enqueue(Q, "small")
    [job] = trimmer.claim(Q, worker="w")
    trimmer.ack(job)
    # Then: the call trimmed only as many old records as fit in its byte budget
    keys = QueueKeys.build(prefix, Q)
    trimmed = 21 - raw.zcard(keys.done)
    assert 1 <= trimmed <= trim_bytes // BIG + 1
    assert raw.hlen(keys.jobs) == 21 - trimmed
    # and the next calls go on until the set is within its limits.
    for _ in range(3):
        trimmer.enqueue(Q, "small")
        trimmer.ack(trimmer.claim(Q, worker="w")[0])
    assert raw.zcard(keys.done) == 0
