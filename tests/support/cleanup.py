"""Delete one test's keys, and nothing else, from a server that may be shared (STYLE T3)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import redis
from redis.cluster import RedisCluster

__all__ = ["delete_prefix", "prefix_patterns"]

_SAFE_PREFIX = re.compile(r"[A-Za-z0-9_-]{4,64}")


def prefix_patterns(prefix: str) -> list[str]:
    """Return the SCAN patterns that cover every key redisq writes under ``prefix``.

    ``{<prefix>:<queue>}:<part>`` (per-queue keys), ``{<prefix>}...`` and ``<prefix>:...``
    (registries outside a queue's slot).

    Raises:
        ValueError: If ``prefix`` holds glob or hash-tag characters, or is short enough to
            match someone else's keys.
    """
    if not _SAFE_PREFIX.fullmatch(prefix):
        raise ValueError(f"refusing to delete keys for the unsafe prefix {prefix!r}")
    return [f"{{{prefix}:*", f"{{{prefix}}}*", f"{prefix}:*"]


def delete_prefix(url: str, prefix: str, *, batch: int = 500) -> int:
    """Delete the keys of ``prefix`` on the server at ``url``; return how many were deleted.

    Uses SCAN with MATCH (never FLUSHALL/FLUSHDB/KEYS), so it is safe on a server that holds
    other data. ``redis+cluster://`` URLs scan every primary of the cluster.

    Args:
        url: ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://`` URL.
        prefix: The test's prefix (letters, digits, ``_`` and ``-`` only).
        batch: Keys per DEL command.
    """
    patterns = prefix_patterns(prefix)
    deleted = 0
    if url.startswith("redis+cluster://"):
        with RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://")) as cluster:
            for pattern in patterns:
                keys = list(cluster.scan_iter(match=pattern, count=1000))
                for key in keys:  # keys of different slots cannot share one DEL
                    deleted += int(cluster.delete(key))
        return deleted
    with redis.Redis.from_url(url, socket_timeout=10) as client:
        for pattern in patterns:
            for chunk in _chunks(client.scan_iter(match=pattern, count=1000), batch):
                deleted += int(client.delete(*chunk))
    return deleted


def _chunks(keys: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
