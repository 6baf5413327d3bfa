"""Dependencies: enqueue with ``depends_on`` (lua/enqueue_deps.lua) and the flow of a job.

A job that depends on others waits (JobState.WAITING) until every parent completed; the
transition that ends the last parent releases it in the same script (lua/lib/deps_*.lua). The
edges kept for inspection (`flow`) live under the queue's ``deps:`` prefix for FLOW_TTL_MS.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redisq._core.calls import (
    CHUNK,
    CHUNK_BYTES,
    Call,
    Op,
    Settings,
    check_reply,
    command,
    decoded,
    ok,
    queue_keys,
    registry,
    script_call,
)
from redisq._core.codec import round_trip
from redisq._core.records import parse_record
from redisq._core.status import ScriptStatus
from redisq._core.tracectx import check_trace_context, pack_trace
from redisq._core.validate import check_id, check_name
from redisq._version import __version__
from redisq.errors import DependencyCycle, DependencyNotFound, InvalidArgument, WrongKeyType
from redisq.models import DAY_MS, Flow, FlowNode, Job

__all__ = [
    "FLOW_TTL_MS",
    "MAX_PARENTS",
    "POLICIES",
    "FlowJob",
    "deliver",
    "enqueue_deps",
    "enqueue_flow",
    "flow",
    "parent_ids",
]

#: What happens to a waiting job when a parent ends dead, cancelled or deleted.
POLICIES = ("fail", "continue", "ignore")
#: Most parents of one job (the script's bound).
MAX_PARENTS = 1000
#: How long the edges `flow` reads are kept after the child's enqueue.
FLOW_TTL_MS = 7 * DAY_MS
#: The options of enqueue that a job with dependencies takes (besides depends_on).
_PLAIN = frozenset(
    {"id", "name", "priority", "delay_ms", "run_at_ms", "max_attempts", "lease_ms", "unique_key"}
)
#: Most jobs one `flow` call reads.
MAX_FLOW_NODES = 1000


#: A test seam: called with the name of a point between two steps of a release or an enqueue
#: across queues ("linked", "read", "delivered"), so that a test can kill the process there.
crash_point: Callable[[str], None] | None = None

#: Outbox entries one delivery call handles.
DELIVER_BATCH = 100


def _crash(point: str) -> None:
    if crash_point is not None:
        crash_point(point)


def parent_ids(
    queue: str, depends_on: Any, child_id: str
) -> tuple[list[str], dict[str, list[str]]]:
    """Validate `depends_on` (Jobs, JobRefs, ids of `queue`, or (queue, id) pairs) into the
    distinct parent ids of `queue` and those of other queues (by queue)."""
    if isinstance(depends_on, (str, Job)) or hasattr(depends_on, "job"):
        depends_on = [depends_on]
    if not isinstance(depends_on, (list, tuple)) or not depends_on:
        raise InvalidArgument("depends_on", "a non-empty list of Jobs or job ids", depends_on)
    if len(depends_on) > MAX_PARENTS:
        raise InvalidArgument(
            "depends_on", f"at most {MAX_PARENTS} parents", f"{len(depends_on)} parents"
        )
    local: list[str] = []
    far: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for i, parent in enumerate(depends_on):
        field = f"depends_on[{i}]"
        if isinstance(parent, str):
            pqueue, pid = queue, check_id(field, parent)
        elif (
            isinstance(parent, tuple)
            and len(parent) == 2
            and all(isinstance(p, str) for p in parent)
        ):
            pqueue = check_name(f"{field}[0]", parent[0])
            pid = check_id(f"{field}[1]", parent[1])
        else:
            job = getattr(parent, "job", parent)
            if not isinstance(job, Job):
                raise InvalidArgument(
                    field, "a Job, a JobRef, a job id or a (queue, id) pair", parent
                )
            pqueue, pid = job.queue, job.id
        if (pqueue, pid) == (queue, child_id):
            raise DependencyCycle(child_id, [child_id, child_id])
        if (pqueue, pid) in seen:
            continue
        seen.add((pqueue, pid))
        if pqueue == queue:
            local.append(pid)
        else:
            far.setdefault(pqueue, []).append(pid)
    return local, far


def check_policy(policy: Any) -> str:
    """Validate on_parent_failure."""
    if policy not in POLICIES:
        raise InvalidArgument("on_parent_failure", "one of 'fail', 'continue', 'ignore'", policy)
    return str(policy)


def _registry_type(s: Settings) -> Callable[[Any], str]:
    def parse(reply: Any) -> str:
        found = decoded(reply)
        if found not in ("set", "none"):
            raise WrongKeyType(registry(s), found)
        return found

    return parse


def enqueue_deps(
    s: Settings,
    queue: str,
    payload: Any,
    options: dict[str, Any],
    depends_on: Any,
    policy: str,
    registered: set[str],
) -> Op[Job]:
    """Enqueue one job that waits for its parents (see `Store.enqueue`)."""
    from redisq._core.enqueue import _options  # the one validation of enqueue's options

    keys = queue_keys(s.prefix, queue)
    for name in ("unique_key", "group", "expires_ms", "throttle_ms", "debounce_ms"):
        if options.get(name) is not None:
            raise InvalidArgument(
                name, "None when depends_on is given (not supported together yet)", options[name]
            )
    opts = _options({k: v for k, v in options.items() if k in _PLAIN}, "")
    check_policy(policy)
    jid = opts.id if opts.id is not None else os.urandom(16).hex()
    parents, far = parent_ids(queue, depends_on, jid)
    data, _ = round_trip("payload", payload, s.payload_limit, jid)
    if options.get("trace_context") is not None:  # (docs/tracing.md)
        data = pack_trace(check_trace_context("trace_context", options["trace_context"]), data)
    # Parents in other queues first (their slots): check them and record the child there.
    far_args: list[str] = []
    for pqueue in sorted(far):
        states = yield _link(s, pqueue, far[pqueue], queue, jid)
        for pid, state in zip(far[pqueue], states, strict=True):
            far_args += (f"{pqueue}\t{pid}", state)
        _crash("linked")
    if queue not in registered:
        yield [
            command(_registry_type(s), "TYPE", registry(s)),
            command(ok, "SADD", registry(s), queue),
        ]
        registered.add(queue)

    def parse(reply: Any) -> Any:
        if reply[0] == ScriptStatus.NOT_FOUND:
            raise DependencyNotFound(queue, decoded(reply[1]), jid)
        if reply[0] == ScriptStatus.BAD_ARGUMENT and decoded(reply[1]) == "depends_on":
            raise DependencyCycle(jid, [jid, jid])
        check_reply(reply, queue)
        if reply[2] == 1:
            return parse_record(queue, jid, reply[3])
        return bool(reply[4])

    name, priority, run_at, delay, max_attempts, lease_ms = opts.argv[:6]
    out = yield script_call(
        "enqueue_deps",
        keys,
        parse,
        now_ms=s.now_arg(),
        lib_version=__version__,
        flow_ttl_ms=str(FLOW_TTL_MS),
        id=jid,
        payload=data,
        job_name=name,
        priority=priority,
        run_at_ms=run_at,
        delay_ms=delay,
        max_attempts=max_attempts,
        lease_ms=lease_ms,
        policy=policy,
        count=str(len(parents)),
        parents=[*parents, str(len(far_args) // 2), *far_args],
    )
    if isinstance(out, Job):
        return out
    if out:
        yield command(ok, "SADD", registry(s), queue)
    job: Job | None = yield _get(s, queue, jid)
    if job is None:  # deleted at once by another client
        raise DependencyNotFound(queue, jid, jid)
    return job


def _link(s: Settings, pqueue: str, pids: list[str], queue: str, jid: str) -> Call[list[str]]:
    def parse(reply: Any) -> list[str]:
        if reply[0] == ScriptStatus.NOT_FOUND:
            raise DependencyNotFound(pqueue, decoded(reply[1]), jid)
        check_reply(reply, pqueue)
        return [decoded(v) for v in reply[1]]

    return script_call(
        "deps_link",
        queue_keys(s.prefix, pqueue),
        parse,
        now_ms=s.now_arg(),
        child=f"{queue}\n{jid}",
        count=str(len(pids)),
        parents=pids,
    )


def deliver(s: Settings, queue: str) -> Op[int]:
    """Deliver the releases in `queue`'s outbox to the children's queues (another slot, maybe).

    Each entry is delivered (lua/deps_deliver.lua, idempotent), then removed from the outbox:
    a process that dies between the two leaves the entry, and the next delivery sends it again,
    which changes nothing the second time. Returns the entries delivered.
    """
    keys = queue_keys(s.prefix, queue)
    outbox = keys.deps_prefix + "outbox"
    entries = yield command(_raw_list, "ZRANGE", outbox, 0, DELIVER_BATCH - 1)
    by_queue: dict[str, list[str]] = {}
    for entry in entries:
        parts = entry.split("\n")
        if len(parts) != 4:
            continue
        outcome, cqueue, child, parent = parts
        by_queue.setdefault(cqueue, []).extend((child, f"{queue}\t{parent}", outcome))
    _crash("read")
    for cqueue in sorted(by_queue):
        args = by_queue[cqueue]
        yield script_call(
            "deps_deliver",
            queue_keys(s.prefix, cqueue),
            _checked(cqueue),
            now_ms=s.now_arg(),
            count=str(len(args) // 3),
            releases=args,
        )
    _crash("delivered")
    if entries:
        yield command(ok, "ZREM", outbox, *entries)
    return len(entries)


def _raw_list(reply: Any) -> list[str]:
    return [decoded(v) for v in reply]


def _checked(queue: str) -> Callable[[Any], Any]:
    def parse(reply: Any) -> Any:
        return check_reply(reply, queue)

    return parse


def _get(s: Settings, queue: str, jid: str) -> Call[Job | None]:
    keys = queue_keys(s.prefix, queue)

    def parse(reply: Any) -> Job | None:
        return None if reply is None else parse_record(queue, jid, reply)

    return command(parse, "HGET", keys.jobs, jid)


def _members(reply: Any) -> list[str]:
    if reply is None:
        return []
    if isinstance(reply, (bytes, str)):
        text = decoded(reply)
        return text.split("\n") if text else []
    return sorted(decoded(v) for v in reply)


def flow(s: Settings, queue: str, job_id: str, limit: int = MAX_FLOW_NODES) -> Op[Flow]:
    """Read the DAG around `job_id`: its ancestors and descendants, breadth first, with each
    node's job (None when gone), at most `limit` nodes."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    frontier = [job_id]
    seen = {job_id}
    while frontier:
        calls: list[Call[Any]] = []
        for jid in frontier:
            calls.append(command(_members, "GET", keys.deps_prefix + "u/" + jid))
            calls.append(command(_members, "SMEMBERS", keys.deps_prefix + "d/" + jid))
        replies = yield calls
        nxt: list[str] = []
        for i, jid in enumerate(frontier):
            up[jid] = replies[2 * i]
            down[jid] = replies[2 * i + 1]
            for other in (*up[jid], *down[jid]):
                if "\t" in other:
                    continue  # a parent in another queue: the flow covers one queue
                if other not in seen and len(seen) < limit:
                    seen.add(other)
                    nxt.append(other)
        frontier = nxt
    ids = sorted(seen)
    records = yield command(ok, "HMGET", keys.jobs, *ids)
    nodes: dict[str, FlowNode] = {}
    for jid, rec in zip(ids, records, strict=True):
        job = None if rec is None else parse_record(queue, jid, rec)
        parents = [p for p in up.get(jid, []) if p in seen]
        children = [c for c in down.get(jid, []) if c in seen]
        nodes[jid] = FlowNode(jid, job, tuple(parents), tuple(children))
    return Flow(queue, job_id, nodes)


