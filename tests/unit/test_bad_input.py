"""Bad input is refused before anything reaches Redis (reliability plan 4.4, first groups).

Every refusal checks the exception's exact type, the field and limit it names (attributes and
message), that no command was sent (the store's transport and connection pool count their
use), and that the server's keyspace did not change. The stores run on private ``memory://``
servers, so nothing else writes there; values that must be accepted round-trip through a
claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
import pytest

import redisq
from redisq import (
    ConfigurationError,
    InvalidArgument,
    Job,
    JobState,
    PayloadTooLarge,
    Retention,
    SerializationError,
    Spec,
)
from redisq._core.records import unpack_record

Q = "jobs"
LIMIT = 512 * 1024  # the default payload limit
MAX_LEASE = 12 * 60 * 60 * 1000  # 43,200,000 ms
MAX_DELAY = 366 * 24 * 60 * 60 * 1000  # about one year
NON_JOB: list[Any] = [None, "job", 7, {"id": "x", "token": 1}]


def short(value: Any) -> str:
    """A test id for a value: its repr, cut to 24 characters."""
    shown = repr(value)
    return shown if len(shown) <= 24 else shown[:21] + "..."


def memory_url() -> str:
    return f"memory://bad-input-{uuid.uuid4().hex[:12]}"


def snapshot(client: Any) -> dict[bytes, tuple[str, Any]]:
    """Every key of the (private) server with its type and a type-appropriate read."""
    out: dict[bytes, tuple[str, Any]] = {}
    for key in client.keys("*"):
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = kind
        out[key] = (kind, value)
    return out


@dataclass
class Probe:
    """A store whose every round trip is counted (transport calls and pooled connections)."""

    store: redisq.Store
    sent: list[str] = field(default_factory=list)
    counting: bool = True

    def keyspace(self) -> dict[bytes, tuple[str, Any]]:
        """Snapshot the server without counting the snapshot's own commands."""
        self.counting = False
        try:
            return snapshot(self.store.redis)
        finally:
            self.counting = True

    def refused(
        self,
        error: type[Exception],
        action: Callable[[], Any],
        *,
        field: str | tuple[str, ...] | None = None,
        limit: str | int | None = None,
    ) -> Any:
        """Run `action`, expecting exactly `error` with nothing sent and nothing changed.

        `field` is the field the error must name (or a tuple of acceptable names); `limit` a
        text the rule it states must contain, or the exact int limit of PayloadTooLarge.
        """
        keys_before = self.keyspace()
        sent_before = len(self.sent)
        with pytest.raises(error) as info:
            action()
        exc = info.value
        assert type(exc) is error, f"expected exactly {error.__name__}, got {exc!r}"
        assert self.sent[sent_before:] == [], f"refused call still sent {self.sent[sent_before:]}"
        assert self.keyspace() == keys_before
        message = str(exc)
        if field is not None:
            accepted = (field,) if isinstance(field, str) else field
            assert getattr(exc, "field", None) in accepted, message
            assert exc.field in message
        if limit is not None:
            if isinstance(limit, int):
                assert getattr(exc, "limit", None) == limit, message
            else:
                assert limit in getattr(exc, "limit", ""), message
            assert str(limit) in message
        return exc

    def claimed(self, payload: Any = "p", **options: Any) -> Job:
        """Enqueue one job and claim it (a real lease to misuse)."""
        job = self.store.enqueue(Q, payload, **options)
        [leased] = self.store.claim(Q, worker="w")
        assert leased.id == job.id
        return leased


