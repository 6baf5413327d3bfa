"""A hostile keyspace is refused with a typed error and no partial write (reliability 4.4).

Another program (or an old redisq) may have left a key of another type where a queue's key
belongs, or a meta hash recording another schema version. Redis does not roll a script back,
so each script must check before its first write. Every test plants such a key, calls one
operation that touches it, and checks (1) a typed `RedisqError` (`WrongKeyType` naming the key
and its type, or `SchemaVersionError`), and (2) that no key of the test's prefix changed:
each key's type, a type-appropriate read and whether it has a TTL are compared exactly.

Two starting points: ``fresh`` plants the key before any redisq call; ``populated`` first
builds a queue holding a job in every state (and a claimed job to ack) and then replaces one
of its keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import redisq
from redisq import (
    BadRecord,
    JobState,
    RedisqError,
    SchemaVersionError,
    Spec,
    WrongKeyType,
)
from redisq._core.schema import SCHEMA_VERSION
from tests.support.clock import TestClock

Q = "hostile"
LEASE = 1_000

# The queue-level keys, and the wrong type planted at each (varied on purpose: a set where a
# sorted set belongs is the subtle case).
PARTS: dict[str, str] = {
    "meta": "string",
    "ready": "string",
    "scheduled": "set",
    "leased": "list",
    "done": "hash",
    "dead": "string",
    "cancelled": "list",
    "unique": "zset",
    "jobs": "zset",
}


def plant(raw: Any, key: str, kind: str) -> None:
    """Replace `key` with a value of type `kind`."""
    raw.delete(key)
    if kind == "string":
        raw.set(key, "not yours")
    elif kind == "list":
        raw.rpush(key, "not", "yours")
    elif kind == "set":
        raw.sadd(key, "not", "yours")
    elif kind == "hash":
        raw.hset(key, mapping={"not": "yours"})
    elif kind == "zset":
        raw.zadd(key, {"not": 1, "yours": 2})
    else:
        raise ValueError(kind)
    assert raw.type(key).decode() == kind


def keyspace(raw: Any, prefix: str) -> dict[bytes, tuple[str, Any, bool]]:
    """Every key of the test's prefix: type, a type-appropriate read, and has-a-TTL."""
    keys = sorted(
        {
            key
            for pattern in (f"{{{prefix}:*", f"{prefix}:*")
            for key in raw.scan_iter(match=pattern, count=1000)
        }
    )
    if not keys:
        return {}
    pipe = raw.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [k.decode() for k in pipe.execute()]
    pipe = raw.pipeline(transaction=False)
    for key, kind in zip(keys, kinds, strict=True):
        if kind == "string":
            pipe.get(key)
        elif kind == "hash":
            pipe.hgetall(key)
        elif kind == "zset":
            pipe.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            pipe.smembers(key)
        elif kind == "list":
            pipe.lrange(key, 0, -1)
        else:
            pipe.exists(key)
        pipe.pttl(key)
    replies = pipe.execute()
    return {
        key: (kind, replies[2 * i], replies[2 * i + 1] > 0)
        for i, (key, kind) in enumerate(zip(keys, kinds, strict=True))
    }


def diff(before: dict[bytes, Any], after: dict[bytes, Any]) -> list[str]:
    """Describe each key that differs between two snapshots."""
    out = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            out.append(f"{key!r}: {before.get(key)!r} -> {after.get(key)!r}")
    return out


