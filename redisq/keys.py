"""QueueKeys: the only code that builds key names.

All keys of a queue share one hash tag, ``{<prefix>:<queue>}``, so they live in one Redis
Cluster slot and every script of the queue can run there. Job records are the fields of one
hash per queue (``jobs``: job id -> packed record); per-request and per-job keys (claim memos,
locks) are derived inside scripts from a prefix that arrives in KEYS with the same tag.
The queue registry is the one key outside any queue's slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from redisq._core.validate import check_name

__all__ = ["QueueKeys", "registry_key"]


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue."""

    queue: str
    meta: str
    ready: str
    scheduled: str
    leased: str
    done: str
    dead: str
    cancelled: str
    unique: str
    jobs: str
    wake: str
    memo_prefix: str
    lock_prefix: str

    @classmethod
    def build(cls, prefix: str, queue: str) -> QueueKeys:
        """Build the key names of `queue` under `prefix`, validating both names."""
        check_name("prefix", prefix)
        check_name("queue", queue)
        tag = f"{{{prefix}:{queue}}}"
        return cls(
            queue=queue,
            meta=f"{tag}:meta",
            ready=f"{tag}:ready",
            scheduled=f"{tag}:scheduled",
            leased=f"{tag}:leased",
            done=f"{tag}:done",
            dead=f"{tag}:dead",
            cancelled=f"{tag}:cancelled",
            unique=f"{tag}:unique",
            jobs=f"{tag}:jobs",
            wake=f"{tag}:wake",
            memo_prefix=f"{tag}:claim:",
            lock_prefix=f"{tag}:lock:",
        )


def registry_key(prefix: str) -> str:
    """Name the set of known queue names under `prefix` (outside every queue's slot)."""
    return f"{prefix}:queues"
