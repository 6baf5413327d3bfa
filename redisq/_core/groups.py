"""Flow control by concurrency: a queue's cap on leases, and concurrency groups.

A job enqueued with ``group="tenant-42"`` waits in its group (lua/lib/groups.lua): claims
serve the groups of a queue round-robin (its ungrouped jobs take turns as one more group), and
lease at most `group_concurrency` jobs of one group at once. A queue's `concurrency` caps its
leases across every worker. Both are counted from the leases themselves (the leased set and
the groups' lease entries), which every script that ends a lease keeps true: a crashed
worker's slot comes back when its lease is reaped.
"""

from __future__ import annotations

from typing import Any

from redisq._core.calls import Call, Settings, check_reply, queue_keys, script_call
from redisq._version import __version__
from redisq.errors import InvalidArgument
from redisq.models import FlowState

__all__ = ["MAX_CONCURRENCY", "check_limit", "flow_state", "set_concurrency"]

#: The largest limit either setting takes (lua/set_concurrency.lua checks it again).
MAX_CONCURRENCY = 1_000_000


def check_limit(field: str, value: Any) -> int | None:
    """Validate a concurrency limit: an int in [1, MAX_CONCURRENCY], or None (no limit)."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidArgument(field, f"an int in [1, {MAX_CONCURRENCY:,}] or None", value)
    return value


def set_concurrency(s: Settings, queue: str, field: str, value: Any) -> Call[None]:
    """Set (or with None clear) `queue`'s cap on leases (`concurrency`) or its limit per
    group (`group_concurrency`), for every worker."""
    keys = queue_keys(s.prefix, queue)
    limit = check_limit(field, value)
    stored = {"concurrency": "conc", "group_concurrency": "gconc"}[field]

    def parse(reply: Any) -> None:
        check_reply(reply, queue)

    return script_call(
        "set_concurrency",
        keys,
        parse,
        lib_version=__version__,
        field=stored,
        limit="" if limit is None else str(limit),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def flow_state(s: Settings, queue: str, id: str | None = None) -> Call[FlowState]:
    """Read `queue`'s concurrency limits, what they hold back, and a job's group."""
    keys = queue_keys(s.prefix, queue)

    def parse(reply: Any) -> FlowState:
        check_reply(reply, queue)
        conc, gconc, ready, leased, g_ready, g_turns, g_leased, group, gl, turn = reply[1:]
        cap = int(conc) if _text(conc) else None
        ready = int(ready) + int(g_ready)
        return FlowState(
            cap,
            int(gconc) if _text(gconc) else None,
            ready,
            int(leased),
            int(g_ready),
            int(g_turns),
            int(g_leased),
            ready if cap is not None and int(leased) >= cap else 0,
            _text(group) or None,
            int(gl),
            bool(int(turn)),
        )

    return script_call("flow_state", keys, parse, id=id or "")