@dataclass(frozen=True, slots=True)
class FlowJob:
    """One job of a workflow for `enqueue_flow`: its queue, payload, enqueue options (with an
    ``id``), and its parents as (queue, id) pairs, all of them jobs listed before it or stored."""

    queue: str
    payload: Any
    options: dict[str, Any]
    parents: tuple[tuple[str, str], ...] = ()
    policy: str = "fail"


def _flow_fields(s: Settings, i: int, job: FlowJob) -> list[Any]:
    from redisq._core.enqueue import _options  # the one validation of enqueue's options

    where = f"jobs[{i}]."
    for name in ("unique_key", "group", "expires_ms", "throttle_ms", "debounce_ms"):
        if job.options.get(name) is not None:
            raise InvalidArgument(
                where + name, "None in a workflow (not supported together yet)", job.options[name]
            )
    if job.options.get("id") is None:
        raise InvalidArgument(
            where + "id", "a job id (a workflow's ids are set by the client)", None
        )
    opts = _options({k: v for k, v in job.options.items() if k in _PLAIN}, where)
    check_policy(job.policy)
    check_name(where + "queue", job.queue)
    if len(job.parents) > MAX_PARENTS:
        raise InvalidArgument(
            where + "depends_on", f"at most {MAX_PARENTS} parents", len(job.parents)
        )
    data, _ = round_trip(where + "payload", job.payload, s.payload_limit, str(opts.id))
    name, priority, run_at, delay, max_attempts, lease_ms = opts.argv[:6]
    local = [pid for pq, pid in job.parents if pq == job.queue]
    return [
        str(opts.id), data, name, priority, run_at, delay, max_attempts, lease_ms,
        job.policy, str(len(local)), *local,
    ]  # fmt: skip


