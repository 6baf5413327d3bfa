"""Migrating a queue from schema 2 (record layout 2) to schema 3, on every backend.

A schema-2 queue is built by hand: the store makes jobs in every state, then every record is
rewritten into layout 2 (the fields of lua/lib/record.lua in their old order, the blobs as
they were) and the meta hash says schema '2'. Layout 2 to 3 is a pure reordering, so a correct
migration gives back the very bytes the store wrote, and every Job exactly as before.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import redisq
from redisq import InvalidArgument, Job, JobState, Migration, SchemaVersionError
from redisq._core import ops
from redisq._core.scripts import script
from redisq.cli import main
from redisq.keys import QueueKeys
from tests.support.clock import TestClock

ROOT = Path(__file__).resolve().parents[2]
Q = "mq"

#: The text fields of a record, layout 3 (lua/lib/record.lua) and layout 2 (schema 2).
LAYOUT3 = (
    "state", "attempts", "token", "worker", "leased_at", "deadline", "finished", "ended",
    "lease_ms", "ukey", "prio", "max", "created", "run_at", "seq", "name",
)  # fmt: skip
LAYOUT2 = (
    "state", "prio", "attempts", "max", "created", "run_at", "seq", "token", "worker",
    "leased_at", "deadline", "finished", "lease_ms", "ukey", "name", "ended",
)  # fmt: skip


def to_layout2(record: bytes) -> bytes:
    """Rewrite a layout-3 record into layout 2: the 16 text fields reordered, the rest kept."""
    parts = record.split(b"\n", 20)
    assert parts[0] == b"j3", record[:40]
    fields = dict(zip(LAYOUT3, parts[1:17], strict=True))
    return b"\n".join([b"j2", *(fields[name] for name in LAYOUT2), *parts[17:]])


@dataclass
class World:
    """A queue in schema 2 with a job in every state, and what the store said before."""

    store: redisq.Store
    clock: TestClock
    keys: QueueKeys
    raw: Any  # the redis-py client
    before: dict[str, Job]  # every job, as get returned it in schema 3
    records: dict[bytes, bytes]  # the jobs hash in layout 3, as the store wrote it
    counts: dict[JobState, int]
    leased: Job  # the leased job, as claim returned it (its token is still valid)

    def jobs(self) -> dict[bytes, bytes]:
        return dict(self.raw.hgetall(self.keys.jobs))

    def schema(self) -> bytes | None:
        value: bytes | None = self.raw.hget(self.keys.meta, "schema")
        return value

    def send(self, cursor: str, batch: int | str) -> list[Any]:
        """Send one migrate script call by hand; return its raw reply."""
        reply: list[Any] = self.raw.eval(
            script("migrate").source, 2, self.keys.meta, self.keys.jobs, cursor, batch
        )
        return reply

    def gets(self) -> dict[str, Job | None]:
        return {job_id: self.store.get(Q, job_id) for job_id in self.before}


def build_schema2(store: redisq.Store, clock: TestClock, queue: str = Q) -> World:
    """Jobs in every state under schema 3, then rewritten into schema 2."""
    # Each job is claimed while it is the only ready one, so claim takes that job.
    store.enqueue(queue, {"n": "c"}, id="completed", name="mail")
    (c,) = store.claim(queue, worker="w1", lease_ms=60_000)
    store.ack(c, result={"sent": True, "bytes": b"\x00\xff"})
    store.enqueue(queue, "d", id="dead", max_attempts=1)
    (d,) = store.claim(queue, worker="w2", lease_ms=60_000)
    store.nack(d, error="boom: line 1\nline 2")
    store.enqueue(queue, [1, 2.5, None], id="leased", priority=7)
    (leased,) = store.claim(queue, worker="w3", lease_ms=60_000)
    leased = store.progress(leased, {"done": 50})
    store.enqueue(queue, "r", id="ready", priority=-3, name="task")
    store.enqueue(queue, "s", id="scheduled", delay_ms=3_600_000)
    store.enqueue(queue, "u", id="unique", unique_key="uk-1")
    store.enqueue(queue, "l", id="own-lease", lease_ms=7_000, max_attempts=9)
    store.enqueue(queue, "x", id="cancelled")
    assert store.cancel(queue, "cancelled")
    keys = QueueKeys.build(store.prefix, queue)
    raw = store.redis
    # Schema 2 kept no attempt history (lua/lib/attempt_entry, test_attempts covers migrate).
    raw.hdel(keys.jobs, *[f for f in raw.hkeys(keys.jobs) if b"\0" in f])
    before = {job_id.decode(): store.get(queue, job_id.decode()) for job_id in raw.hkeys(keys.jobs)}
    assert {j.state for j in before.values() if j is not None} == set(JobState) - {
        JobState.WAITING
    }  # schema 2 had no waiting jobs
    records = dict(raw.hgetall(keys.jobs))
    counts = store.counts(queue)
    for job_id, record in records.items():
        raw.hset(keys.jobs, job_id, to_layout2(record))
    raw.hset(keys.meta, "schema", "2")
    assert raw.hget(keys.meta, "schema") == b"2"
    return World(
        store,
        clock,
        keys,
        raw,
        {k: v for k, v in before.items() if v is not None},
        records,
        counts,
        leased,
    )


@pytest.fixture
def world(url: str, prefix: str) -> Iterator[World]:
    clock = TestClock()
    store = redisq.connect(url, prefix=prefix, clock=clock)
    try:
        yield build_schema2(store, clock)
    finally:
        store.close()


def refused(world: World) -> list[SchemaVersionError]:
    """Call what checks the schema; each must raise SchemaVersionError. Return them."""
    calls: list[Callable[[], object]] = [
        lambda: world.store.counts(Q),
        lambda: world.store.claim(Q, worker="w9"),
        lambda: world.store.enqueue(Q, 1, id="new"),
        lambda: world.store.list(Q),
        lambda: world.store.ack(world.leased),
        lambda: world.store.pause(Q),
        lambda: world.store.get(Q, world.leased.id),
        lambda: world.store.find(world.leased.id),
    ]
    errors = []
    for call in calls:
        with pytest.raises(SchemaVersionError) as info:
            call()
        errors.append(info.value)
    return errors


# ---------------------------------------------------------------------------------------------


def test_before_migrating_every_call_refuses_and_says_to_run_migrate(world: World) -> None:
    jobs = world.jobs()
    for exc in refused(world):
        assert (exc.found, exc.expected) == ("2", "3")
        assert "run `redisq migrate`" in str(exc)
    assert world.jobs() == jobs  # nothing was written
    assert world.schema() == b"2"


def test_migrate_gives_back_every_job_and_the_very_bytes(world: World) -> None:
    result = world.store.migrate(Q)
    assert result == [Migration(Q, "2", len(world.before), 0, 0, True)]
    assert world.schema() == b"3"
    assert world.jobs() == world.records
    assert world.gets() == world.before
    assert world.store.counts(Q) == world.counts
    # The lease survives with its token, the unique key still holds, claims work.
    acked = world.store.ack(world.leased, result=1)
    assert (acked.state, acked.token, acked.result) == (JobState.COMPLETED, world.leased.token, 1)
    again = world.store.enqueue(Q, "other", unique_key="uk-1")
    assert again.id == "unique"
    claimed = world.store.claim(Q, worker="w9", count=10)
    assert world.leased.token is not None
    assert [j.id for j in claimed] == ["unique", "own-lease", "ready"]  # priority, then FIFO
    assert claimed[1].lease_deadline_ms == world.clock() + 7_000  # its own lease_ms
    assert all(j.token is not None and j.token > world.leased.token for j in claimed)


def test_a_second_migrate_writes_nothing(world: World) -> None:
    world.store.migrate(Q)
    jobs, meta = world.jobs(), world.raw.hgetall(world.keys.meta)
    assert world.store.migrate(Q, batch=1) == [Migration(Q, "3", 0, 0, 0, True)]
    assert world.store.migrate() == [Migration(Q, "3", 0, 0, 0, True)]
    assert (world.jobs(), world.raw.hgetall(world.keys.meta)) == (jobs, meta)


def test_mid_migration_every_client_refuses_and_migrate_resumes(world: World) -> None:
    # Given one call of batch 1 sent by hand: one record converted, the queue marked.
    status, found, _cursor, converted, _skipped, bad, done = world.send("0", 1)
    assert (status, found, converted, bad, done) == (0, b"2", 1, 0, 0)
    assert world.schema() == b"migrating:3"
    assert sum(r.startswith(b"j3\n") for r in world.jobs().values()) == 1
    # Then every call refuses the mixed queue, pointing at migrate again.
    jobs = world.jobs()
    for exc in refused(world):
        assert (exc.found, exc.expected) == ("migrating:3", "3")
        assert "run `redisq migrate` again" in str(exc)
    assert world.jobs() == jobs
    # When migrate runs (an interrupted one starts over): it converts the rest.
    result = world.store.migrate(Q, batch=2)
    assert result == [Migration(Q, "migrating:3", len(world.before) - 1, 1, 0, True)]
    assert world.jobs() == world.records
    assert world.gets() == world.before


def test_an_older_schema_2_client_refuses_the_migrating_queue(world: World) -> None:
    # The scripts of the previous redisq compared meta's schema with '2': run one of them
    # (counts, with the old version) against the queue while it migrates.
    world.send("0", 1)
    old_counts = script("counts").source.replace(
        "local SCHEMA_VERSION = '3'", "local SCHEMA_VERSION = '2'"
    )
    assert old_counts != script("counts").source
    k = world.keys
    keys = [k.meta, k.ready, k.scheduled, k.leased, k.done, k.dead, k.cancelled, k.gready]
    keys += [k.waiting, k.gturn]
    assert world.raw.eval(old_counts, len(keys), *keys, "") == [5, b"migrating:3", b"2"]


def test_a_resent_call_converts_nothing_twice(world: World) -> None:
    # Given a first call of batch 2 from the start...
    first = world.send("0", 2)
    assert first[3] == 2
    after_first = world.jobs()
    converted = {k for k, v in after_first.items() if v.startswith(b"j3\n")}
    assert len(converted) == 2
    # When it is re-sent with the same cursor (a retry after a lost reply)...
    second = world.send("0", 2)
    after_second = world.jobs()
    # Then what the first converted is byte for byte unchanged, and only new records changed.
    assert {k: after_second[k] for k in converted} == {k: after_first[k] for k in converted}
    changed = {k for k in after_second if after_second[k] != after_first[k]}
    assert len(changed) == second[3]
    assert not changed & converted
    # And the whole migration still gives back exactly what the store wrote.
    world.store.migrate(Q, batch=3)
    assert world.jobs() == world.records


def test_a_resent_final_call_is_harmless(world: World) -> None:
    reply = world.send("0", 10_000)
    assert reply == [0, b"2", b"0", len(world.before), 0, 0, 1]
    assert world.send("0", 10_000) == [0, b"3", b"0", 0, 0, 0, 1]
    assert world.jobs() == world.records


def test_a_corrupted_record_is_left_alone_and_counted_bad(world: World) -> None:
    garbage = {b"junk-1": b"j2\nready\nnot a number", b"junk-2": b"\x00\x01", b"junk-3": b""}
    # A layout-2 record whose blob lengths do not fit its tail.
    good = to_layout2(world.records[b"ready"])
    garbage[b"junk-4"] = good.replace(b"\n0\n0\n0\n", b"\n0\n0\n99\n")
    world.raw.hset(world.keys.jobs, mapping=garbage)
    result = world.store.migrate(Q, batch=3)
    assert result == [Migration(Q, "2", len(world.before), 0, len(garbage), True)]
    jobs = world.jobs()
    assert {k: jobs[k] for k in garbage} == garbage
    assert {k: v for k, v in jobs.items() if k not in garbage} == world.records
    assert world.gets() == world.before
    with pytest.raises(redisq.BadRecord):
        world.store.get(Q, "junk-1")


@pytest.mark.parametrize("batch", [0, -1, 10_001, 2.5, "5", True, None])
def test_a_bad_batch_is_refused_before_anything_is_written(world: World, batch: Any) -> None:
    jobs = world.jobs()
    for queue in (Q, None):
        with pytest.raises(InvalidArgument, match=r"^batch must be") as info:
            world.store.migrate(queue, batch=batch)
        assert (info.value.field, info.value.value) == ("batch", batch)
        assert "10000" in info.value.limit.replace(",", "").replace("_", "")
    assert (world.jobs(), world.schema()) == (jobs, b"2")


def test_the_script_refuses_bad_arguments_itself(world: World) -> None:
    bad: list[tuple[str, int | str]] = [("x", 1), ("-1", 1), ("0", 0), ("0", 10_001), ("0", "1.5")]
    for cursor, batch in bad:
        assert world.send(cursor, batch) == [7, b"migrate"]
    assert world.schema() == b"2"


def test_other_versions_are_refused_and_no_data_is_done(world: World) -> None:
    jobs = world.jobs()
    for version, advice in [("1", "roll back"), ("999", "upgrade (or roll back)")]:
        world.raw.hset(world.keys.meta, "schema", version)
        with pytest.raises(SchemaVersionError, match=r"schema version") as info:
            world.store.migrate(Q)
        assert (info.value.found, info.value.expected) == (version, "3")
        assert advice in str(info.value)
        assert "run `redisq migrate`" not in str(info.value)
        assert (world.jobs(), world.schema()) == (jobs, version.encode())
    # A queue nothing was written to is done at once, and stays unwritten.
    assert world.store.migrate("empty") == [Migration("empty", None, 0, 0, 0, True)]
    assert world.raw.exists(QueueKeys.build(world.store.prefix, "empty").meta) == 0


def test_a_key_of_the_wrong_type_is_refused(world: World) -> None:
    other = QueueKeys.build(world.store.prefix, "typed")
    world.raw.hset(other.meta, "schema", "2")
    world.raw.set(other.jobs, "not a hash")
    with pytest.raises(redisq.WrongKeyType) as info:
        world.store.migrate("typed")
    assert (info.value.key, info.value.found) == (other.jobs, "string")
    assert world.raw.hget(other.meta, "schema") == b"2"


def test_migrate_without_a_queue_does_every_queue_of_the_registry(world: World) -> None:
    # Given a second schema-2 queue and a third already at schema 3, all in the registry.
    build_schema2(world.store, world.clock, "mq2")
    world.store.enqueue("fresh", 1, id="f")
    assert world.raw.smembers(f"{world.store.prefix}:queues") == {b"mq", b"mq2", b"fresh"}
    result = world.store.migrate(batch=4)
    assert result == [
        Migration("fresh", "3", 0, 0, 0, True),
        Migration(Q, "2", len(world.before), 0, 0, True),
        Migration("mq2", "2", len(world.before), 0, 0, True),
    ]
    assert world.gets() == world.before
    assert world.store.counts()[JobState.READY] == 2 * world.counts[JobState.READY] + 1


def test_an_interrupted_op_reports_not_done(world: World) -> None:
    # The op stopped after one call, as a killed `redisq migrate` leaves the queue.
    partial = world.store._run(ops.migrate(world.store.settings, Q, 1, max_calls=1))
    assert partial == Migration(Q, "2", 1, 0, 0, False)
    assert world.schema() == b"migrating:3"
    done = world.store.migrate(Q, batch=1)
    assert done == [Migration(Q, "migrating:3", len(world.before) - 1, 1, 0, True)]


def test_async_store_migrates(url: str, prefix: str) -> None:
    clock = TestClock()
    with redisq.connect(url, prefix=prefix, clock=clock) as store:
        world = build_schema2(store, clock)

        async def main() -> list[Migration]:
            s = redisq.connect_async(url, prefix=prefix, clock=clock)
            try:
                with pytest.raises(SchemaVersionError, match=r"redisq migrate"):
                    await s.counts(Q)
                result = await s.migrate(batch=2)
                assert await s.get(Q, "leased") == world.before["leased"]
                return result
            finally:
                await s.close()

        assert asyncio.run(main()) == [Migration(Q, "2", len(world.before), 0, 0, True)]
        assert world.jobs() == world.records


# ------------------------------------------------------------------------------- the command


def _cli(real_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    # run() kills the child when the timeout passes, so nothing outlives a failed test.
    return subprocess.run(
        [sys.executable, "-m", "redisq", "migrate", *args, "--url", real_url, "--prefix", prefix],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_redisq_migrate_end_to_end(
    real_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def in_process(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["migrate", *args, "--url", real_url, "--prefix", prefix])
        out, err = capsys.readouterr()
        return code, out, err

    clock = TestClock()
    with redisq.connect(real_url, prefix=prefix, clock=clock) as store:
        world = build_schema2(store, clock)
        code, _, err = in_process("--batch", "0", "--json")
        assert code == 2
        assert json.loads(err)["field"] == "batch"
        assert world.schema() == b"2"

        # The real entry point, in a child process.
        run = _cli(real_url, prefix, "--json", "--batch", "3")
        assert (run.returncode, run.stderr) == (0, "")
        n = len(world.before)
        assert json.loads(run.stdout) == {
            "queues": {Q: {"found": "2", "converted": n, "skipped": 0, "bad": 0, "done": True}},
            "converted": n,
            "bad": 0,
        }
        assert world.jobs() == world.records
        assert world.gets() == world.before

        code, out, _ = in_process("--queue", Q)
        assert code == 0
        assert out.splitlines()[1].split() == [Q, "3", "0", "0", "0"]

        store.redis.hset(world.keys.meta, "schema", "999")
        code, _, err = in_process()
        assert code == 1
        assert "schema version 999" in err


def test_a_large_queue_migrates_in_bounded_steps(url: str, prefix: str) -> None:
    # 1,500 records: a hash Redis keeps as a real hash table, scanned over many cursors.
    with redisq.connect(url, prefix=prefix) as store:
        store.enqueue_many(Q, [{"i": i, "pad": "x" * 40} for i in range(1_500)])
        keys = QueueKeys.build(prefix, Q)
        raw = store.redis
        records = dict(raw.hgetall(keys.jobs))
        pipe = raw.pipeline(transaction=False)
        for job_id, record in records.items():
            pipe.hset(keys.jobs, job_id, to_layout2(record))
        pipe.hset(keys.meta, "schema", "2")
        pipe.execute()
        source, cursor, calls, converted = script("migrate").source, "0", 0, 0
        while True:
            reply = raw.eval(source, 2, keys.meta, keys.jobs, cursor, 100)
            calls += 1
            assert reply[0] == 0
            assert reply[3] <= 100  # never more than batch per call
            converted += reply[3]
            cursor = reply[2].decode()
            if reply[6]:
                break
            assert raw.hget(keys.meta, "schema") == b"migrating:3"
        assert (converted, raw.hget(keys.meta, "schema")) == (1_500, b"3")
        assert calls >= 15
        assert dict(raw.hgetall(keys.jobs)) == records
        assert store.counts(Q)[JobState.READY] == 1_500