@dataclass
class World:
    """One test's queue: its store (on a test clock), a raw client and the known jobs."""

    store: redisq.Store
    raw: Any
    prefix: str
    clock: TestClock
    held: Any = None  # a Job leased by claim, for ack, nack, renew, release, progress

    def key(self, part: str) -> str:
        return f"{{{self.prefix}:{Q}}}:{part}"

    @property
    def jobs_key(self) -> str:
        return self.key("jobs")

    def corrupt(self, job_id: str) -> None:
        """Replace the stored record of a job by bytes that do not parse."""
        self.raw.hset(self.jobs_key, job_id, b"not a job record")

    def populate(self) -> None:
        """A job in every state: ready (two), scheduled, leased, completed, dead, cancelled."""
        s = self.store
        s.enqueue_many(
            Q,
            [
                Spec("leased", id="l1", priority=10, max_attempts=5),
                Spec("done", id="d1", priority=9),
                Spec("dead", id="x1", priority=8, unique_key="kx"),
            ],
        )
        leased, done, dead = s.claim(Q, worker="w1", lease_ms=LEASE, count=3)
        assert [leased.id, done.id, dead.id] == ["l1", "d1", "x1"]
        s.ack(done, "result")
        s.nack(dead, error="boom", dead=True)
        s.enqueue_many(
            Q,
            [
                Spec("ready", id="r1"),
                Spec("unique", id="u1", unique_key="k1"),
                Spec("later", id="s1", delay_ms=60_000),
                Spec("gone", id="c1"),
            ],
        )
        assert s.cancel(Q, "c1") is True
        counts = s.counts(Q)
        assert list(counts.values()) == [2, 1, 1, 1, 1, 1, 0]  # the last: waiting
        self.held = leased


@pytest.fixture
def world(url: str, prefix: str) -> Iterator[World]:
    clock = TestClock()
    store = redisq.connect(url, prefix=prefix, clock=clock)
    try:
        yield World(store, store.redis, prefix, clock)
    finally:
        store.close()


def check_refused(
    world: World,
    action: Callable[[], Any],
    expected: tuple[type[Exception], ...],
    *,
    may_succeed: bool = False,
) -> Exception | None:
    """Run `action`: it must raise one of `expected` (or, if allowed, succeed), and no key of
    the prefix may change either way."""
    before = keyspace(world.raw, world.prefix)
    outcome: Exception | None = None
    problems = []
    try:
        result = action()
    except Exception as exc:
        outcome = exc
        if not isinstance(exc, expected):
            problems.append(f"untyped or wrong error: {type(exc).__name__}: {exc}")
    else:
        if not may_succeed:
            names = [e.__name__ for e in expected]
            problems.append(f"expected {names}, got the result {result!r}")
    after = keyspace(world.raw, world.prefix)
    # Enqueue registers the queue name first, on purpose (a refused write after it leaves a
    # registered queue without jobs, which reads as an empty queue): that alone is allowed.
    registry = f"{world.prefix}:queues".encode()
    gained = after.get(registry)
    had = before.get(registry)
    if gained and gained[0] == "set" and gained[1] == (had[1] if had else set()) | {Q.encode()}:
        if had:
            after[registry] = had
        else:
            del after[registry]
    problems += [f"changed {change}" for change in diff(before, after)]
    assert not problems, "\n".join(problems)
    return outcome


# Operations by name: each takes the world and calls the store. `needs` lists the parts of the
# queue whose key the call touches (so a wrong type there must be refused). The hot scripts
# (enqueue, claim, ack) check a key by its first access, so a key the call does not touch on
# its path (the dead set of a claim that reaps nothing) is not part of what it needs.
@dataclass(frozen=True)
class Op:
    call: Callable[[World], Any]
    needs: frozenset[str]


ALL_SETS = frozenset({"ready", "scheduled", "leased", "done", "dead", "cancelled"})


