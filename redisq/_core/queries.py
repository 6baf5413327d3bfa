"""Read-only operations: records, listings, counts, the queue registry."""

from __future__ import annotations

from typing import Any

from redisq._core.calls import (
    Call,
    Op,
    Settings,
    command,
    ok,
    queue_keys,
    registry,
    script_call,
)
from redisq._core.records import parse_entries, parse_record
from redisq._core.status import ScriptStatus, raise_for_status
from redisq._core.validate import check_id, check_int, check_name, check_state
from redisq.models import Counts, Job, JobState

__all__ = [
    "TOTALS",
    "counts",
    "expires_at",
    "find",
    "get",
    "list_jobs",
    "peek",
    "queues",
    "totals",
]

#: Jobs per page when a listing has no limit (or a large one).
PAGE = 500
_ORDER = list(JobState)


def _parse_counts(queue: str) -> Any:
    def parse(reply: Any) -> Counts:
        if reply[0] != ScriptStatus.OK:
            raise_for_status(reply, queue=queue)
        # The waiting count comes after the paused flag (reply[7]), then the held jobs.
        out = Counts(zip(_ORDER, (int(n) for n in [*reply[1:7], reply[8]]), strict=True))
        out.held = int(reply[9])
        return out

    return parse


def _counts_call(s: Settings, queue: str) -> Call[Counts]:
    return script_call(
        "counts", queue_keys(s.prefix, queue), _parse_counts(queue), now_ms=s.now_arg()
    )


def _sorted_names(reply: Any) -> list[str]:
    return sorted(v.decode() for v in reply)


#: The monotonic counters of a queue's meta hash, in the order `totals` reads them.
TOTALS = ("enqueued", "completed", "retried", "dead", "expired")


def totals(s: Settings, queue: str) -> Call[dict[str, int]]:
    """Read a queue's monotonic counters (never trimmed by retention, unlike the counts)."""
    keys = queue_keys(s.prefix, queue)

    def parse(reply: Any) -> dict[str, int]:
        return {name: int(v or 0) for name, v in zip(TOTALS, reply, strict=True)}

    return command(parse, "HMGET", keys.meta, *TOTALS)


def expires_at(s: Settings, queue: str, job_id: str) -> Op[int | None]:
    """Read when a job's expiry (enqueue's expires_ms) falls, while it still applies.

    The expiry entry names the job's enqueue sequence (lua/lib/expire_due.lua), read from its
    record first; two reads, so a job that changes between them may read as None.
    """
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    record = yield command(ok, "HGET", keys.jobs, job_id)
    if not isinstance(record, bytes):
        return None
    parts = record.split(b"\n", 17)
    if len(parts) < 17 or parts[0] != b"j3" or parts[2] != b"0":
        return None  # not a record, or the job has started: its expiry no longer applies
    if parts[1] not in (b"ready", b"scheduled"):
        return None
    score = yield command(ok, "ZSCORE", keys.expiring, b"%s/%s" % (parts[15], job_id.encode()))
    return None if score is None else int(float(score))


def get(s: Settings, queue: str, job_id: str) -> Call[Job | None]:
    """Read one job record; None when it does not exist."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)

    def parse(reply: Any) -> Job | None:
        if reply[0] != ScriptStatus.OK:
            raise_for_status(reply, queue=queue)
        return parse_record(queue, job_id, reply[1]) if reply[1] else None

    return script_call("get", keys, parse, id=job_id)


def find(s: Settings, job_id: str) -> Op[Job | None]:
    """Look an id up in every known queue, with one pipelined round trip."""
    check_id("id", job_id)
    names = yield command(_sorted_names, "SMEMBERS", registry(s))
    if not names:
        return None
    found = yield [get(s, q, job_id) for q in names]
    for job in found:
        if job is not None:
            return job  # type: ignore[no-any-return]
    return None


def _all_counts(s: Settings) -> Op[dict[str, Counts]]:
    names = yield command(_sorted_names, "SMEMBERS", registry(s))
    if not names:
        return {}
    per_queue = yield [_counts_call(s, q) for q in names]
    return dict(zip(names, per_queue, strict=True))


def queues(s: Settings) -> Op[list[str]]:
    """Name the queues that hold at least one job, sorted."""
    per_queue = yield from _all_counts(s)
    return [q for q, c in per_queue.items() if any(c.values())]


def counts(s: Settings, queue: str | None) -> Op[Counts]:
    """Count jobs per state in one queue, or summed over every queue (with `held`)."""
    if queue is not None:
        result = yield _counts_call(s, queue)
        return result  # type: ignore[no-any-return]
    per_queue = yield from _all_counts(s)
    total = Counts(dict.fromkeys(_ORDER, 0))
    for c in per_queue.values():
        for state, n in c.items():
            total[state] += n
        total.held += c.held
    return total


def _page_parse(queue: str) -> Any:
    def parse(reply: Any) -> tuple[list[Job], int, bool]:
        if reply[0] != ScriptStatus.OK:
            raise_for_status(reply, queue=queue)
        return parse_entries(queue, reply, 3), int(reply[1]), bool(reply[2])

    return parse


def peek(s: Settings, queue: str, limit: int) -> Op[list[Job]]:
    """List the jobs the next claims of `queue` would take, in claim order.

    Pages of at most PAGE jobs; a page the script cut short for its read budget is followed
    from where it stopped.
    """
    keys = queue_keys(s.prefix, queue)
    check_int("limit", limit, 1, 10_000)
    out: list[Job] = []
    offset = 0
    while len(out) < limit:
        page = min(PAGE, limit - len(out))
        jobs, covered, more = yield script_call(
            "peek",
            keys,
            _page_parse(queue),
            now_ms=s.now_arg(),
            offset=offset,
            limit=page,
            batch=s.housekeeping_batch,
        )
        out.extend(jobs)
        offset += covered
        if covered == 0 or (covered < page and not more):
            break
    return out


def _page(s: Settings, queue: str, state: str, offset: int, limit: int) -> Call[Any]:
    return script_call(
        "list_jobs",
        queue_keys(s.prefix, queue),
        _page_parse(queue),
        state=state,
        offset=offset,
        limit=limit,
    )


def list_jobs(
    s: Settings, queue: str | None, state: JobState | None, limit: int | None, offset: int
) -> Op[list[Job]]:
    """List jobs in a stable order: queue name, then state, then each state's set order."""
    if queue is not None:
        check_name("queue", queue)
    state = check_state("state", state)
    if limit is not None:
        check_int("limit", limit, 0, 10**9)
    check_int("offset", offset, 0, 10**12)
    name = "" if state is None else JobState(state).value
    sizes: dict[str, int | None]
    if queue is not None:
        sizes = {queue: None}
    else:
        per_queue = yield from _all_counts(s)
        sizes = {
            q: (sum(c.values()) if state is None else c[JobState(state)])
            for q, c in per_queue.items()
        }
    out: list[Job] = []
    want = limit
    for q, size in sizes.items():
        if want is not None and len(out) >= want:
            break
        if size is not None and offset >= size:
            offset -= size
            continue
        while want is None or len(out) < want:
            page = PAGE if want is None else min(PAGE, want - len(out))
            jobs, covered, more = yield _page(s, q, name, offset, page)
            out.extend(jobs)
            offset += covered
            if covered == 0 or (covered < page and not more):
                break
        offset = 0
    return out
