"""The codec's fast paths: a packer kept per thread, and batches encoded at once."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pytest

from redisq._core.codec import encode, round_trip, round_trip_many
from redisq.errors import PayloadTooLarge, SerializationError

LIMIT = 1024


def test_a_refused_value_leaves_the_kept_packer_clean() -> None:
    with pytest.raises(SerializationError):
        encode("payload", [1, "two", object()], LIMIT)
    assert encode("payload", {"a": [1, 2]}, LIMIT) == msgpack.packb({"a": [1, 2]})


def test_each_thread_encodes_with_its_own_packer() -> None:
    results: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        results[n] = [encode("payload", {"n": n, "i": i, "s": "x" * i}, LIMIT) for i in range(300)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, encoded in results.items():
        assert encoded == [msgpack.packb({"n": n, "i": i, "s": "x" * i}) for i in range(300)]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ([1, {(1, 2): 3}], SerializationError),  # a tuple key does not read back
        ([1, "x" * (LIMIT + 1)], PayloadTooLarge),  # one too large alone
        ([1, [object()]], SerializationError),
    ],
)
def test_a_batch_with_a_refused_value_is_refused(values: list[Any], error: type[Exception]) -> None:
    assert round_trip_many(values, LIMIT) is None
    round_trip("payload", values[0], LIMIT)
    with pytest.raises(error):
        round_trip("payload", values[1], LIMIT)


def test_a_batch_whose_sum_passes_the_limit_is_judged_value_by_value() -> None:
    # Each fits; together they pass the limit: the batch walk must look at each one.
    values = ["x" * (LIMIT // 2)] * 5
    got = round_trip_many(values, LIMIT)
    assert got is not None
    assert got[0] == [msgpack.packb(v) for v in values]
    assert got[1] == values