OPS: dict[str, Op] = {
    "enqueue": Op(lambda w: w.store.enqueue(Q, "new"), frozenset({"meta", "ready"})),
    "enqueue_many": Op(
        lambda w: w.store.enqueue_many(Q, ["n1", Spec("n2", delay_ms=5_000, unique_key="k9")]),
        frozenset({"meta", "ready", "scheduled", "unique"}),
    ),
    "claim": Op(
        lambda w: w.store.claim(Q, worker="w2", lease_ms=LEASE, count=5),
        frozenset({"meta", "ready", "scheduled", "leased"}),
    ),
    "claim_reaping": Op(
        lambda w: (w.clock.advance(LEASE), w.store.claim(Q, worker="w2", count=5))[1],
        frozenset({"meta", "ready", "scheduled", "leased", "dead", "unique"}),
    ),
    "claim_and_ack": Op(
        lambda w: w.store.claim_and_ack(Q),
        frozenset({"meta", "ready", "scheduled", "leased", "done", "dead", "unique"}),
    ),
    "ack": Op(lambda w: w.store.ack(w.held, "ok"), frozenset({"meta", "leased", "done"})),
    "nack": Op(
        lambda w: w.store.nack(w.held, error="e", delay_ms=0),
        frozenset({"meta", "ready", "scheduled", "leased", "dead", "unique"}),
    ),
    "renew": Op(
        lambda w: w.store.renew(w.held, lease_ms=60_000),
        frozenset({"meta", "leased"}),
    ),
    "release": Op(
        lambda w: w.store.release(w.held),
        frozenset({"meta", "ready", "leased"}),
    ),
    "progress": Op(lambda w: w.store.progress(w.held, 50), frozenset({"meta"})),
    "counts": Op(lambda w: w.store.counts(Q), frozenset({"meta"}) | ALL_SETS),
    "list": Op(lambda w: w.store.list(Q), frozenset({"meta"}) | ALL_SETS),
    "peek": Op(lambda w: w.store.peek(Q), frozenset({"meta", "ready", "scheduled"})),
    "purge": Op(lambda w: w.store.purge(Q), frozenset({"meta", "unique"}) | ALL_SETS),
    "cancel": Op(
        lambda w: w.store.cancel(Q, "r1"),
        frozenset({"meta", "ready", "scheduled", "leased", "cancelled", "unique"}),
    ),
    "delete": Op(lambda w: w.store.delete(Q, "r1"), frozenset({"meta", "unique"}) | ALL_SETS),
    "update": Op(
        lambda w: w.store.update(Q, "s1", priority=5, run_at_ms=0),
        frozenset({"meta", "ready", "scheduled"}),
    ),
    "reap": Op(
        lambda w: (w.clock.advance(LEASE), w.store.reap(Q))[1],
        frozenset({"meta", "ready", "scheduled", "leased", "dead", "unique"}),
    ),
    "retry_dead": Op(
        lambda w: w.store.retry_dead(Q), frozenset({"meta", "ready", "dead", "unique"})
    ),
    "pause": Op(lambda w: w.store.pause(Q), frozenset({"meta"})),
}
# Before any redisq call, the operations that may be a queue's first write (or first read).
FRESH = {"enqueue", "enqueue_many", "claim", "claim_and_ack", "pause", "purge", "delete", "cancel"}


# The operations that read the jobs hash (job id -> record) on their path: in a populated queue,
# and before any call (where a claim finds no candidate and never reads it).
JOBS_POPULATED = set(OPS) - {"counts", "pause"}
JOBS_FRESH = {"enqueue", "enqueue_many", "claim_and_ack", "purge", "delete", "cancel"}


def _cases(start: str) -> list[Any]:
    cases = []
    for op_name, op in OPS.items():
        if start == "fresh" and op_name not in FRESH:
            continue
        needs = set(op.needs)
        if op_name in (JOBS_FRESH if start == "fresh" else JOBS_POPULATED):
            needs.add("jobs")
        for part in PARTS:
            if part in needs:
                cases.append(pytest.param(op_name, part, id=f"{op_name}-{part}"))
    return cases


def _expect_wrong_type(world: World, op_name: str, part: str) -> None:
    key = world.key(part)
    plant(world.raw, key, PARTS[part])
    exc = check_refused(world, lambda: OPS[op_name].call(world), (WrongKeyType,))
    assert isinstance(exc, WrongKeyType)
    assert (exc.key, exc.found) == (key, PARTS[part])
    assert key in str(exc)


