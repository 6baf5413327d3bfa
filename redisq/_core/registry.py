"""The worker registry: each running worker's record, with a TTL, on the Redis clock.

A worker writes its record every third of its TTL (`heartbeat`), so a worker that dies
without a word (kill -9) drops out of the list once its TTL has passed. The records live
under the registry's own hash tag, ``{<prefix>:}`` (the empty queue name, which no queue can
have: `redisq.keys.registry_keys`), so the whole registry sits in one Redis Cluster slot per
prefix and each script of it runs in that slot. Readers find the workers through the index
zset (names scored by their record's expiry), never by scanning the keyspace; the scripts
drop expired names from it in bounded steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from redisq._core.calls import Call, Settings, check_reply, decoded, script_call
from redisq._core.codec import decode, encode
from redisq._core.validate import check_int, check_name
from redisq.keys import QueueKeys, registry_keys
from redisq.models import WorkerInfo

__all__ = ["RECORD_LIMIT", "heartbeat", "list_workers", "parse_workers"]

#: Expired names one script call drops from the index.
PRUNE = 100
#: Workers one list call returns (the client pages on).
PAGE = 500
#: Most bytes of one worker's record.
RECORD_LIMIT = 64 * 1024
#: Longest TTL of a record (ms): a day.
MAX_TTL_MS = 24 * 60 * 60 * 1000


@lru_cache(maxsize=64)
def _keys(prefix: str) -> QueueKeys:
    return registry_keys(prefix)


def heartbeat(s: Settings, name: str, record: Mapping[str, Any], ttl_ms: int) -> Call[int]:
    """Write (or with ttl_ms 0, remove) a worker's record; the call returns its expiry."""
    check_name("worker", name)
    check_int("ttl_ms", ttl_ms, 0, MAX_TTL_MS)
    packed = encode("record", dict(record), RECORD_LIMIT) if ttl_ms else b""
    return script_call(
        "heartbeat",
        _keys(s.prefix),
        _expiry,
        worker=name,
        record=packed,
        ttl_ms=ttl_ms,
        prune=PRUNE,
        now_ms=s.now_arg(),
    )


def _expiry(reply: Any) -> int:
    return int(check_reply(reply, "")[1])


def list_workers(s: Settings, offset: int) -> Call[tuple[list[WorkerInfo], bool]]:
    """One page of live workers from `offset` (by expiry), and whether more follow."""
    return script_call(
        "list_workers",
        _keys(s.prefix),
        parse_workers,
        offset=offset,
        limit=PAGE,
        prune=PRUNE,
        now_ms=s.now_arg(),
    )


def parse_workers(reply: Any) -> tuple[list[WorkerInfo], bool]:
    """Read a list_workers reply: the workers whose record could be read, and `more`."""
    check_reply(reply, "")
    out: list[WorkerInfo] = []
    for i in range(3, len(reply), 3):
        name = decoded(reply[i])
        expires = int(float(decoded(reply[i + 1])))
        try:
            info = _info(name, expires, decode(reply[i + 2]))
        except (ValueError, TypeError, KeyError):
            continue  # a record of another layout (a newer redisq): not ours to read
        out.append(info)
    return out, bool(int(reply[2]))


def _info(name: str, expires: int, record: Any) -> WorkerInfo:
    r: dict[str, Any] = dict(record)
    ttl = int(r["ttl_ms"])
    return WorkerInfo(
        name=name,
        host=str(r["host"]),
        pid=int(r["pid"]),
        version=str(r["version"]),
        queues=tuple(str(q) for q in r["queues"]),
        concurrency=int(r["concurrency"]),
        pool=str(r["pool"]),
        started_at_ms=int(r["started_at_ms"]),
        seen_at_ms=expires - ttl,
        expires_at_ms=expires,
        in_flight=int(r["in_flight"]),
        jobs=tuple(str(j) for j in r["jobs"]),
        counters={str(k): int(v) for k, v in dict(r["counters"]).items()},
    )
