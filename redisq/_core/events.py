"""A queue's event stream and result waits (docs/events.md).

The scripts write both themselves (lua/lib/events.lua), inside the transitions: an event is
in the stream exactly when its transition happened, and a result waiter is signalled in the
same step that makes the job final. Here: turning the stream on and off, reading it, and
waiting for a job to be final.
"""

from __future__ import annotations

import re
from typing import Any

from redisq._core.calls import (
    Call,
    Op,
    Settings,
    check_reply,
    command,
    decoded,
    queue_keys,
    script_call,
)
from redisq._core.validate import check_id, check_int
from redisq._version import __version__
from redisq.errors import InvalidArgument
from redisq.models import Event

__all__ = [
    "DEFAULT_EVENTS_MAXLEN",
    "EVENT_KINDS",
    "MAX_EVENTS_MAXLEN",
    "MAX_WAIT_MS",
    "events",
    "set_events",
    "wait_final",
]

#: The stream's default cap (entries, approximate: XADD MAXLEN ~).
DEFAULT_EVENTS_MAXLEN = 10_000
#: The largest cap set_events accepts (lua/set_events.lua).
MAX_EVENTS_MAXLEN = 10_000_000
#: Most entries one read returns.
MAX_EVENTS_COUNT = 10_000
#: Longest single wait of wait_final (lua/wait_result.lua); longer waits register again.
MAX_WAIT_MS = 3_600_000
#: What the scripts write, in a job's life order.
EVENT_KINDS = (
    "enqueued",
    "started",
    "progress",
    "completed",
    "retried",
    "dead",
    "cancelled",
    "lease-lost",
    "reaped",
)
_STREAM_ID = re.compile(r"^(\$|0|\d+(-\d+)?)$")


def set_events(s: Settings, queue: str, on: bool, maxlen: int) -> Call[None]:
    """Turn a queue's event stream on (capped at about `maxlen` entries) or off."""
    keys = queue_keys(s.prefix, queue)
    if type(on) is not bool:
        raise InvalidArgument("on", "True or False", on)
    check_int("maxlen", maxlen, 1, MAX_EVENTS_MAXLEN)

    def parse(reply: Any) -> None:
        check_reply(reply, queue)

    return script_call(
        "set_events", keys, parse, lib_version=__version__, maxlen=maxlen if on else 0
    )


def events(
    s: Settings, queue: str, since: str, count: int, block_ms: int | None
) -> Call[list[Event]]:
    """Read up to `count` events of a queue after the entry `since` (XREAD): '0' reads from
    the oldest kept, '$' only what comes next; with block_ms, wait that long for one."""
    keys = queue_keys(s.prefix, queue)
    if type(since) is not str or not _STREAM_ID.match(since):
        raise InvalidArgument(
            "since", "a stream entry id ('<ms>-<n>' or '<ms>'), '0' (the oldest) or '$'", since
        )
    check_int("count", count, 1, MAX_EVENTS_COUNT)
    args: list[Any] = ["XREAD", "COUNT", count]
    if block_ms is not None:
        check_int("block_ms", block_ms, 0, s.max_block_ms)
        args += ["BLOCK", max(1, block_ms)]
    args += ["STREAMS", keys.events, since]

    def parse(reply: Any) -> list[Event]:
        if not reply:
            return []
        entries = reply.items() if isinstance(reply, dict) else reply
        out: list[Event] = []
        for _, items in entries:
            for entry_id, fields in items or ():
                out.append(_event(queue, decoded(entry_id), _fields(fields)))
        return out

    if block_ms is None:
        return command(parse, *args)
    return Call(None, [], args, parse, blocking=True)


def wait_final(s: Settings, queue: str, job_id: str, timeout_ms: int) -> Op[bool]:
    """Wait until a job is final (completed, dead, cancelled) or gone, for up to timeout_ms.

    Registers a waiter with the wait_result script (which answers at once for a job already
    final or gone), then blocks on the job's wait list (BLPOP), which the finishing script
    pushes in the same step. True when the job is final or gone, False when the time ran out.
    Three commands at most, however long the wait.
    """
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    check_int("timeout_ms", timeout_ms, 1, MAX_WAIT_MS)
    reply = yield script_call(
        "wait_result",
        keys,
        lambda r: check_reply(r, queue, job_id=job_id),
        now_ms=s.now_arg(),
        id=job_id,
        wait_ms=timeout_ms,
    )
    if int(reply[1]) == 1:
        return True
    seconds = f"{timeout_ms / 1000:.3f}"
    popped: bool = yield Call(
        None,
        [],
        ["BLPOP", f"{keys.wait_prefix}q{job_id}", seconds],
        lambda r: r is not None,
        blocking=True,
    )
    return popped


def _event(queue: str, entry_id: str, v: dict[str, str]) -> Event:
    attempt = v.get("attempt", "")
    at = v.get("at", "")
    return Event(
        id=entry_id,
        queue=queue,
        event=v.get("event", ""),
        job_id=v.get("id", ""),
        name=v.get("name", ""),
        attempt=int(attempt) if attempt.isdigit() else 0,
        worker=v.get("worker", ""),
        at_ms=int(at) if at.isdigit() else 0,
    )


def _fields(fields: Any) -> dict[str, str]:
    """A stream entry's fields as text (a flat list, or a dict under RESP3)."""
    if isinstance(fields, dict):
        return {decoded(k): decoded(v) for k, v in fields.items()}
    return {decoded(fields[i]): decoded(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