@pytest.mark.parametrize(("op_name", "part"), _cases("fresh"))
def test_wrong_type_before_any_call(world: World, op_name: str, part: str) -> None:
    _expect_wrong_type(world, op_name, part)


@pytest.mark.parametrize(("op_name", "part"), _cases("populated"))
def test_wrong_type_in_a_populated_queue(world: World, op_name: str, part: str) -> None:
    world.populate()
    _expect_wrong_type(world, op_name, part)


# ---------------------------------------------------------------------------- job records

# Operations aimed at one job whose stored record does not parse: (call, id of the job).
JOB_OPS: dict[str, tuple[Callable[[World], Any], str]] = {
    "enqueue-same-id": (lambda w: w.store.enqueue(Q, "new", id="r1"), "r1"),
    "enqueue_many-same-id": (lambda w: w.store.enqueue_many(Q, [Spec("n", id="r1")]), "r1"),
    "ack": (lambda w: w.store.ack(w.held), "l1"),
    "nack": (lambda w: w.store.nack(w.held, error="e", delay_ms=0), "l1"),
    "renew": (lambda w: w.store.renew(w.held), "l1"),
    "release": (lambda w: w.store.release(w.held), "l1"),
    "progress": (lambda w: w.store.progress(w.held, 1), "l1"),
    "get": (lambda w: w.store.get(Q, "r1"), "r1"),
    "find": (lambda w: w.store.find("r1"), "r1"),
    "update": (lambda w: w.store.update(Q, "r1", priority=3), "r1"),
    "cancel": (lambda w: w.store.cancel(Q, "r1"), "r1"),
}


@pytest.mark.parametrize("op_name", JOB_OPS)
def test_job_record_that_does_not_parse(world: World, op_name: str) -> None:
    world.populate()
    call, job_id = JOB_OPS[op_name]
    world.corrupt(job_id)
    exc = check_refused(world, lambda: call(world), (BadRecord,))
    assert isinstance(exc, BadRecord)
    assert exc.job_id == job_id


def test_a_job_record_that_does_not_parse_can_be_deleted(world: World) -> None:
    world.populate()
    world.corrupt("r1")
    assert world.store.delete(Q, "r1") is True
    assert world.raw.hexists(world.jobs_key, "r1") == 0
    assert world.raw.zscore(world.key("ready"), "r1") is None
    assert world.store.get(Q, "r1") is None


@pytest.mark.parametrize(
    "op_name",
    ["enqueue-same-id", "delete", "cancel", "get", "update"],
    ids=str,
)
def test_jobs_hash_of_the_wrong_type_before_any_call(world: World, op_name: str) -> None:
    call = JOB_OPS[op_name][0] if op_name != "delete" else (lambda w: w.store.delete(Q, "r1"))
    plant(world.raw, world.jobs_key, "list")
    exc = check_refused(world, lambda: call(world), (WrongKeyType,))
    assert isinstance(exc, WrongKeyType)
    assert (exc.key, exc.found) == (world.jobs_key, "list")


# Operations that walk a set of ids and meet one whose record does not parse. Reads and
# retry_dead may refuse (BadRecord) or leave that job alone, but must not silently drop it
# from its set.
SWEEPS: dict[str, tuple[Callable[[World], Any], str]] = {
    "peek": (lambda w: w.store.peek(Q, 1), "r1"),
    "list": (lambda w: w.store.list(Q, state=JobState.READY), "r1"),
    "retry_dead": (lambda w: w.store.retry_dead(Q), "x1"),
    "retry_dead-id": (lambda w: w.store.retry_dead(Q, ["x1"]), "x1"),
}


@pytest.mark.parametrize("op_name", SWEEPS)
def test_sweep_over_a_job_record_that_does_not_parse(world: World, op_name: str) -> None:
    world.populate()
    call, job_id = SWEEPS[op_name]
    # Make the corrupted job the only candidate, so that leaving it alone changes nothing.
    if op_name in {"peek", "list"}:
        world.store.delete(Q, "u1")
    world.corrupt(job_id)
    exc = check_refused(world, lambda: call(world), (BadRecord,), may_succeed=True)
    if isinstance(exc, BadRecord):
        assert exc.job_id == job_id


