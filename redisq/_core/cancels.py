"""Cancel signals: how the worker holding a leased job learns at once that it was cancelled.

The cancel script appends an entry (the job's id and the token of the lease it ended) to the
queue's ``cancels`` stream, capped at `CANCEL_SIGNAL_CAP` entries. Workers block on their
queues' streams (`wait_cancels`: XREAD from the last entry they saw), so every worker of the
queue wakes, and the one holding that lease stops its handler. Only cancels of leased jobs
write the stream: a queue where nobody cancels a running job has no such key, and the claim,
ack and renew scripts never look at it. The signal is advisory: the lease's next renewal
finds the lease lost all the same (the fallback when a signal is missed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redisq._core.calls import Call, Op, Settings, decoded, queue_keys
from redisq.models import CancelNotice

__all__ = ["CANCEL_SIGNAL_CAP", "wait_cancels"]

#: Most entries a queue's cancel stream keeps (trimmed by the cancel script as it appends).
#: A watcher reads every few milliseconds while cancels arrive, so only a burst of more cancels
#: of running jobs than this between two reads could trim one unseen (its lease's renewal
#: then tells the holder, as without the signal).
CANCEL_SIGNAL_CAP = 1000
#: The position before any entry (a stream that does not exist yet).
_START = "0-0"


def _last_id(reply: Any) -> str:
    """The id of the stream's newest entry from an XREVRANGE ... COUNT 1 reply."""
    if not reply:
        return _START
    return decoded(reply[0][0])


def wait_cancels(
    s: Settings, queues: Sequence[str], positions: dict[str, str], timeout_ms: int
) -> Op[list[CancelNotice]]:
    """Return the cancels of leased jobs of `queues` after `positions` (queue -> the last
    stream entry seen), blocking up to `timeout_ms` (0: only note where the streams are) for
    the first. Queues without a position get one first (their newest entry: cancels before
    this call do not count); `positions` is updated in place.

    The caller has validated the names and chosen queues that may share one command
    (standalone servers: any; Redis Cluster: one queue per call).
    """
    keys = {q: queue_keys(s.prefix, q).cancels for q in queues}
    unknown = [q for q in queues if q not in positions]
    if unknown:
        replies = yield [
            Call(None, [], ["XREVRANGE", keys[q], "+", "-", "COUNT", 1], _last_id) for q in unknown
        ]
        for queue, last in zip(unknown, replies, strict=True):
            positions[queue] = last
    if timeout_ms <= 0:
        return []
    by_key = {keys[q]: q for q in queues}

    def parse(reply: Any) -> list[CancelNotice]:
        if not reply:
            return []
        notices: list[CancelNotice] = []
        entries = reply.items() if isinstance(reply, dict) else reply
        for key, items in entries:
            queue = by_key.get(decoded(key))
            if queue is None or not items:
                continue
            for _, fields in items:
                values = _fields(fields)
                job_id = values.get("id")
                token = values.get("token", "")
                if job_id is not None and token.isdigit():
                    notices.append(CancelNotice(queue, job_id, int(token)))
            positions[queue] = decoded(items[-1][0])
        return notices

    notices: list[CancelNotice] = yield Call(
        None,
        [],
        [
            "XREAD",
            "COUNT",
            CANCEL_SIGNAL_CAP,
            "BLOCK",
            max(1, timeout_ms),
            "STREAMS",
            *by_key,
            *(positions[q] for q in queues),
        ],
        parse,
        blocking=True,
    )
    return notices


def _fields(fields: Any) -> dict[str, str]:
    """A stream entry's fields as text (a flat list, or a dict under RESP3)."""
    if isinstance(fields, dict):
        return {decoded(k): decoded(v) for k, v in fields.items()}
    return {decoded(fields[i]): decoded(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