def _counting(probe: Probe, name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if probe.counting:
            probe.sent.append(name)
        return inner(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _probe(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[Probe]:
    store = redisq.connect(memory_url(), prefix="bi", **options)
    probe = Probe(store)
    transport: Any = store._transport
    pool: Any = store.redis.connection_pool
    for target, name in ((transport, "run"), (transport, "pipeline")):
        monkeypatch.setattr(target, name, _counting(probe, name, getattr(target, name)))
    # The lean script path and plain commands both take a pooled connection.
    inner_get = pool.get_connection
    monkeypatch.setattr(pool, "get_connection", _counting(probe, "connection", inner_get))
    try:
        yield probe
    finally:
        store.close()


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    """A counting store on a private memory:// server (default limits)."""
    with _probe(monkeypatch) as counted:
        yield counted


def test_the_probe_counts_what_reaches_redis(probe: Probe) -> None:
    # The counter itself must see traffic, or every "nothing was sent" below proves nothing.
    probe.store.enqueue(Q, 1)
    assert "run" in probe.sent
    assert "connection" in probe.sent
    before = len(probe.sent)
    probe.store.counts()
    assert len(probe.sent) > before


def _roundtrip(probe: Probe, payload: Any) -> Any:
    probe.store.enqueue(Q, payload)
    [job] = probe.store.claim(Q, worker="w")
    return job.payload


def _deep_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth - 1):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def _deep_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        child: dict[str, Any] = {}
        node["k"] = child
        node = child
    return root


def _self_referencing() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


class Opaque:
    """A class instance msgpack knows nothing about."""


# ------------------------------------------------------------------------------- payloads

UNSERIALISABLE: dict[str, Callable[[], Any]] = {
    "set": lambda: {1, 2},
    "object": object,
    "datetime": lambda: datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    "instance": Opaque,
    "lone-surrogate": lambda: "\ud800",
    "surrogate-in-dict-key": lambda: {"k\udcff": 1},
    "deep-list-10000": lambda: _deep_list(10_000),
    "deep-dict-10000": lambda: _deep_dict(10_000),
    "self-reference": _self_referencing,
    "int-over-uint64": lambda: 2**64,
    "int-under-int64": lambda: -(2**63) - 1,
    # msgpack packs a tuple key as an array, which cannot be a dict key again on decode:
    # accepting it would store a job that no read can decode.
    "tuple-dict-key": lambda: {(1, 2): "v"},
}


@pytest.mark.parametrize("how", ["enqueue", "enqueue_many", "spec"])
@pytest.mark.parametrize("make", UNSERIALISABLE.values(), ids=UNSERIALISABLE.keys())
def test_unserialisable_payload_is_refused(probe: Probe, make: Callable[[], Any], how: str) -> None:
    bad = make()
    s = probe.store
    if how == "enqueue":
        action, where = (lambda: s.enqueue(Q, bad)), "payload"
    elif how == "enqueue_many":
        action, where = (lambda: s.enqueue_many(Q, [1, 2, 3, bad, 5])), "payloads[3].payload"
    else:
        items = [Spec(1), Spec("x", id="a"), Spec(bad, id="b")]
        action, where = (lambda: s.enqueue_many(Q, items)), "payloads[2].payload"
    exc = probe.refused(SerializationError, action, field=where)
    assert "msgpack" in str(exc)
    assert not isinstance(exc.__cause__, RecursionError)


ROUND_TRIP: dict[str, Any] = {
    "none": None,
    "empty-bytes": b"",
    "empty-str": "",
    "empty-dict": {},
    "empty-list": [],
    "nul-in-str": "a\x00b\x00",
    "nul-in-bytes": b"\x00\xff\x00",
    "nul-in-key": {"k\x00": "v\x00"},
    "uint64-max": 2**64 - 1,
    "int64-min": -(2**63),
    "deep-list-500": _deep_list(500),
    "unicode": "ünïcødé \u2028 \U0001f600",
    "int-keys": {1: "one", 2: [b"two"]},
}


@pytest.mark.parametrize("payload", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_plain_payloads_round_trip(probe: Probe, payload: Any) -> None:
    assert _roundtrip(probe, payload) == payload


@pytest.mark.parametrize("value", [math.inf, -math.inf], ids=["inf", "-inf"])
def test_infinite_floats_round_trip(probe: Probe, value: float) -> None:
    # msgpack stores IEEE doubles, so unlike JSON it holds infinities.
    assert _roundtrip(probe, {"v": value}) == {"v": value}


def test_nan_round_trips(probe: Probe) -> None:
    back = _roundtrip(probe, [math.nan, 1.5])
    assert math.isnan(back[0])
    assert back[1] == 1.5


def test_nul_bytes_round_trip_in_a_batch(probe: Probe) -> None:
    payloads = ["\x00", b"\x00", {"\x00": "\x00"}, ["a\x00"]]
    probe.store.enqueue_many(Q, payloads)
    jobs = probe.store.claim(Q, worker="w", count=10)
    assert [j.payload for j in jobs] == payloads


def _bin_header(size: int) -> int:
    """Bytes msgpack puts in front of a bin payload of `size` bytes (bin8, bin16, bin32)."""
    return 2 if size < 2**8 else 3 if size < 2**16 else 5


def _largest_bytes_within(limit: int) -> int:
    size = limit - 5
    while size + 1 + _bin_header(size + 1) <= limit:
        size += 1
    while size + _bin_header(size) > limit:
        size -= 1
    return size


@pytest.mark.parametrize("how", ["enqueue", "enqueue_many"])
def test_payload_exactly_at_the_default_limit_is_accepted(probe: Probe, how: str) -> None:
    size = _largest_bytes_within(LIMIT)
    payload = b"\x01" * size
    assert len(msgpack.packb(payload, use_bin_type=True)) == LIMIT
    if how == "enqueue":
        probe.store.enqueue(Q, payload)
    else:
        probe.store.enqueue_many(Q, [payload])
    [job] = probe.store.claim(Q, worker="w")
    assert job.payload == payload


@pytest.mark.parametrize("how", ["enqueue", "enqueue_many", "spec"])
def test_payload_one_byte_over_the_default_limit_is_refused(probe: Probe, how: str) -> None:
    payload = b"\x01" * (_largest_bytes_within(LIMIT) + 1)
    assert len(msgpack.packb(payload, use_bin_type=True)) == LIMIT + 1
    s = probe.store
    if how == "enqueue":
        action, where = (lambda: s.enqueue(Q, payload)), "payload"
    elif how == "enqueue_many":
        action, where = (lambda: s.enqueue_many(Q, [1, 2, payload])), "payloads[2].payload"
    else:
        action, where = (lambda: s.enqueue_many(Q, [Spec(payload, id="x")])), "payloads[0].payload"
    exc = probe.refused(PayloadTooLarge, action, field=where, limit=LIMIT)
    assert exc.size == LIMIT + 1
    assert str(LIMIT + 1) in str(exc)


@pytest.mark.parametrize(
    "payload_limit",
    [100, 255 + 2, 300, 2**16 - 1 + 3, 70_000],
    ids=["bin8", "bin8-edge", "bin16", "bin16-edge", "bin32"],
)
def test_custom_payload_limit_is_exact(monkeypatch: pytest.MonkeyPatch, payload_limit: int) -> None:
    with _probe(monkeypatch, payload_limit=payload_limit) as probe:
        size = _largest_bytes_within(payload_limit)
        fits = b"\x02" * size
        assert len(msgpack.packb(fits, use_bin_type=True)) == payload_limit
        probe.store.enqueue(Q, fits, id="fits")
        over = b"\x02" * (size + 1)
        exc = probe.refused(
            PayloadTooLarge,
            lambda: probe.store.enqueue(Q, over, id="over"),
            field="payload",
            limit=payload_limit,
        )
        assert exc.size == len(msgpack.packb(over, use_bin_type=True))
        [job] = probe.store.claim(Q, worker="w")
        assert (job.id, job.payload) == ("fits", fits)


@pytest.mark.parametrize("kind", ["bytes", "str", "bytearray"])
def test_a_100_mb_payload_is_refused_before_encoding(
    probe: Probe, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    size = 100 * 1024 * 1024
    huge: Any = bytes(size) if kind == "bytes" else "x" * size if kind == "str" else bytearray(size)
    packed: list[int] = []
    real_packb = msgpack.packb

    def packb(value: Any, **options: Any) -> bytes:
        packed.append(1)
        data: bytes = real_packb(value, **options)
        return data

    monkeypatch.setattr(msgpack, "packb", packb)
    exc = probe.refused(
        PayloadTooLarge, lambda: probe.store.enqueue(Q, huge), field="payload", limit=LIMIT
    )
    assert exc.size >= size
    assert packed == [], "the payload was encoded before its size was checked"


def test_result_and_progress_are_held_to_the_payload_limit(probe: Probe) -> None:
    job = probe.claimed()
    big = b"\x03" * LIMIT
    probe.refused(PayloadTooLarge, lambda: probe.store.ack(job, big), field="result", limit=LIMIT)
    probe.refused(
        PayloadTooLarge, lambda: probe.store.progress(job, big), field="progress", limit=LIMIT
    )
    probe.refused(SerializationError, lambda: probe.store.ack(job, {1, 2}), field="result")
    probe.refused(SerializationError, lambda: probe.store.progress(job, object()), field="progress")
    done = probe.store.ack(job, {"ok": True})
    assert done.state is JobState.COMPLETED


# -------------------------------------------------------------------------------- job ids

BAD_IDS: dict[str, Any] = {
    "empty": "",
    "space": " ",
    "whitespace": " \t\n ",
    "nbsp-only": "\u00a0",
    "leading-space": " a",
    "trailing-space": "a ",
    "257-chars": "x" * 257,
    "open-brace": "a{b",
    "close-brace": "a}b",
    "both-braces": "{a}",
    "newline": "a\nb",
    "carriage-return": "a\rb",
    "nul": "a\x00b",
    "unit-separator": "a\x1fb",
    "del": "a\x7fb",
    "c1-nel": "a\x85b",
    "lone-surrogate": "a\ud800b",
    "int": 5,
    "float": 1.5,
    "bytes": b"id",
    "list": ["id"],
}


@pytest.mark.parametrize("how", ["enqueue", "spec"])
@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_job_id_is_refused(probe: Probe, bad: Any, how: str) -> None:
    s = probe.store
    if how == "enqueue":
        probe.refused(InvalidArgument, lambda: s.enqueue(Q, 1, id=bad), field="id")
    else:
        items = [Spec(1, id="fine"), Spec(2, id=bad)]
        probe.refused(InvalidArgument, lambda: s.enqueue_many(Q, items), field="payloads[1].id")


def test_id_length_limit_is_named(probe: Probe) -> None:
    probe.refused(
        InvalidArgument, lambda: probe.store.enqueue(Q, 1, id="x" * 257), field="id", limit="256"
    )


@pytest.mark.parametrize("good", ["x" * 256, "a:b:c", "order-1/2", "ünï", "a b", "0"], ids=short)
def test_unusual_but_valid_ids_are_accepted(probe: Probe, good: str) -> None:
    job = probe.store.enqueue(Q, "p", id=good)
    assert job.id == good
    assert probe.store.redis.hexists(f"{{bi:{Q}}}:jobs", good) == 1
    [leased] = probe.store.claim(Q, worker="w")
    assert leased.id == good


def test_id_none_generates_one(probe: Probe) -> None:
    a = probe.store.enqueue(Q, 1, id=None)
    b = probe.store.enqueue(Q, 2)
    assert re.fullmatch(r"[0-9a-f]{32}", a.id)
    assert re.fullmatch(r"[0-9a-f]{32}", b.id)
    assert a.id != b.id


def test_duplicate_id_returns_the_first_job_unchanged(probe: Probe) -> None:
    first = probe.store.enqueue(Q, {"v": 1}, id="dup", priority=1)
    again = probe.store.enqueue(Q, {"v": 2}, id="dup", priority=9, delay_ms=60_000, name="n")
    assert again == first
    assert again.payload == {"v": 1}
    assert probe.store.counts(Q)[JobState.READY] == 1
    [job] = probe.store.claim(Q, worker="w", count=5)
    assert (job.id, job.payload, job.priority, job.name) == ("dup", {"v": 1}, 1, None)


def test_duplicate_ids_in_one_batch_create_one_job(probe: Probe) -> None:
    jobs = probe.store.enqueue_many(Q, [Spec("a", id="same"), Spec("b", id="same"), Spec("c")])
    assert jobs[0].id == jobs[1].id == "same"
    assert jobs[1].payload == "a"
    claimed = probe.store.claim(Q, worker="w", count=5)
    assert [(j.id, j.payload) for j in claimed] == [("same", "a"), (jobs[2].id, "c")]


# -------------------------------------------------------------------------------- options

# (option, bad value, the bound the error must name)
BAD_OPTIONS: list[tuple[str, Any, str]] = [
    ("lease_ms", 0, "[1, 43200000]"),
    ("lease_ms", -1, "[1, 43200000]"),
    ("lease_ms", math.nan, "[1, 43200000]"),
    ("lease_ms", math.inf, "[1, 43200000]"),
    ("lease_ms", True, "[1, 43200000]"),
    ("lease_ms", 1.5, "[1, 43200000]"),
    ("lease_ms", 1000.0, "[1, 43200000]"),
    ("lease_ms", "1000", "[1, 43200000]"),
    ("lease_ms", MAX_LEASE + 1, "[1, 43200000]"),
    ("delay_ms", -1, f"[0, {MAX_DELAY}]"),
    ("delay_ms", MAX_DELAY + 1, f"[0, {MAX_DELAY}]"),
    ("delay_ms", True, f"[0, {MAX_DELAY}]"),
    ("delay_ms", 1.5, f"[0, {MAX_DELAY}]"),
    ("delay_ms", 100.0, f"[0, {MAX_DELAY}]"),
    ("run_at_ms", -1, "[0, "),
    ("run_at_ms", 1.5, "[0, "),
    ("run_at_ms", True, "[0, "),
    ("run_at_ms", 2**53, "[0, "),
    ("max_attempts", 0, "[1, 1000]"),
    ("max_attempts", -1, "[1, 1000]"),
    ("max_attempts", 1.5, "[1, 1000]"),
    ("max_attempts", True, "[1, 1000]"),
    ("max_attempts", 1001, "[1, 1000]"),
    ("priority", -1001, "[-1000, 1000]"),
    ("priority", 1001, "[-1000, 1000]"),
    ("priority", True, "[-1000, 1000]"),
    ("priority", "3", "[-1000, 1000]"),
    ("priority", 2.0, "[-1000, 1000]"),
    ("unique_key", "", "256"),
    ("unique_key", "  ", "256"),
    ("unique_key", "k" * 257, "256"),
    ("unique_key", "a{b", "{"),
    ("unique_key", "a}b", "}"),
    ("unique_key", "a\nb", "control"),
    ("unique_key", 5, "256"),
    ("name", "n" * 201, "200"),
    ("name", "", "200"),
    ("name", "a\x00", "control"),
    ("name", 5, "200"),
]


def _option_id(case: tuple[str, Any, str]) -> str:
    return f"{case[0]}={short(case[1])}"


@pytest.mark.parametrize("how", ["enqueue", "enqueue_many", "spec"])
@pytest.mark.parametrize("case", BAD_OPTIONS, ids=[_option_id(c) for c in BAD_OPTIONS])
def test_bad_option_is_refused(probe: Probe, case: tuple[str, Any, str], how: str) -> None:
    name, value, bound = case
    s = probe.store
    if how == "enqueue":
        action, where = (lambda: s.enqueue(Q, 1, **{name: value})), name
    elif how == "enqueue_many":
        # A default shared by every job is named as the option it came from.
        action, where = (lambda: s.enqueue_many(Q, [1, 2], **{name: value})), f"options.{name}"
    else:
        items = [Spec(1), Spec(2), Spec(3), Spec(4, **{name: value})]
        action, where = (lambda: s.enqueue_many(Q, items)), f"payloads[3].{name}"
    probe.refused(InvalidArgument, action, field=where, limit=bound)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lease_ms", 1),
        ("lease_ms", MAX_LEASE),
        ("delay_ms", MAX_DELAY),
        ("run_at_ms", 0),
        ("max_attempts", 1),
        ("max_attempts", 1000),
        ("priority", -1000),
        ("priority", 1000),
        ("unique_key", "k" * 256),
        ("name", "n" * 200),
    ],
)
def test_option_at_its_bound_is_accepted(probe: Probe, name: str, value: Any) -> None:
    job = probe.store.enqueue(Q, "p", **{name: value})
    attribute = {"delay_ms": "run_at_ms"}.get(name, name)
    if name == "delay_ms":
        assert job.run_at_ms == job.created_at_ms + MAX_DELAY
        assert job.state is JobState.SCHEDULED
    else:
        assert getattr(job, attribute) == value
    assert probe.store.counts(Q)[job.state] == 1


def test_a_twelve_hour_lease_is_the_longest_a_claim_may_ask(probe: Probe) -> None:
    probe.store.enqueue(Q, "p")
    probe.refused(
        InvalidArgument,
        lambda: probe.store.claim(Q, worker="w", lease_ms=MAX_LEASE + 1),
        field="lease_ms",
        limit="[1, 43200000]",
    )
    [job] = probe.store.claim(Q, worker="w", lease_ms=MAX_LEASE)
    assert job.lease_deadline_ms is not None
    claimed_at = job.lease_deadline_ms - MAX_LEASE
    assert job.created_at_ms <= claimed_at <= job.created_at_ms + 60_000


@pytest.mark.parametrize("how", ["enqueue", "enqueue_many", "spec"])
def test_run_at_ms_and_delay_ms_together_are_refused(probe: Probe, how: str) -> None:
    s = probe.store
    if how == "enqueue":
        action, where = (lambda: s.enqueue(Q, 1, run_at_ms=10, delay_ms=5)), "run_at_ms"
    elif how == "enqueue_many":
        action = lambda: s.enqueue_many(Q, [1], run_at_ms=10, delay_ms=5)  # noqa: E731
        where = "options.run_at_ms"
    else:
        action = lambda: s.enqueue_many(Q, [Spec(1, run_at_ms=10, delay_ms=5)])  # noqa: E731
        where = "payloads[0].run_at_ms"
    exc = probe.refused(InvalidArgument, action, field=where)
    assert "delay_ms" in str(exc)


ENQUEUE_MANY_KEYS = [
    "name",
    "priority",
    "delay_ms",
    "run_at_ms",
    "max_attempts",
    "lease_ms",
    "unique_key",
]


@pytest.mark.parametrize("typo", ["lease_secs", "delay", "priorty", "payload", "ids"])
def test_unknown_enqueue_many_option_lists_the_valid_keys(probe: Probe, typo: str) -> None:
    exc = probe.refused(
        InvalidArgument,
        lambda: probe.store.enqueue_many(Q, [1], **{typo: 5}),
        field=f"options.{typo}",
    )
    message = str(exc)
    for key in ENQUEUE_MANY_KEYS:
        assert key in message, f"{key!r} missing from {message!r}"
    # enqueue_many refuses options.id, so the list of valid keys must not offer it.
    assert not re.search(r"\bid\b", exc.limit), f"the valid keys offer 'id': {exc.limit!r}"


def test_enqueue_many_refuses_a_shared_id(probe: Probe) -> None:
    exc = probe.refused(
        InvalidArgument, lambda: probe.store.enqueue_many(Q, [1, 2], id="x"), field="options.id"
    )
    assert "Spec" in str(exc)


@pytest.mark.parametrize(
    "payloads",
    ["abc", b"abc", {"a": 1}, {1, 2}, None, 5],
    ids=["str", "bytes", "dict", "set", "none", "int"],
)
def test_enqueue_many_needs_a_list(probe: Probe, payloads: Any) -> None:
    probe.refused(InvalidArgument, lambda: probe.store.enqueue_many(Q, payloads), field="payloads")


def test_enqueue_many_refuses_a_generator(probe: Probe) -> None:
    probe.refused(
        InvalidArgument,
        lambda: probe.store.enqueue_many(Q, (n for n in range(3))),  # type: ignore[arg-type]
        field="payloads",
    )


def test_enqueue_many_validates_every_chunk_before_sending_any(probe: Probe) -> None:
    # 2,500 jobs span three script calls; the bad one sits in the last chunk.
    items: list[Any] = [Spec(n, id=f"j{n}") for n in range(2_500)]
    items[2_100] = Spec(2_100, id="j2100", priority=5_000)
    probe.refused(
        InvalidArgument,
        lambda: probe.store.enqueue_many(Q, items),
        field="payloads[2100].priority",
        limit="[-1000, 1000]",
    )


def test_enqueue_many_of_nothing_sends_nothing(probe: Probe) -> None:
    assert probe.store.enqueue_many(Q, []) == []
    assert probe.sent == []
    assert probe.store.redis.keys("*") == []


# ---------------------------------------------------------------------------- queue names

BAD_NAMES: dict[str, Any] = {
    "empty": "",
    "space": " ",
    "leading-space": " q",
    "trailing-space": "q ",
    "201-chars": "q" * 201,
    "open-brace": "q{",
    "close-brace": "q}",
    "tag": "{q}",
    "newline": "q\n",
    "nul": "q\x00",
    "del": "q\x7f",
    "lone-surrogate": "q\ud800",
    "int": 5,
    "bytes": b"q",
    "list": ["q"],
    "none": None,
}

# Every public method that takes one queue name, called with that name in `q`.
QUEUE_OPS: dict[str, Callable[[redisq.Store, Any], Any]] = {
    "enqueue": lambda s, q: s.enqueue(q, 1),
    "enqueue_many": lambda s, q: s.enqueue_many(q, [1, 2]),
    "claim": lambda s, q: s.claim(q, worker="w"),
    "counts": lambda s, q: s.counts(q),
    "get": lambda s, q: s.get(q, "id"),
    "list": lambda s, q: s.list(q),
    "peek": lambda s, q: s.peek(q),
    "update": lambda s, q: s.update(q, "id", priority=1),
    "delete": lambda s, q: s.delete(q, "id"),
    "cancel": lambda s, q: s.cancel(q, "id"),
    "retry_dead": lambda s, q: s.retry_dead(q),
    "pause": lambda s, q: s.pause(q),
    "resume": lambda s, q: s.resume(q),
    "purge": lambda s, q: s.purge(q),
    "reap": lambda s, q: s.reap(q),
    "claim_and_ack": lambda s, q: s.claim_and_ack(q),
    "lock": lambda s, q: s.lock(q, "id", "w", 1_000),
    "unlock": lambda s, q: s.unlock(q, "id", "w"),
}
# None means "every queue" for these, and a list is claim's other form: valid calls.
_MEANINGFUL = {("counts", "none"), ("list", "none"), ("claim", "list")}
_QUEUE_CASES = [
    pytest.param(op, bad, id=f"{bad}-{op}")
    for bad in BAD_NAMES
    for op in QUEUE_OPS
    if (op, bad) not in _MEANINGFUL
]


@pytest.mark.parametrize(("op", "bad"), _QUEUE_CASES)
def test_bad_queue_name_is_refused(probe: Probe, op: str, bad: str) -> None:
    value = BAD_NAMES[bad]
    # claim's parameter is `queues`: a bad single name may be reported under either.
    where = ("queue", "queues") if op == "claim" else "queue"
    probe.refused(InvalidArgument, lambda: QUEUE_OPS[op](probe.store, value), field=where)


def test_queue_name_limits_are_named(probe: Probe) -> None:
    probe.refused(
        InvalidArgument, lambda: probe.store.enqueue("q" * 201, 1), field="queue", limit="200"
    )
    probe.refused(InvalidArgument, lambda: probe.store.enqueue("a{b", 1), field="queue", limit="{")


@pytest.mark.parametrize("bad", ["", "q{", 5, None, "q" * 201, ["q"]], ids=short)
def test_bad_name_in_a_claim_list_is_refused(probe: Probe, bad: Any) -> None:
    probe.refused(
        InvalidArgument, lambda: probe.store.claim(["ok", bad], worker="w"), field="queues[1]"
    )


@pytest.mark.parametrize("queues", [[], (), {"q"}, {"q": 1}], ids=["list", "tuple", "set", "dict"])
def test_claim_needs_a_name_or_a_non_empty_list(probe: Probe, queues: Any) -> None:
    probe.refused(InvalidArgument, lambda: probe.store.claim(queues, worker="w"), field="queues")


def test_claim_on_a_queue_never_used_returns_nothing_and_leaves_no_trace(probe: Probe) -> None:
    assert probe.store.claim("never-used", worker="w") == []
    assert probe.store.claim(["never-1", "never-2"], worker="w", count=5) == []
    assert probe.store.redis.keys("*") == []


BAD_WORKERS: dict[str, Any] = {
    "empty": "",
    "space": "  ",
    "leading-space": " w",
    "brace": "w{",
    "201-chars": "w" * 201,
    "newline": "w\n",
    "lone-surrogate": "w\udcff",
    "int": 5,
    "none": None,
}
WORKER_OPS: dict[str, Callable[[redisq.Store, Any], Any]] = {
    "claim": lambda s, w: s.claim(Q, worker=w),
    "claim_and_ack": lambda s, w: s.claim_and_ack(Q, worker=w),
    "lock": lambda s, w: s.lock(Q, "id", w, 1_000),
    "unlock": lambda s, w: s.unlock(Q, "id", w),
}


@pytest.mark.parametrize("op", WORKER_OPS, ids=WORKER_OPS.keys())
@pytest.mark.parametrize("bad", BAD_WORKERS.values(), ids=BAD_WORKERS.keys())
def test_bad_worker_name_is_refused(probe: Probe, bad: Any, op: str) -> None:
    probe.refused(InvalidArgument, lambda: WORKER_OPS[op](probe.store, bad), field="worker")


@pytest.mark.parametrize("count", [0, -1, 1001, True, 1.5, "2", None], ids=short)
def test_claim_count_is_checked(probe: Probe, count: Any) -> None:
    probe.refused(
        InvalidArgument,
        lambda: probe.store.claim(Q, worker="w", count=count),
        field="count",
        limit="[1, 1000]",
    )


@pytest.mark.parametrize(
    "lease", [0, -5, True, math.nan, math.inf, 2.5, MAX_LEASE + 1, "1000"], ids=short
)
def test_claim_lease_is_checked(probe: Probe, lease: Any) -> None:
    probe.refused(
        InvalidArgument,
        lambda: probe.store.claim(Q, worker="w", lease_ms=lease),
        field="lease_ms",
        limit="[1, 43200000]",
    )


# Job ids passed to the management methods are checked like enqueue's.
ID_OPS: dict[str, Callable[[redisq.Store, Any], Any]] = {
    "get": lambda s, i: s.get(Q, i),
    "find": lambda s, i: s.find(i),
    "update": lambda s, i: s.update(Q, i, priority=1),
    "delete": lambda s, i: s.delete(Q, i),
    "cancel": lambda s, i: s.cancel(Q, i),
    "lock": lambda s, i: s.lock(Q, i, "w", 1_000),
    "unlock": lambda s, i: s.unlock(Q, i, "w"),
}


@pytest.mark.parametrize("op", ID_OPS, ids=ID_OPS.keys())
@pytest.mark.parametrize("bad", ["", " ", "a{", "a\n", "x" * 257, 5, None, b"id"], ids=short)
def test_bad_id_in_a_lookup_is_refused(probe: Probe, bad: Any, op: str) -> None:
    probe.refused(InvalidArgument, lambda: ID_OPS[op](probe.store, bad), field="id")


# Other numeric and enum arguments: (call, field, bound named).
OTHER_ARGUMENTS: dict[str, tuple[Callable[[redisq.Store], Any], str, str]] = {
    "list-limit": (lambda s: s.list(Q, limit=-1), "limit", "[0, "),
    "list-offset": (lambda s: s.list(Q, offset=-1), "offset", "[0, "),
    "list-offset-float": (lambda s: s.list(Q, offset=1.0), "offset", "[0, "),
    "list-state": (lambda s: s.list(Q, state="finished"), "state", "ready"),
    "peek-limit-0": (lambda s: s.peek(Q, 0), "limit", "[1, "),
    "peek-limit-bool": (lambda s: s.peek(Q, True), "limit", "[1, "),
    "reap-limit": (lambda s: s.reap(Q, limit=0), "limit", "[1, "),
    "retry-limit": (lambda s: s.retry_dead(Q, limit=0), "limit", "[1, "),
    "retry-ids-str": (lambda s: s.retry_dead(Q, "job-1"), "ids", "list"),
    "retry-ids-bad": (lambda s: s.retry_dead(Q, ["ok", "a{b"]), "ids[1]", "256"),
    "lock-ttl": (lambda s: s.lock(Q, "id", "w", 0), "ttl_ms", "[1, "),
    "lock-ttl-float": (lambda s: s.lock(Q, "id", "w", 1.5), "ttl_ms", "[1, "),
    "update-priority": (lambda s: s.update(Q, "id", priority=1001), "priority", "[-1000, 1000]"),
    "update-run-at": (lambda s: s.update(Q, "id", run_at_ms=-1), "run_at_ms", "[0, "),
    "purge-state": (lambda s: s.purge(Q, state="finished"), "state", "ready"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", OTHER_ARGUMENTS.values(), ids=OTHER_ARGUMENTS.keys())
def test_other_bad_arguments_are_refused(
    probe: Probe, case: tuple[Callable[[redisq.Store], Any], str, str]
) -> None:
    call, where, bound = case
    probe.refused(InvalidArgument, lambda: call(probe.store), field=where, limit=bound)


def test_update_refuses_an_unserialisable_payload(probe: Probe) -> None:
    probe.store.enqueue(Q, "p", id="id")
    probe.refused(
        SerializationError, lambda: probe.store.update(Q, "id", payload={1, 2}), field="payload"
    )
    big = b"\x04" * LIMIT
    probe.refused(
        PayloadTooLarge,
        lambda: probe.store.update(Q, "id", payload=big),
        field="payload",
        limit=LIMIT,
    )


# -------------------------------------------------------------------------------- connect


@pytest.mark.parametrize(
    "url",
    ["ftp://localhost", "http://localhost:6379", "localhost:6379", "", "redis+unknown://h:1", 7],
    ids=short,
)
def test_connect_refuses_an_unknown_scheme(url: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"url|scheme") as info:
        redisq.connect(url)
    assert type(info.value) is ConfigurationError


@pytest.mark.parametrize("url", ["memory://dr", "redis://127.0.0.1:1"])
def test_connect_refuses_decode_responses(url: str) -> None:
    with pytest.raises(ConfigurationError, match="decode_responses") as info:
        redisq.connect(url, decode_responses=True)
    assert type(info.value) is ConfigurationError
    with pytest.raises(ConfigurationError, match="decode_responses"):
        redisq.connect_async(url, decode_responses=True)


def test_connect_refuses_a_memory_cluster() -> None:
    with pytest.raises(ConfigurationError, match="cluster") as info:
        redisq.connect(memory_url(), cluster=True)
    assert type(info.value) is ConfigurationError
    with pytest.raises(ConfigurationError, match="cluster"):
        redisq.connect_async(memory_url(), cluster=True)


# (keyword, bad value, field named, bound named)
BAD_CONNECT: list[tuple[str, Any, str, str]] = [
    ("prefix", "{p}", "prefix", "{"),
    ("prefix", "p}", "prefix", "{"),
    ("prefix", "", "prefix", "200"),
    ("prefix", " p", "prefix", "spaces"),
    ("prefix", "p" * 201, "prefix", "200"),
    ("prefix", 5, "prefix", "200"),
    ("prefix", "p\ud800", "prefix", ""),
    ("payload_limit", -1, "payload_limit", "[1, "),
    ("payload_limit", 0, "payload_limit", "[1, "),
    ("payload_limit", True, "payload_limit", "[1, "),
    ("payload_limit", 1024.0, "payload_limit", "[1, "),
    ("payload_limit", 512 * 1024 * 1024 + 1, "payload_limit", "[1, "),
    ("lease_ms", 0, "lease_ms", "[1, 43200000]"),
    ("lease_ms", MAX_LEASE + 1, "lease_ms", "[1, 43200000]"),
    ("claim_memo_ms", -1, "claim_memo_ms", "[0, "),
    ("retention", Retention(completed=-1), "retention.completed", "[0, "),
    ("retention", Retention(dead_age_ms=-1), "retention.dead_age_ms", "[0, "),
    ("retention", Retention(trim_batch=0), "retention.trim_batch", "[1, "),
]


@pytest.mark.parametrize("connect", ["sync", "async"])
@pytest.mark.parametrize("case", BAD_CONNECT, ids=[_option_id((*c[:2], "")) for c in BAD_CONNECT])
def test_connect_refuses_a_bad_option(case: tuple[str, Any, str, str], connect: str) -> None:
    keyword, value, where, bound = case
    opener = redisq.connect if connect == "sync" else redisq.connect_async
    with pytest.raises(InvalidArgument) as info:
        opener(memory_url(), **{keyword: value})
    exc = info.value
    assert type(exc) is InvalidArgument
    assert exc.field == where
    assert bound in exc.limit
    assert where in str(exc)
    assert bound in str(exc)


# ------------------------------------------------------------------------- lease misuse


@pytest.mark.parametrize("error", [5, None, b"boom", ValueError("boom"), ["boom"]], ids=short)
def test_nack_error_must_be_a_str(probe: Probe, error: Any) -> None:
    job = probe.claimed()
    probe.refused(
        InvalidArgument, lambda: probe.store.nack(job, error=error, delay_ms=0), field="error"
    )


@pytest.mark.parametrize("delay", [-1, MAX_DELAY + 1, True, 1.5], ids=short)
def test_nack_delay_is_checked(probe: Probe, delay: Any) -> None:
    job = probe.claimed()
    probe.refused(
        InvalidArgument,
        lambda: probe.store.nack(job, delay_ms=delay),
        field="delay_ms",
        limit="[0, ",
    )


@pytest.mark.parametrize("dead", [1, 0, "yes", None], ids=short)
def test_nack_dead_must_be_a_bool(probe: Probe, dead: Any) -> None:
    job = probe.claimed()
    probe.refused(
        InvalidArgument, lambda: probe.store.nack(job, delay_ms=0, dead=dead), field="dead"
    )


def test_nack_cuts_a_huge_error_to_16_kib_with_a_marker(probe: Probe) -> None:
    job = probe.claimed(max_attempts=5)
    head = "Traceback (most recent call last):\n"
    error = head + "x" * (1024 * 1024)
    back = probe.store.nack(job, error=error, delay_ms=0)
    assert back.last_error is not None
    assert len(back.last_error) == 16 * 1024
    assert back.last_error.startswith(head)
    assert "truncated" in back.last_error[-40:]
    stored = unpack_record(probe.store.redis.hget(f"{{bi:{Q}}}:jobs", job.id))["error"]
    assert stored == back.last_error.encode()


def test_nack_cut_is_measured_in_bytes(probe: Probe) -> None:
    # 16 KiB is a size in bytes: two-byte characters must not store 32 KiB.
    job = probe.claimed(max_attempts=5)
    back = probe.store.nack(job, error="é" * (1024 * 1024), delay_ms=0)
    stored = unpack_record(probe.store.redis.hget(f"{{bi:{Q}}}:jobs", job.id))["error"]
    assert len(stored) <= 16 * 1024
    assert back.last_error is not None
    assert back.last_error.encode() == stored


def test_nack_with_an_error_that_is_not_valid_unicode_is_typed(probe: Probe) -> None:
    # Text decoded with errors="surrogateescape" (subprocess output, file names) holds lone
    # surrogates. Either refuse it as InvalidArgument before sending, or store it (replaced).
    job = probe.claimed(max_attempts=5)
    error = "exit status 1: \udcff\udcfe"
    refusal: InvalidArgument | None = None
    back: Job | None = None
    try:
        back = probe.store.nack(job, error=error, delay_ms=0)
    except InvalidArgument as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.field == "error"
        record = unpack_record(probe.store.redis.hget(f"{{bi:{Q}}}:jobs", job.id))
        assert record["state"] == b"leased"
    else:
        assert back is not None
        assert back.state is JobState.READY
        assert back.last_error is not None
        assert back.last_error.startswith("exit status 1: ")


# Lease operations on one job: (call, field named when the job is not a Job).
JOB_OPS: dict[str, Callable[[redisq.Store, Any], Any]] = {
    "ack": lambda s, j: s.ack(j),
    "nack": lambda s, j: s.nack(j, error="e", delay_ms=0),
    "nack-backoff": lambda s, j: s.nack(j, error="e"),
    "renew": lambda s, j: s.renew(j),
    "release": lambda s, j: s.release(j),
    "progress": lambda s, j: s.progress(j, 50),
}


@pytest.mark.parametrize("op", JOB_OPS, ids=JOB_OPS.keys())
@pytest.mark.parametrize("bad", NON_JOB, ids=["none", "str", "int", "dict"])
def test_lease_operation_needs_a_job(probe: Probe, bad: Any, op: str) -> None:
    probe.refused(InvalidArgument, lambda: JOB_OPS[op](probe.store, bad), field="job")


@pytest.mark.parametrize("op", JOB_OPS, ids=JOB_OPS.keys())
def test_lease_operation_needs_a_claimed_job(probe: Probe, op: str) -> None:
    job = probe.store.enqueue(Q, "p")
    assert job.token is None
    probe.refused(InvalidArgument, lambda: JOB_OPS[op](probe.store, job), field="job.token")


def test_batch_lease_operations_name_the_bad_item(probe: Probe) -> None:
    good = probe.claimed()
    never = replace(good, id="other", token=None)
    s = probe.store
    probe.refused(InvalidArgument, lambda: s.ack_many([good, "x"]), field="jobs[1]")  # type: ignore[list-item]
    probe.refused(InvalidArgument, lambda: s.ack_many([good, never]), field="jobs[1].token")
    probe.refused(InvalidArgument, lambda: s.renew_many([good, None]), field="jobs[1]")  # type: ignore[list-item]
    probe.refused(InvalidArgument, lambda: s.renew_many([never]), field="jobs[0].token")
    probe.refused(InvalidArgument, lambda: s.ack_many(good), field="jobs")  # type: ignore[arg-type]
    probe.refused(InvalidArgument, lambda: s.ack_many([good], [1, 2]), field="results")
    probe.refused(
        InvalidArgument, lambda: s.renew_many([good], lease_ms=0), field="lease_ms", limit="[1, "
    )
    probe.refused(InvalidArgument, lambda: s.renew(good, lease_ms=MAX_LEASE + 1), field="lease_ms")
    assert s.ack(good).state is JobState.COMPLETED


# ------------------------------------------------------ errors that were not redisq's (issue 9)


def test_an_invalid_argument_shows_a_deep_or_cyclic_value_in_bounded_time(probe: Probe) -> None:
    # The error's own message builds a bounded repr (a deep value overflowed repr before).
    for value in (_deep_list(100_000), _deep_dict(100_000), _self_referencing()):
        exc = probe.refused(
            InvalidArgument, lambda v=value: probe.store.enqueue(Q, 1, priority=v), field="priority"
        )
        assert len(str(exc)) < 300


def test_an_invalid_argument_shows_values_whose_repr_fails(probe: Probe) -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    exc = probe.refused(
        InvalidArgument, lambda: probe.store.enqueue(Q, 1, priority=Hostile()), field="priority"
    )
    assert "Hostile" in str(exc)
    exc = probe.refused(
        InvalidArgument, lambda: probe.store.enqueue(Q, 1, priority=10**5000), field="priority"
    )
    assert len(str(exc)) < 300


# Jobs made by hand or by dataclasses.replace: (change, field named).
HAND_MADE: dict[str, tuple[dict[str, Any], str]] = {
    "token-true": ({"token": True}, "job.token"),
    "token-tuple": ({"token": (1,)}, "job.token"),
    "token-str": ({"token": "1"}, "job.token"),
    "token-float": ({"token": 1.0}, "job.token"),
    "token-huge": ({"token": 2**64}, "job.token"),
    "id-none": ({"id": None}, "job.id"),
    "id-int": ({"id": 5}, "job.id"),
    "id-surrogate": ({"id": "a\ud800b"}, "job.id"),
    "id-bytes": ({"id": b"id"}, "job.id"),
    "queue-surrogate": ({"queue": "q\udcff"}, "job.queue"),
    "queue-list": ({"queue": ["q"]}, "job.queue"),
    "queue-dict": ({"queue": {"q": 1}}, "job.queue"),
    "queue-brace": ({"queue": "q{"}, "job.queue"),
    "queue-none": ({"queue": None}, "job.queue"),
}


@pytest.mark.parametrize("op", JOB_OPS, ids=JOB_OPS.keys())
@pytest.mark.parametrize("case", HAND_MADE.values(), ids=HAND_MADE.keys())
def test_a_hand_made_job_is_refused_naming_the_field(
    probe: Probe, op: str, case: tuple[dict[str, Any], str]
) -> None:
    changes, where = case
    job = replace(probe.claimed(), **changes)
    probe.refused(InvalidArgument, lambda: JOB_OPS[op](probe.store, job), field=where)


@pytest.mark.parametrize("op", ["ack_many", "renew_many"])
@pytest.mark.parametrize("case", HAND_MADE.values(), ids=HAND_MADE.keys())
def test_a_hand_made_job_in_a_list_is_refused_naming_it(
    probe: Probe, op: str, case: tuple[dict[str, Any], str]
) -> None:
    changes, where = case
    good = probe.claimed()
    jobs = [good, replace(good, **changes)]
    exc = probe.refused(InvalidArgument, lambda: getattr(probe.store, op)(jobs))
    assert exc.field == where.replace("job", "jobs[1]", 1)


def test_nack_of_a_job_without_attempts_is_refused(probe: Probe) -> None:
    job = replace(probe.claimed(), attempts=None)
    probe.refused(InvalidArgument, lambda: probe.store.nack(job, error="e"), field="job.attempts")
    # With a delay of its own, the attempts are not needed.
    assert probe.store.nack(job, error="e", delay_ms=0).state is JobState.READY


@pytest.mark.parametrize("bad", [5, 1.5, object(), "r", b"r"], ids=short)
def test_ack_many_results_must_be_a_list(probe: Probe, bad: Any) -> None:
    job = probe.claimed()
    probe.refused(InvalidArgument, lambda: probe.store.ack_many([job], bad), field="results")


@pytest.mark.parametrize("bad", [5, 1.5, object(), b"id"], ids=short)
def test_retry_dead_ids_must_be_a_list(probe: Probe, bad: Any) -> None:
    probe.refused(InvalidArgument, lambda: probe.store.retry_dead(Q, bad), field="ids")


def test_an_unknown_keyword_to_enqueue_is_named_with_the_valid_ones(probe: Probe) -> None:
    exc = probe.refused(
        InvalidArgument,
        lambda: probe.store.enqueue(Q, 1, prority=3),  # type: ignore[call-arg]
        field="prority",
    )
    for valid in ("priority", "delay_ms", "run_at_ms", "max_attempts", "unique_key"):
        assert valid in str(exc)
    # enqueue_many names it the same way (as an option of every job).
    exc = probe.refused(InvalidArgument, lambda: probe.store.enqueue_many(Q, [1], prority=3))
    assert exc.field == "options.prority"


def test_an_unknown_keyword_to_enqueue_is_refused_async() -> None:
    async def main() -> None:
        async with redisq.connect_async(memory_url()) as store:
            with pytest.raises(InvalidArgument, match="prority") as info:
                await store.enqueue(Q, 1, prority=3)  # type: ignore[call-arg]
            assert info.value.field == "prority"
            assert await store.counts(Q) == dict.fromkeys(JobState, 0)

    asyncio.run(main())


OVERSIZED: dict[str, Callable[[], Any]] = {
    "list-of-blobs": lambda: [b"x" * 1_000_000] * 100,
    "list-of-ints": lambda: list(range(20_000_000)),
    "list-of-short-str": lambda: ["x" * 100] * 1_000_000,
    "dict-of-blobs": lambda: {str(i): b"v" * 100 for i in range(1_000_000)},
    "nested": lambda: [["y" * 1_000] * 1_000] * 100,
    "tuple-in-dict": lambda: {"k": (b"x" * 2_000_000,)},
}


@pytest.mark.parametrize("make", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_a_100_mb_container_is_refused_before_encoding(
    probe: Probe, monkeypatch: pytest.MonkeyPatch, make: Callable[[], Any]
) -> None:
    huge = make()
    job = probe.claimed()
    packed: list[int] = []
    real_packb = msgpack.packb

    def packb(value: Any, **options: Any) -> bytes:
        if value is huge:
            packed.append(1)
        data: bytes = real_packb(value, **options)
        return data

    monkeypatch.setattr(msgpack, "packb", packb)
    for action in (
        lambda: probe.store.enqueue(Q, huge),
        lambda: probe.store.enqueue_many(Q, [1, huge]),
        lambda: probe.store.ack(job, huge),
        lambda: probe.store.progress(job, huge),
    ):
        exc = probe.refused(PayloadTooLarge, action, limit=LIMIT)
        assert exc.size > LIMIT
    assert packed == [], "a value far over the limit was encoded before it was refused"


@pytest.mark.parametrize("how", ["ack", "ack_many", "progress", "update"])
def test_a_value_that_would_not_read_back_is_refused_before_it_is_stored(
    probe: Probe, how: str
) -> None:
    # msgpack writes a dict keyed by a tuple but cannot read it back: stored as a result,
    # progress or payload, it would break every later read of the job.
    bad = {(1, 2): "tuple key"}
    job = probe.claimed()
    probe.store.enqueue(Q, 1, id="waiting")
    s = probe.store
    if how == "ack":
        action, field = (lambda: s.ack(job, bad)), "result"
    elif how == "ack_many":
        action, field = (lambda: s.ack_many([job], [bad])), "result"
    elif how == "progress":
        action, field = (lambda: s.progress(job, bad)), "progress"
    else:
        action, field = (lambda: s.update(Q, "waiting", payload=bad)), "payload"
    probe.refused(SerializationError, action, field=field)
    assert s.ack(job, {"fine": [1, 2]}).result == {"fine": [1, 2]}