# The sweeps that move jobs on (claim, claim_and_ack, the reaper, promotion of due jobs) set a
# record that does not parse aside in the dead set instead, untouched, so that one corrupt
# record cannot block its queue: (call, id of the job, the set it was in).
SETTING_ASIDE: dict[str, tuple[Callable[[World], Any], str, str]] = {
    "claim": (lambda w: w.store.claim(Q, worker="w2", lease_ms=LEASE), "r1", "ready"),
    "claim_and_ack": (lambda w: w.store.claim_and_ack(Q), "r1", "ready"),
    "reap": (lambda w: (w.clock.advance(LEASE), w.store.reap(Q))[1], "l1", "leased"),
    "claim-reaps": (
        lambda w: (w.clock.advance(LEASE), w.store.claim(Q, worker="w2", count=1))[1],
        "l1",
        "leased",
    ),
    "promote": (
        lambda w: (w.clock.advance(60_000), w.store.claim(Q, worker="w2", count=1))[1],
        "s1",
        "scheduled",
    ),
}


@pytest.mark.parametrize("op_name", SETTING_ASIDE)
@pytest.mark.parametrize("damage", ["whole", "tail"])
def test_a_record_that_does_not_parse_is_set_aside_and_the_queue_goes_on(
    world: World, op_name: str, damage: str
) -> None:
    world.populate()
    call, job_id, was_in = SETTING_ASIDE[op_name]
    s = world.store
    # Make the corrupted job the only candidate of its sweep.
    if op_name in {"claim", "claim_and_ack"}:
        s.delete(Q, "u1")
    if op_name in {"claim-reaps", "promote"}:
        for other in ("r1", "u1"):
            s.delete(Q, other)
    if op_name == "promote":
        s.ack(world.held)
    if damage == "whole":
        world.corrupt(job_id)
    else:  # the head parses, the blob lengths do not fit: the server cannot rewrite it
        _spoil_tail(world, job_id, "blob-lengths")
    stored = world.raw.hget(world.jobs_key, job_id)
    dead_before = s.totals(Q)["dead"]
    call(world)  # does not raise
    if (op_name, damage) == ("claim", "tail"):
        # The head parsed, so claim leased it; the client's bury (a nack) is refused, since
        # the server cannot rewrite those blobs: the reaper sets it aside when its lease ends.
        assert world.raw.zscore(world.key("leased"), job_id) is not None
        stored = world.raw.hget(world.jobs_key, job_id)  # with its lease's head
        world.clock.advance(LEASE)
        s.reap(Q)
        was_in = "leased"
    assert world.raw.zscore(world.key(was_in), job_id) is None
    assert world.raw.zscore(world.key("dead"), job_id) is not None
    assert world.raw.hget(world.jobs_key, job_id) == stored  # kept byte for byte
    assert s.totals(Q)["dead"] == dead_before + 1
    with pytest.raises(BadRecord):
        s.get(Q, job_id)
    # The queue is not blocked: the next job is claimed as usual.
    fresh = s.enqueue(Q, "after", id="n1")
    world.clock.advance(LEASE)
    assert [j.id for j in s.claim(Q, worker="w3", lease_ms=LEASE, count=10)][-1:] == [fresh.id]
    assert s.delete(Q, job_id) is True


# ------------------------------------------------------------------- registry and locks


