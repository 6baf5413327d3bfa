"""What the dashboard's pages show, read through the store's operations with bounded calls.

Every function here makes a fixed number of Redis calls, or a number bounded by a limit it
states (a page of jobs, a search window); none walks a whole queue or the keyspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from redisq._async.store import AsyncStore
from redisq.keys import QueueKeys, dashboard_series_key
from redisq.models import Attempt, Job, JobState

__all__ = [
    "SEARCH_WINDOW",
    "VALUE_CAP",
    "QueueRow",
    "as_row",
    "count_items",
    "overview",
    "paused",
    "read_series",
    "record_minute",
    "redis_info",
    "search_jobs",
    "server_ms",
    "show_ms",
    "show_value",
]

#: Characters of a payload, result, error or traceback a page shows at most.
VALUE_CAP = 64 * 1024
#: Jobs a search by name (or a dead-letter filter) reads at most, newest or next first.
SEARCH_WINDOW = 5_000
#: Queues the overview reads at once (each is 5 calls in flight).
QUEUES_AT_ONCE = 8
#: Items of a list or mapping, and nesting levels, a shown value keeps at most.
_ITEMS = 1_000
_DEPTH = 32


@dataclasses.dataclass
class QueueRow:
    """One queue as the overview shows it."""

    name: str
    counts: dict[str, int]
    totals: dict[str, int]
    paused: bool
    #: Age (ms) of the job next in claim order, since it became due; None: none ready.
    head_age_ms: int | None
    rate_limit: str | None


def count_items(counts: dict[JobState, int]) -> dict[str, int]:
    """Counts by state name, in the store's own order (new states appear as they come)."""
    return {str(state): int(n) for state, n in counts.items()}


async def server_ms(store: AsyncStore) -> int:
    """Read the Redis clock (ms): ages are measured on the clock the scripts use."""
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def paused(store: AsyncStore, queue: str) -> bool:
    """Tell whether `queue` is paused (its meta hash's flag, one HGET)."""
    keys = QueueKeys.build(store.prefix, queue)
    value = await store.redis.hget(keys.meta, "paused")
    return value not in (None, b"", b"0", "0", "")


async def _queue_row(store: AsyncStore, queue: str, now_ms: int) -> QueueRow:
    counts, totals, is_paused, head, rate = await asyncio.gather(
        store.counts(queue),
        store.totals(queue),
        paused(store, queue),
        store.peek(queue, 1),
        store.rate_limit(queue),
    )
    age = None
    if head:
        age = max(0, now_ms - max(head[0].run_at_ms, head[0].created_at_ms))
    return QueueRow(queue, count_items(counts), totals, is_paused, age, rate.limit)


async def overview(store: AsyncStore, offset: int, limit: int) -> tuple[list[QueueRow], int, int]:
    """Read a page of queues: rows, the number of queues, and the Redis clock."""
    names, now_ms = await asyncio.gather(store.queues(), server_ms(store))
    page = names[offset : offset + limit]
    # A few queues at a time: each row is 5 calls, and every call in flight holds one of
    # the pool's connections.
    gate = asyncio.Semaphore(QUEUES_AT_ONCE)

    async def row(queue: str) -> QueueRow:
        async with gate:
            return await _queue_row(store, queue, now_ms)

    rows = await asyncio.gather(*(row(q) for q in page))
    return list(rows), len(names), now_ms


#: Minutes of counter samples the throughput chart keeps in Redis.
SERIES_MINUTES = 60


def _series_member(now_ms: int, rows: Sequence[QueueRow]) -> str:
    queues = {r.name: [r.totals.get("enqueued", 0), r.totals.get("completed", 0)] for r in rows}
    return json.dumps({"t": now_ms, "q": queues}, separators=(",", ":"))


async def record_minute(store: AsyncStore, now_ms: int, rows: Sequence[QueueRow]) -> None:
    """Keep one sample of the queues' monotonic counters per minute, for the last hour.

    The live overview calls this on each refresh; only the first call of a minute writes
    (one ZADD and a trim), so any number of open dashboards keep one shared, bounded series.
    A server that refuses the write (a read-only ACL user) leaves the chart to live samples.
    """
    minute = now_ms // 60_000
    key = dashboard_series_key(store.prefix)
    client = store.redis
    try:
        if await client.zrangebyscore(key, minute, minute, start=0, num=1):
            return
        await client.zadd(key, {_series_member(now_ms, rows): minute})
        await client.zremrangebyscore(key, "-inf", minute - SERIES_MINUTES - 1)
    except redis.ResponseError:
        return


async def read_series(store: AsyncStore, now_ms: int) -> list[dict[str, Any]]:
    """Read the last hour's per-minute samples: [{"t": ms, "q": {queue: [enq, done]}}]."""
    minute = now_ms // 60_000
    try:
        raw = await store.redis.zrangebyscore(
            dashboard_series_key(store.prefix), minute - SERIES_MINUTES, "+inf"
        )
    except redis.ResponseError:
        return []
    out = []
    for item in raw:
        with contextlib.suppress(ValueError, TypeError):
            entry = json.loads(item)
            if isinstance(entry, dict) and isinstance(entry.get("q"), dict):
                out.append(entry)
    return out