def enqueue_flow(s: Settings, jobs: Sequence[FlowJob], registered: set[str]) -> Op[list[Job]]:
    """Enqueue the jobs of a workflow, parents before children (`redisq.canvas`).

    Every job is validated and encoded first (bad input writes nothing). Then each run of
    consecutive jobs of one queue whose parents are all in that queue is created by one
    lua/enqueue_flow.lua call (atomically: all of them with their links, or none; at most
    CHUNK jobs and CHUNK_BYTES of payloads per call); a job with a parent in another queue
    goes through `enqueue_deps` (link in the parent's slot, then create). Every step is
    idempotent on the job ids, so a re-sent call or a retry of the whole enqueue creates
    nothing twice. Returns the jobs (the stored ones for ids that existed), in order.
    """
    fields = [_flow_fields(s, i, job) for i, job in enumerate(jobs)]
    out: list[Job] = []
    i = 0
    while i < len(jobs):
        job = jobs[i]
        if any(pq != job.queue for pq, _ in job.parents):
            made = yield from enqueue_deps(
                s,
                job.queue,
                job.payload,
                {k: v for k, v in job.options.items() if k in _PLAIN},
                list(job.parents),
                job.policy,
                registered,
            )
            out.append(made)
            i += 1
            continue
        stop, size = i + 1, 0
        while (
            stop < len(jobs)
            and stop - i < CHUNK
            and jobs[stop].queue == job.queue
            and all(pq == job.queue for pq, _ in jobs[stop].parents)
            and size + len(fields[stop][1]) <= CHUNK_BYTES
        ):
            size += len(fields[stop][1])
            stop += 1
        out.extend((yield from _flow_call(s, job.queue, fields[i:stop], registered)))
        i = stop
    return out