def test_queue_registry_of_the_wrong_type(world: World) -> None:
    registry = f"{world.prefix}:queues"
    plant(world.raw, registry, "hash")
    exc = check_refused(world, lambda: world.store.enqueue(Q, "p"), (RedisqError,))
    if isinstance(exc, WrongKeyType):
        assert (exc.key, exc.found) == (registry, "hash")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.counts(),
        lambda s: s.queues(),
        lambda s: s.find("r1"),
        lambda s: s.list(),
    ],
    ids=["counts-all", "queues", "find", "list-all"],
)
def test_reads_across_queues_with_a_registry_of_the_wrong_type(
    world: World, call: Callable[[redisq.Store], Any]
) -> None:
    world.populate()
    registry = f"{world.prefix}:queues"
    plant(world.raw, registry, "string")
    exc = check_refused(world, lambda: call(world.store), (RedisqError,))
    if isinstance(exc, WrongKeyType):
        assert exc.key == registry


@pytest.mark.parametrize("op_name", ["lock", "unlock"])
def test_lock_key_of_the_wrong_type(world: World, op_name: str) -> None:
    key = world.key("lock:r1")
    plant(world.raw, key, "hash")
    store = world.store
    call = (
        (lambda: store.lock(Q, "r1", "w1", 5_000))
        if op_name == "lock"
        else (lambda: store.unlock(Q, "r1", "w1"))
    )
    # Not ours: the lock is not taken or released (False), or the key is reported.
    results: list[Any] = []
    exc = check_refused(world, lambda: results.append(call()), (WrongKeyType,), may_succeed=True)
    if isinstance(exc, WrongKeyType):
        assert exc.key == key
    else:
        assert results == [False]


# -------------------------------------------------------------------------- schema version

SCHEMA_OPS: dict[str, Callable[[World], Any]] = {
    "enqueue": lambda w: w.store.enqueue(Q, "new"),
    "enqueue-existing-id": lambda w: w.store.enqueue(Q, "again", id="r1"),
    "enqueue_many": lambda w: w.store.enqueue_many(Q, ["a", "b"]),
    "claim": lambda w: w.store.claim(Q, worker="w2", count=5),
    "claim_and_ack": lambda w: w.store.claim_and_ack(Q),
    "ack": lambda w: w.store.ack(w.held),
    "ack_many": lambda w: w.store.ack_many([w.held]),
    "nack": lambda w: w.store.nack(w.held, error="e", delay_ms=0),
    "renew": lambda w: w.store.renew(w.held),
    "renew_many": lambda w: w.store.renew_many([w.held]),
    "release": lambda w: w.store.release(w.held),
    "progress": lambda w: w.store.progress(w.held, 1),
    "cancel": lambda w: w.store.cancel(Q, "r1"),
    "cancel-missing": lambda w: w.store.cancel(Q, "ghost"),
    "delete": lambda w: w.store.delete(Q, "r1"),
    "delete-missing": lambda w: w.store.delete(Q, "ghost"),
    "update": lambda w: w.store.update(Q, "s1", priority=5, run_at_ms=0),
    "retry_dead": lambda w: w.store.retry_dead(Q),
    "retry_dead-ids": lambda w: w.store.retry_dead(Q, ["x1"]),
    "pause": lambda w: w.store.pause(Q),
    "resume": lambda w: w.store.resume(Q),
    "purge": lambda w: w.store.purge(Q),
    "reap": lambda w: (w.clock.advance(LEASE), w.store.reap(Q))[1],
    "counts": lambda w: w.store.counts(Q),
    "list": lambda w: w.store.list(Q),
    "peek": lambda w: w.store.peek(Q),
}


@pytest.mark.parametrize("op_name", SCHEMA_OPS)
def test_schema_version_mismatch_is_refused_before_any_write(world: World, op_name: str) -> None:
    world.populate()
    world.raw.hset(world.key("meta"), "schema", "999")
    exc = check_refused(world, lambda: SCHEMA_OPS[op_name](world), (SchemaVersionError,))
    assert isinstance(exc, SchemaVersionError)
    assert (exc.found, exc.expected) == ("999", str(SCHEMA_VERSION))
    assert "999" in str(exc)


