"""Fuzz the public store API with hostile values: only redisq's own errors come out.

Every example calls one store method with arguments that are each either valid or hostile
(wrong types, out-of-range numbers, deep, cyclic or huge values, lone surrogates, hand-made
Jobs) on the sync Store and on the AsyncStore of one memory:// server. A call may succeed;
if it raises, the exception must be a `RedisqError` (InvalidArgument, PayloadTooLarge,
SerializationError, LeaseLost, JobNotFound...) and no key may have changed.

Bounded to run in seconds; `REDISQ_FUZZ_EXAMPLES` raises the number of examples per test, and
`REDISQ_FUZZ_RANDOM=1` draws new examples instead of the fixed ones.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redisq
from redisq import Job, JobState, RedisqError, Spec
from redisq._core.codec import oversize, oversize_levels, round_trip, round_trip_many
from redisq._core.validate import check_name

Q = "fq"
EXAMPLES = int(os.environ.get("REDISQ_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    # The same examples every run (CI); REDISQ_FUZZ_RANDOM=1 explores new ones.
    derandomize=not os.environ.get("REDISQ_FUZZ_RANDOM"),
)


def _deep(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def _cyclic_list() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _cyclic_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


class BadRepr:
    """An object whose repr, equality and hash all fail."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = None  # type: ignore[assignment]


#: Fixed hostile values, made fresh for each use (some are mutable or costly).
SPECIAL: list[Callable[[], Any]] = [
    lambda: _deep(5_000),
    _cyclic_list,
    _cyclic_dict,
    lambda: {"a": _deep(600)},
    lambda: [b"x" * 1_000_000] * 3,
    lambda: "x" * 2_000_000,
    lambda: list(range(600_000)),
    lambda: {(1, 2): "tuple key"},
    lambda: {1, 2},
    lambda: frozenset({"a"}),
    lambda: bytearray(b"ba"),
    lambda: memoryview(b"mv"),
    lambda: 10**5000,
    lambda: 2**64,
    lambda: -(2**63) - 1,
    BadRepr,
    object,
    lambda: Exception("e"),
    lambda: JobState.DEAD,
    lambda: Spec(1),
    lambda: math.nan,
    lambda: -math.inf,
    lambda: 1 + 2j,
    lambda: "\ud800",
    lambda: "q\udcff",
    lambda: "a{b}",
    lambda: " lead",
    lambda: "new\nline",
    lambda: "\x00",
    lambda: "",
    lambda: "x" * 300,
    lambda: True,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**66),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.sampled_from(list(JobState)),
)
hostile: st.SearchStrategy[Any] = st.one_of(
    scalars,
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.tuples(inner, inner),
            st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=3),
            st.sets(st.integers(), max_size=3),
        ),
        max_leaves=6,
    ),
    st.sampled_from(SPECIAL).map(lambda make: make()),
)


def _invalid_name(value: Any) -> bool:
    try:
        check_name("queue", value)
    except RedisqError:
        return True
    return False


#: Queue names that validation refuses: a hand-made Job keeps every call in one queue, so a
#: refusal can only come before any write (a second valid queue is a second script call).
bad_queue = hostile.filter(_invalid_name)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value, or (more often) a hostile one."""
    return st.one_of(valid, hostile, hostile)


JOB_FIELDS = ("id", "queue", "token", "attempts", "max_attempts", "state", "priority")


@dataclass
class World:
    """One memory:// server with a sync and an async store, and a leased job to misuse."""

    store: redisq.Store
    astore: redisq.AsyncStore
    loop: asyncio.AbstractEventLoop
    leased: Job

    def keyspace(self) -> dict[bytes, Any]:
        raw = self.store.redis
        out: dict[bytes, Any] = {}
        for key in raw.keys("*"):
            if b"}:claim:" in key:
                continue  # a claim's memo: expires by itself (a TTL), not job data
            kind = raw.type(key)
            if kind == b"hash":
                out[key] = raw.hgetall(key)
            elif kind == b"zset":
                out[key] = raw.zrange(key, 0, -1, withscores=True)
            elif kind == b"set":
                out[key] = raw.smembers(key)
            else:
                out[key] = (kind, raw.get(key) if kind == b"string" else None)
        return out

    def fresh_lease(self) -> Job:
        self.store.enqueue(Q, "p")
        jobs = self.store.claim(Q, worker="w", lease_ms=3_600_000)
        return jobs[0] if jobs else self.leased


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    url = f"memory://fuzz-{uuid.uuid4().hex[:8]}"
    store = redisq.connect(url)
    astore = redisq.connect_async(url)
    loop = asyncio.new_event_loop()
    store.enqueue(Q, "first")
    [leased] = store.claim(Q, worker="w", lease_ms=3_600_000)
    yield World(store, astore, loop, leased)
    loop.run_until_complete(astore.close())
    loop.close()
    store.close()


