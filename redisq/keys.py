"""QueueKeys: the only code that builds key names.

All keys of a queue share one hash tag, ``{<prefix>:<queue>}``, so they live in one Redis
Cluster slot and every script of the queue can run there. Job records are the fields of one
hash per queue (``jobs``: job id -> packed record); per-request and per-job keys (claim memos,
locks, stored results) are derived inside scripts from a prefix that arrives in KEYS with the
same tag. The queue registry, ``<prefix>:queues``, is the one key outside any queue's slot.

The layout is unambiguous: a prefix holds no ``:`` (nor ``{``, ``}`` or glob characters), so
the first ``:`` inside the hash tag ends the prefix and the first ``}`` ends the
queue name. Each key belongs to exactly one (prefix, queue, part), and the ACL patterns
``~{<prefix>:*`` and ``~<prefix>:queues`` cover the keys of exactly one prefix.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from redisq._core.validate import check_name
from redisq.errors import ConfigurationError

__all__ = ["QueueKeys", "check_prefix", "dashboard_series_key", "registry_key", "registry_keys"]

#: What a prefix may not hold besides what every name refuses: ':' (it ends the prefix inside
#: the hash tag) and the glob characters of Redis key patterns (an ACL rule ``~{<prefix>:*``
#: would cover other prefixes).
_PREFIX_FORBIDDEN = re.compile(r"[:*?\[\]\\]")


def check_prefix(prefix: object) -> str:
    """Validate a key prefix: a name without ``:`` or glob characters.

    Raises:
        InvalidArgument: not a valid name (empty, too long, braces, control characters).
        ConfigurationError: it holds ``:``, ``*``, ``?``, ``[``, ``]`` or ``\\``.
    """
    name = check_name("prefix", prefix)
    found = _PREFIX_FORBIDDEN.search(name)
    if found:
        char = found.group()
        suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "redisq"
        if char == ":":
            why = (
                "in a key's hash tag {prefix:queue} the first ':' ends the prefix, so prefix"
                " 'mx' with queue 'a:b' would share its keys with prefix 'mx:a' and queue 'b';"
                " use '-', '_' or '.' instead (queue names may hold ':')"
            )
        else:
            why = (
                "it is a glob character (as are '*', '?', '[', ']' and '\\'), so an ACL key"
                " pattern for the prefix (~{prefix:*) would cover other prefixes too"
            )
        raise ConfigurationError(
            f"prefix {name!r} may not hold {char!r}: {why}; e.g. prefix={suggestion!r}"
        )
    return name


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
    #: Cancels of leased jobs (a capped stream the holders' workers block on).
    cancels: str
    memo_prefix: str
    lock_prefix: str
    result_prefix: str
    #: Periodic schedules (redisq/_core/schedules.py): definitions, pending ticks, changes.
    schedules: str
    schedule_due: str
    schedule_events: str
    #: Dependencies (lua/lib/deps_keys.lua): waiting jobs, their pending parents, the parents
    #: to watch, the todo list, and a prefix for children sets and flow edges.
    waiting: str
    deps: str
    deps_parents: str
    deps_todo: str
    deps_prefix: str
    #: Concurrency groups (lua/lib/groups.lua): grouped ready jobs, the groups' turns, their
    #: leases, and each grouped job's group.
    gready: str
    gturn: str
    gleased: str
    gjob: str
    #: Rate limits per group (lua/lib/groups.lua): group -> limit and bucket; groups waiting
    #: for their next token.
    grate: str
    gwait: str
    #: Expiry and dedupe windows (docs/expiry_dedupe.md): '<seq>/<id>' of jobs enqueued with
    #: expires_ms scored by their expiry; throttle windows are window_prefix .. <unique key>.
    expiring: str
    window_prefix: str
    #: The worker registry (redisq/_core/registry.py): only the registry's own QueueKeys,
    #: built by `registry_keys` for the empty queue name, uses them.
    workers: str
    worker_prefix: str
    #: The queue's event stream (lua/lib/events.lua, off unless set_events turned it on) and
    #: the result waiters' keys: wait_prefix .. 'n' .. <id> counts a job's waiters,
    #: wait_prefix .. 'q' .. <id> is the list they block on (lua/wait_result.lua).
    events: str
    wait_prefix: str

    @classmethod
    def build(cls, prefix: str, queue: str) -> QueueKeys:
        """Build the key names of `queue` under `prefix`, validating both names."""
        check_prefix(prefix)
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
            cancels=f"{tag}:cancels",
            memo_prefix=f"{tag}:claim:",
            lock_prefix=f"{tag}:lock:",
            result_prefix=f"{tag}:result:",
            schedules=f"{tag}:schedules",
            schedule_due=f"{tag}:schedule_due",
            schedule_events=f"{tag}:schedule_events",
            waiting=f"{tag}:waiting",
            deps=f"{tag}:deps:pending",
            deps_parents=f"{tag}:deps:parents",
            deps_todo=f"{tag}:deps:todo",
            deps_prefix=f"{tag}:deps:",
            gready=f"{tag}:gready",
            gturn=f"{tag}:gturn",
            gleased=f"{tag}:gleased",
            gjob=f"{tag}:gjob",
            grate=f"{tag}:grate",
            gwait=f"{tag}:gwait",
            expiring=f"{tag}:expiring",
            window_prefix=f"{tag}:window:",
            workers=f"{tag}:workers",
            worker_prefix=f"{tag}:worker:",
            events=f"{tag}:events",
            wait_prefix=f"{tag}:wait:",
        )


def registry_keys(prefix: str) -> QueueKeys:
    """Build the keys of the worker registry of `prefix`: those of the empty queue name.

    No queue can have that name, so the registry shares no key with any queue. Its hash tag
    is ``{<prefix>:}``: one Redis Cluster slot per prefix holds the whole registry (each
    worker's record and the index of them), so that its scripts run in one slot, and the ACL
    pattern ``~{<prefix>:*`` of a prefix covers it.
    """
    check_prefix(prefix)
    queue_keys = QueueKeys.build(prefix, "_")
    tag = f"{{{prefix}:}}"
    return dataclasses.replace(
        queue_keys,
        **{
            f.name: tag + getattr(queue_keys, f.name).split("}", 1)[1]
            for f in dataclasses.fields(QueueKeys)
            if f.name != "queue"
        },
        queue="",
    )


def registry_key(prefix: str) -> str:
    """Name the set of known queue names under `prefix` (outside every queue's slot)."""
    return f"{prefix}:queues"


def dashboard_series_key(prefix: str) -> str:
    """Name the dashboard's per-minute samples of the queues' counters under `prefix`
    (a sorted set of at most an hour of entries; redisq/dashboard/_data.py)."""
    return f"{prefix}:dashboard:minutes"