@pytest.mark.parametrize("op_name", ["enqueue", "claim", "pause", "counts", "purge"])
@pytest.mark.parametrize("found", ["999", "0", "", "1"])
def test_schema_version_mismatch_on_a_queue_redisq_never_wrote(
    world: World, found: str, op_name: str
) -> None:
    # A meta hash from another redisq (newer, older, or garbled; "1" is the layout with one
    # hash per job, before records were packed); no other key of the queue.
    world.raw.hset(world.key("meta"), mapping={"schema": found, "lib_version": "9.9.9"})
    exc = check_refused(world, lambda: SCHEMA_OPS[op_name](world), (SchemaVersionError,))
    assert isinstance(exc, SchemaVersionError)
    assert (exc.found, exc.expected) == (found, str(SCHEMA_VERSION))


# ------------------------------------------------------- records whose tail does not parse

# A record's head (state, attempts, token, ...) is what claim checks and rewrites on the
# server; the rest (name, blob lengths, payload) is parsed by the client. Each of these
# spoils only the rest.
TAILS: dict[str, Callable[[list[bytes]], None]] = {
    "payload-not-msgpack": lambda parts: parts.__setitem__(20, b"\xc1"),
    "name-not-utf8": lambda parts: parts.__setitem__(16, b"\xff\xfe"),
    "blob-lengths": lambda parts: parts.__setitem__(17, b"999"),
}


def _spoil_tail(world: World, job_id: str, how: str) -> None:
    record = world.raw.hget(world.jobs_key, job_id)
    parts = record.split(b"\n", 20)
    TAILS[how](parts)
    world.raw.hset(world.jobs_key, job_id, b"\n".join(parts))


@pytest.mark.parametrize("how", TAILS)
def test_claim_dead_letters_a_poison_record_and_returns_the_jobs_claimed_with_it(
    world: World, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = world.store
    s.enqueue_many(Q, [Spec("a", id="a1"), Spec("b", id="b1"), Spec("c", id="c1")])
    _spoil_tail(world, "b1", how)
    with caplog.at_level(logging.WARNING, logger="redisq.store"):
        jobs = s.claim(Q, worker="w", lease_ms=LEASE, count=10)
    # An operator is told which job and why.
    assert [r.getMessage() for r in caplog.records if "b1" in r.getMessage()]
    # The others come back to the caller, leased; the poison one cannot run anywhere.
    assert [j.id for j in jobs] == ["a1", "c1"]
    assert all(j.state is JobState.LEASED for j in jobs)
    assert world.raw.zscore(world.key("leased"), "a1") is not None
    if how == "blob-lengths":
        # The server cannot rewrite a record whose blobs do not fit: it stays leased (the
        # claim refuses nothing else) until its lease ends.
        assert world.raw.zscore(world.key("leased"), "b1") is not None
        assert world.raw.zscore(world.key("dead"), "b1") is None
    else:
        assert world.raw.zscore(world.key("dead"), "b1") is not None
        assert world.raw.zscore(world.key("leased"), "b1") is None
        assert s.totals(Q)["dead"] == 1
        # Its bytes are kept for a look, with the reason in place of the last error.
        kept = world.raw.hget(world.jobs_key, "b1")
        assert b"dead-lettered by claim: its stored record does not parse" in kept
        assert b"\ndead\n" in kept
    assert s.ack_many(jobs, snapshots=False) == []
    assert s.counts(Q)[JobState.COMPLETED] == 2


def test_retry_dead_goes_on_past_a_record_set_aside(world: World) -> None:
    s = world.store
    s.enqueue_many(Q, [Spec("bad", id="b1"), Spec("good", id="g1", max_attempts=1)])
    world.corrupt("b1")
    (good,) = s.claim(Q, worker="w", lease_ms=LEASE, count=10)  # b1 is set aside
    s.nack(good, error="boom", dead=True)
    assert s.counts(Q)[JobState.DEAD] == 2
    # The oldest dead entry does not parse: the others are replayed all the same.
    assert s.retry_dead(Q) == 1
    assert world.raw.zscore(world.key("ready"), "g1") is not None
    assert world.raw.zscore(world.key("dead"), "b1") is not None