def hand_made(world: World) -> st.SearchStrategy[Any]:
    """A leased Job with one or two fields replaced by hostile values (or a non-Job)."""

    def change(job: Job, fields: dict[str, Any]) -> Any:
        return replace(job, **fields)

    field_values = st.dictionaries(
        st.sampled_from(JOB_FIELDS),
        hostile,
        min_size=1,
        max_size=2,
    ).map(lambda d: {k: (v if k != "queue" or _invalid_name(v) else Q) for k, v in d.items()})
    return st.one_of(
        st.just(world.leased),
        st.builds(change, st.just(world.leased), field_values),
        hostile,
    )


def call_both(world: World, method: str, *args: Any, **kwargs: Any) -> None:
    """Call `method` on the sync store, then on the async one: each must succeed or raise a
    RedisqError without changing any key."""
    for flavour in ("sync", "async"):
        before = world.keyspace()
        try:
            if flavour == "sync":
                getattr(world.store, method)(*args, **kwargs)
            else:
                world.loop.run_until_complete(getattr(world.astore, method)(*args, **kwargs))
        except RedisqError:
            assert world.keyspace() == before, f"{flavour} {method} wrote before refusing"


#: Queue names: the fuzzed queue, one other, or values validation refuses (a few valid names
#: keep the keyspace small, so each example's before-and-after comparison stays cheap).
names = st.one_of(st.sampled_from([Q, "fq2"]), bad_queue)
ids = maybe(st.text(alphabet="abcdef0123456789", min_size=1, max_size=8))
ints = maybe(st.integers(min_value=0, max_value=10_000))


#: enqueue's keywords, and two it does not take.
ENQUEUE_KEYWORDS = [
    *("id", "name", "priority", "delay_ms", "run_at_ms", "max_attempts", "lease_ms"),
    *("unique_key", "prority", "payload_limit"),
]


@FUZZ
@given(data=st.data())
def test_enqueue(world: World, data: st.DataObject) -> None:
    keywords = data.draw(st.dictionaries(st.sampled_from(ENQUEUE_KEYWORDS), hostile, max_size=3))
    call_both(world, "enqueue", data.draw(names), data.draw(maybe(st.integers())), **keywords)


@FUZZ
@given(data=st.data())
def test_enqueue_many(world: World, data: st.DataObject) -> None:
    specs = st.builds(
        Spec, payload=hostile, id=maybe(st.none()), priority=maybe(st.none()), name=maybe(st.none())
    )
    items = data.draw(st.one_of(st.lists(st.one_of(hostile, specs), max_size=4), hostile))
    options = data.draw(
        st.dictionaries(
            st.sampled_from(["priority", "delay_ms", "id", "bogus"]), hostile, max_size=2
        )
    )
    call_both(world, "enqueue_many", data.draw(names), items, **options)


@FUZZ
@given(data=st.data())
def test_reads(world: World, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["get", "list", "peek", "counts", "find"]))
    if method == "get":
        call_both(world, "get", data.draw(names), data.draw(ids))
    elif method == "find":
        call_both(world, "find", data.draw(ids))
    elif method == "list":
        call_both(
            world,
            "list",
            data.draw(st.one_of(st.none(), names)),
            state=data.draw(maybe(st.none())),
            limit=data.draw(maybe(st.none())),
            offset=data.draw(ints),
        )
    elif method == "peek":
        call_both(world, "peek", data.draw(names), data.draw(ints))
    else:
        call_both(world, "counts", data.draw(st.one_of(st.none(), names)))


@FUZZ
@given(data=st.data())
def test_claim(world: World, data: st.DataObject) -> None:
    queues = data.draw(st.one_of(names, st.lists(names, max_size=3)))
    call_both(
        world,
        "claim",
        queues,
        worker=data.draw(maybe(st.just("w"))),
        lease_ms=data.draw(maybe(st.none())),
        count=data.draw(maybe(st.integers(min_value=1, max_value=5))),
    )