async def search_jobs(
    store: AsyncStore,
    queue: str,
    state: JobState,
    *,
    name: str = "",
    error: str = "",
    window: int = SEARCH_WINDOW,
    limit: int = 500,
) -> tuple[list[Job], int]:
    """Find jobs of one state whose name and last error contain the given texts.

    Reads at most `window` jobs of the state (in the state's order) in pages of 500 and
    returns up to `limit` matches and how many jobs it read.
    """
    name_l, error_l = name.lower(), error.lower()
    found: list[Job] = []
    read = 0
    while read < window and len(found) < limit:
        page = await store.list(queue, state=state, limit=min(500, window - read), offset=read)
        if not page:
            break
        read += len(page)
        for job in page:
            if name_l and name_l not in (job.name or "").lower():
                continue
            if error_l and error_l not in (job.last_error or "").lower():
                continue
            found.append(job)
            if len(found) >= limit:
                break
        if len(page) < 500:
            break
    return found, read


async def redis_info(store: AsyncStore) -> dict[str, Any]:
    """Read INFO's server, memory, clients and stats sections (one call each)."""
    info: dict[str, Any] = {}
    for section in ("server", "memory", "clients", "stats"):
        try:
            info.update(await store.redis.info(section))
        except Exception as exc:  # a proxy or a managed service may refuse INFO
            info[f"{section}_error"] = str(exc)
    return info


def as_row(record: Any) -> dict[str, Any]:
    """A record (a dataclass such as a worker's, or a mapping) as a dict of its fields."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return dict(record)


def show_ms(ms: int | None, now_ms: int | None = None) -> str:
    """A time in ms since the epoch as UTC text, with its distance from now."""
    if ms is None or ms <= 0:
        return "-"
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    if now_ms is None:
        return text
    return f"{text} ({show_age(now_ms - ms, signed=True)})"


def show_age(ms: int | None, *, signed: bool = False) -> str:
    """A duration in ms as short text: 850 ms, 12.3 s, 4 min, 2.5 h, 3 d."""
    if ms is None:
        return "-"
    past = ms >= 0
    value = abs(ms)
    if value < 1000:
        text = f"{value} ms"
    elif value < 60_000:
        text = f"{value / 1000:.1f} s"
    elif value < 3_600_000:
        text = f"{value / 60_000:.0f} min"
    elif value < 86_400_000:
        text = f"{value / 3_600_000:.1f} h"
    else:
        text = f"{value / 86_400_000:.1f} d"
    if not signed:
        return text
    return f"{text} ago" if past else f"in {text}"


def _plain(value: Any, depth: int = 0) -> Any:
    """Turn a decoded payload into JSON-safe data: bytes as text or hex, keys as text."""
    if depth > _DEPTH:
        return "…(nested too deep)"
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return {"bytes (utf-8)": raw.decode()}
        except UnicodeDecodeError:
            head = raw[:_ITEMS].hex(" ")
            more = f" … ({len(raw)} bytes)" if len(raw) > _ITEMS else ""
            return {"bytes (hex)": head + more}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= _ITEMS:
                out["…"] = f"{len(value) - _ITEMS} more keys"
                break
            key = k if isinstance(k, str) else json.dumps(_plain(k, depth + 1))
            out[key] = _plain(v, depth + 1)
        return out
    if isinstance(value, Sequence):
        items = [_plain(v, depth + 1) for v in list(value)[:_ITEMS]]
        if len(value) > _ITEMS:
            items.append(f"… {len(value) - _ITEMS} more items")
        return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), depth + 1)
    return repr(value)


def show_value(value: Any, cap: int = VALUE_CAP) -> tuple[str, bool]:
    """Pretty-print a payload, result or progress value; cut to `cap` characters.

    Returns the text and whether it was cut. The template escapes it (Jinja autoescape).
    """
    if isinstance(value, str) and "\n" in value:
        text = value  # a traceback: keep its lines
    else:
        text = json.dumps(_plain(value), indent=2, ensure_ascii=False)
    if len(text) > cap:
        return text[:cap], True
    return text, False


#: Characters of an attempt's error or traceback shown (the store keeps 4 KiB of each attempt's
#: text already; this bounds the page whatever a later version stores).
ATTEMPT_TEXT_CAP = 8_192


def attempt_rows(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    """The job page's rows of a job's failed attempts, newest first, texts cut to the cap."""
    rows = []
    for a in reversed(attempts):
        error, error_cut = a.error[:ATTEMPT_TEXT_CAP], len(a.error) > ATTEMPT_TEXT_CAP
        trace, trace_cut = a.traceback[:ATTEMPT_TEXT_CAP], len(a.traceback) > ATTEMPT_TEXT_CAP
        rows.append(
            {
                "attempt": a.attempt,
                "token": a.token,
                "outcome": a.outcome,
                "cause": a.cause.replace("_", " "),
                "worker": a.worker,
                "at_ms": a.at_ms,
                "error": error,
                "traceback": trace,
                "cut": error_cut or trace_cut,
            }
        )
    return rows
