"""What every operation is built from: Call, Settings, script binding and reply checks.

An operation validates its input (raising before anything is sent), then either returns one
`Call` or is a generator that yields Calls (or lists of Calls to pipeline) and receives their
replies (STYLE A3). The sync and asyncio clients only run what these build.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from redisq._core.codec import DEFAULT_PAYLOAD_LIMIT
from redisq._core.scripts import ScriptSpec, script
from redisq._core.status import ScriptStatus, raise_for_status
from redisq._core.validate import (
    check_name,
)
from redisq.keys import QueueKeys
from redisq.models import Retention

__all__ = ["NOT_SET", "Call", "Op", "Settings", "queue_keys", "script_call"]

T = TypeVar("T")

# The caps on one script call's work (lua/lib/caps.lua; a test checks parity), so that no
# accepted argument makes a script block Redis for long: about 20 ms at most on a slow machine
# (bench/bench_caps.py). Where a caller asks for more, the client makes several calls.
#: Jobs (or ids) per script call in batch operations: far below Lua's unpack limit (about
#: 8,000 values), and a call of small jobs stays near a millisecond of server time.
CHUNK = 1_000
#: Payload or result bytes one batch call carries beyond its first job (which may be larger,
#: up to the payload limit).
CHUNK_BYTES = 1024 * 1024
#: Stored record bytes a batch script reads per call beyond its first record; past them it
#: handles only the jobs before, and the client sends the rest again.
READ_BYTES = 1024 * 1024
#: Records a script reads per HMGET under the read budget (its most overshoot, in records).
READ_GROUP = 4
#: Most jobs one claim may lease.
MAX_CLAIM = 1_000
#: Error texts longer than this are cut (with a marker) before they reach Redis.
MAX_ERROR_LENGTH = 16 * 1024
#: Latest time accepted for run_at_ms (scores must stay exact integers below 2^53).
MAX_TIME_MS = 2**53 - 1
#: Most job records one migrate call converts.
MAX_MIGRATE_BATCH = 10_000


class _NotSet:
    """The type of NOT_SET: "argument not given" where None is a meaningful value."""

    def __repr__(self) -> str:
        return "NOT_SET"


#: Marks an argument that was not given (update's payload may be None).
NOT_SET: Any = _NotSet()


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One round trip: a script when `spec` is set, else the plain command in `args`."""

    spec: ScriptSpec | None
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]
    #: A blocking command (the wait): transports let `stop_waiting` cut it short, and then
    #: skip it (its parse gets None, as when it times out).
    blocking: bool = False


#: A multi-step operation: yields a Call (or a list of Calls to pipeline), receives the parsed
#: result (or the list of results), and returns its value.
Op = Generator["Call[Any] | list[Call[Any]]", Any, T]


@dataclass(frozen=True, slots=True)
class Settings:
    """Client-wide options that operations need (see `redisq.connect`)."""

    prefix: str = "redisq"
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT
    retention: Retention = field(default_factory=Retention)
    lease_ms: int = 30_000
    claim_memo_ms: int = 10_000
    housekeeping_batch: int = 100
    #: Test clock (ms); None = the Redis server clock. Production never sets it.
    clock: Callable[[], int] | None = None
    #: Redis Cluster: keys of different queues cannot share one command.
    cluster: bool = False
    #: Longest blocking call: below the socket timeout, so a wait never looks like a hang.
    max_block_ms: int = 60_000

    def now_arg(self) -> str:
        """Give scripts their clock override: '' means TIME on the server."""
        return "" if self.clock is None else str(self.clock())


def queue_keys(prefix: str, queue: Any) -> QueueKeys:
    """Build (and cache) the key names of a queue, validating the names."""
    if type(queue) is not str:
        check_name("queue", queue)  # raises; the cache below needs a hashable str
    return _queue_keys(prefix, queue)


@lru_cache(maxsize=4096)
def _queue_keys(prefix: str, queue: str) -> QueueKeys:
    return QueueKeys.build(prefix, queue)


@lru_cache(maxsize=8192)
def _key_list(name: str, keys: QueueKeys) -> tuple[str, ...]:
    return tuple(getattr(keys, k) for k in script(name).keys)


def script_call(name: str, keys: QueueKeys, parse: Callable[[Any], T], **argv: Any) -> Call[T]:
    """Bind a script's KEYS and ARGV by the names in its header (never by hand)."""
    spec = script(name)
    args: list[Any] = []
    for a in spec.argv:
        if a.rest:
            args.extend(argv[a.name])
        else:
            args.append(argv[a.name])
    if len(argv) != len(spec.argv):
        unknown = set(argv) - {a.name for a in spec.argv}
        raise TypeError(f"{name}: unknown script arguments {sorted(unknown)}")
    return Call(spec, list(_key_list(name, keys)), args, parse)


def chunk_ranges(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Split items of the given byte sizes into script calls: (start, stop) index pairs.

    A call takes at most CHUNK items and CHUNK_BYTES bytes, but always its first item (which
    may reach the payload limit on its own).
    """
    out: list[tuple[int, int]] = []
    first, size = 0, 0
    for i, n in enumerate(sizes):
        if i > first and (i - first == CHUNK or size + n > CHUNK_BYTES):
            out.append((first, i))
            first, size = i, 0
        size += n
    if first < len(sizes):
        out.append((first, len(sizes)))
    return out


def command(parse: Callable[[Any], T], *args: Any) -> Call[T]:
    """Build a plain Redis command call (reads of job records and the queue registry)."""
    return Call(None, [], list(args), parse)


def ok(reply: Any) -> Any:
    return reply


def decoded(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def new_id() -> str:
    """Generate a job id: 32 random hex digits (128 bits)."""
    return os.urandom(16).hex()


def check_reply(reply: Any, queue: str, **context: Any) -> Any:
    if reply[0] != ScriptStatus.OK:
        raise_for_status(reply, queue=queue, **context)
    return reply


def registry(s: Settings) -> str:
    """Name the queue registry set."""
    return f"{s.prefix}:queues"
