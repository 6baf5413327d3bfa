"""lib/read_some reads new ids (no record yet) in full groups of CAPS.READ_GROUP.

Enqueue looks up every id of a batch before writing; those are mostly new, so their records
are missing and cost nothing to copy. The read still stays within its caps: a group is never
larger than READ_GROUP, so a call reads at most one group of records past its budget.
Counted on a private server (INFO commandstats counts the commands a script runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import redisq
from redisq._core.calls import READ_GROUP
from tests.support.servers import ServerProcess


def _hmgets(client: Any) -> int:
    return int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


@pytest.mark.parametrize("kind", ["valkey", "redis7"])
def test_enqueue_many_of_new_ids_reads_them_in_full_groups(
    make_server: Callable[..., ServerProcess], prefix: str, kind: str
) -> None:
    server = make_server(kind)
    store = redisq.connect(server.url, prefix=prefix)
    stats = server.client()
    try:
        store.enqueue("q", 0)  # the queue is registered and the script loaded
        before = _hmgets(stats)
        jobs = store.enqueue_many("q", list(range(100)))
        # The meta hash (one HMGET), the first two ids, then READ_GROUP ids per HMGET.
        assert _hmgets(stats) - before == 1 + 1 + -(-98 // READ_GROUP)
        assert len({j.id for j in jobs}) == 100
        assert store.counts("q")[redisq.JobState.READY] == 101
    finally:
        store.close()
        stats.close()


@pytest.mark.parametrize("kind", ["valkey", "redis7"])
def test_enqueue_many_of_existing_ids_still_reads_in_small_groups(
    make_server: Callable[..., ServerProcess], prefix: str, kind: str
) -> None:
    # Existing records: the group follows their size as before (never above READ_GROUP).
    server = make_server(kind)
    store = redisq.connect(server.url, prefix=prefix)
    stats = server.client()
    try:
        specs = [redisq.Spec(i, id=f"j{i}") for i in range(100)]
        first = store.enqueue_many("q", specs)
        before = _hmgets(stats)
        again = store.enqueue_many("q", specs)
        assert again == first
        assert _hmgets(stats) - before == 1 + 1 + -(-98 // READ_GROUP)
    finally:
        store.close()
        stats.close()