@FUZZ
@given(data=st.data())
def test_lease_operations(world: World, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        world.leased = world.fresh_lease()
    job = data.draw(hand_made(world))
    method = data.draw(st.sampled_from(["ack", "nack", "renew", "release", "progress"]))
    if method == "ack":
        call_both(world, "ack", job, data.draw(hostile))
    elif method == "nack":
        call_both(
            world,
            "nack",
            job,
            error=data.draw(maybe(st.just("boom"))),
            delay_ms=data.draw(maybe(st.none())),
            dead=data.draw(maybe(st.booleans())),
        )
    elif method == "renew":
        call_both(world, "renew", job, data.draw(maybe(st.none())))
    elif method == "release":
        call_both(world, "release", job, delay_ms=data.draw(maybe(st.just(0))))
    else:
        call_both(world, "progress", job, data.draw(hostile))


@FUZZ
@given(data=st.data())
def test_batch_lease_operations(world: World, data: st.DataObject) -> None:
    jobs = data.draw(st.one_of(st.lists(hand_made(world), max_size=3), hostile))
    if data.draw(st.booleans()):
        results = data.draw(st.one_of(st.none(), hostile, st.lists(hostile, max_size=3)))
        call_both(world, "ack_many", jobs, results)
    else:
        call_both(world, "renew_many", jobs, data.draw(maybe(st.none())))


@FUZZ
@given(data=st.data())
def test_management(world: World, data: st.DataObject) -> None:
    method = data.draw(
        st.sampled_from(
            ["update", "delete", "cancel", "retry_dead", "purge", "lock", "unlock", "pause"]
        )
    )
    queue = data.draw(names)
    if method == "update":
        changes = data.draw(
            st.dictionaries(st.sampled_from(["priority", "payload", "run_at_ms"]), hostile)
        )
        call_both(world, "update", queue, data.draw(ids), **changes)
    elif method in ("delete", "cancel"):
        call_both(world, method, queue, data.draw(ids))
    elif method == "retry_dead":
        listed = data.draw(st.one_of(st.none(), hostile, st.lists(ids, max_size=3)))
        call_both(world, "retry_dead", queue, listed, limit=data.draw(ints))
    elif method == "purge":
        call_both(world, "purge", queue, data.draw(maybe(st.none())))
    elif method == "lock":
        call_both(
            world, "lock", queue, data.draw(ids), data.draw(maybe(st.just("w"))), data.draw(ints)
        )
    elif method == "unlock":
        call_both(world, "unlock", queue, data.draw(ids), data.draw(maybe(st.just("w"))))
    else:
        call_both(world, "pause", queue)
        call_both(world, "resume", queue)


# ---------------------------------------------------------------- the size walk's bound

encodable = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(),
        st.text(max_size=40),
        st.binary(max_size=40),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=20),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.text(max_size=5), st.integers(min_value=-(2**63), max_value=2**64 - 1)),
            inner,
            max_size=20,
        ),
    ),
    max_leaves=60,
)


@FUZZ
@given(value=encodable, slack=st.integers(min_value=-3, max_value=3))
def test_the_size_walk_is_a_lower_bound(value: Any, slack: int) -> None:
    # A value is refused before encoding only when its encoding is surely over the limit:
    # the walk's figure never exceeds the real size, so nothing that fits is refused.
    size = len(msgpack.packb(value, use_bin_type=True))
    limit = max(1, size + slack)
    over = oversize(value, limit)
    assert over == 0 or limit < over <= size
    assert oversize(value, size) == 0


@FUZZ
@given(value=encodable, slack=st.integers(min_value=-3, max_value=3))
def test_the_level_walk_is_a_lower_bound(value: Any, slack: int) -> None:
    # The batch walk (one nesting level at a time) bounds the size like the other one.
    size = len(msgpack.packb(value, use_bin_type=True))
    limit = max(1, size + slack)
    over = oversize_levels(value, limit)
    assert over == 0 or limit < over <= size
    assert oversize_levels(value, size) == 0


@FUZZ
@given(
    values=st.lists(
        st.one_of(encodable, st.dictionaries(st.tuples(st.integers()), st.integers(), min_size=1)),
        max_size=8,
    ),
    limit=st.integers(min_value=1, max_value=200),
)
def test_a_batch_round_trip_is_each_round_trip(values: list[Any], limit: int) -> None:
    # The batch encoding (one walk, one packer, one decode) gives each value's own bytes and
    # decoded value, and refuses a batch exactly when some value alone is refused.
    each: list[tuple[bytes, Any]] | None = []
    for value in values:
        try:
            each.append(round_trip("payload", value, limit))
        except RedisqError:
            each = None
            break
    many = round_trip_many(values, limit)
    if each is None:
        assert many is None
    else:
        assert many is not None
        data, decoded = many
        assert data == [d for d, _ in each]
        # (Compared re-encoded: a NaN is not equal to itself.)
        assert [msgpack.packb(v) for v in decoded] == [msgpack.packb(v) for _, v in each]