def _flow_call(
    s: Settings, queue: str, fields: list[list[Any]], registered: set[str]
) -> Op[list[Job]]:
    keys = queue_keys(s.prefix, queue)
    if queue not in registered:
        yield [
            command(_registry_type(s), "TYPE", registry(s)),
            command(ok, "SADD", registry(s), queue),
        ]
        registered.add(queue)
    ids = [f[0] for f in fields]

    def parse(reply: Any) -> Any:
        if reply[0] == ScriptStatus.NOT_FOUND:
            raise DependencyNotFound(queue, decoded(reply[1]), ids[0])
        return check_reply(reply, queue)

    reply = yield script_call(
        "enqueue_flow",
        keys,
        parse,
        now_ms=s.now_arg(),
        lib_version=__version__,
        flow_ttl_ms=str(FLOW_TTL_MS),
        count=str(len(fields)),
        jobs=[v for f in fields for v in f],
    )
    if reply[2]:
        yield command(ok, "SADD", registry(s), queue)
    records = yield command(ok, "HMGET", keys.jobs, *ids)
    out: list[Job] = []
    for jid, rec in zip(ids, records, strict=True):
        if rec is None:  # deleted at once by another client
            raise DependencyNotFound(queue, jid, jid)
        out.append(parse_record(queue, jid, rec))
    return out
