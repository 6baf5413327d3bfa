"""A workflow job's arguments: its parents' stored results (redisq.canvas, docs/workflows.md).

A job of a chain or chord carries ``"flow": {"from": [[queue, id], ...], "as": "one" | "list"}``
in its payload: before its handler runs, the worker reads its parents with one pipelined read
(the store's job read, which also finds a result kept after retention trimmed the record) and
passes the result of the one parent (a chain step) or the list of results (a chord's callback)
as the first argument. ``"keep": 1`` makes the worker store a job's result even when its task
does not store results (a child needs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redisq._core.queries import get
from redisq._core.tasks import parse_payload
from redisq.errors import ResultExpired
from redisq.models import Job, JobState

if TYPE_CHECKING:
    from redisq._sync.store import Store

__all__ = ["flow_arguments", "keeps_result"]

#: The payload key of a workflow job (redisq.canvas.FLOW_KEY).
FLOW_KEY = "flow"


def keeps_result(payload: Any) -> bool:
    """Whether a job's result must be stored because a child of its workflow reads it."""
    if type(payload) is not dict or len(payload) != 3:
        return False
    flow = payload.get(FLOW_KEY)
    return type(flow) is dict and bool(flow.get("keep"))


def _parents(flow: Any) -> tuple[list[tuple[str, str]], str] | None:
    if type(flow) is not dict or "from" not in flow:
        return None
    refs = flow["from"]
    mode = flow.get("as")
    if (
        not isinstance(refs, list)
        or not refs
        or mode not in ("one", "list")
        or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in refs
        )
    ):
        raise ValueError(f"the payload's flow entry is malformed: {flow!r}")
    return [(r[0], r[1]) for r in refs], mode


def _value(queue: str, jid: str, job: Job | None) -> Any:
    if job is None:
        raise ResultExpired(
            queue,
            jid,
            f"parent {jid!r} of queue {queue!r} is gone and its result expired (or it was"
            " deleted): a workflow's child must run within the result's lifetime"
            " (result_ttl_ms, one day by default)",
        )
    if job.state is JobState.COMPLETED:
        return job.result
    return None  # ended dead or cancelled under on_parent_failure "continue" or "ignore"


def flow_arguments(store: Store, payload: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments of a workflow job: its parents' results first (one read for all).

    Raises:
        ValueError: the payload is not a task call with a well-formed flow entry.
        ResultExpired: a parent's record and stored result are gone.
        Exception: the read failed (a connection error): the attempt fails and is retried.
    """
    args, kwargs = parse_payload({"args": payload.get("args"), "kwargs": payload.get("kwargs")})
    parents = _parents(payload.get(FLOW_KEY))
    if parents is None:
        return args, kwargs
    refs, mode = parents
    s = store.settings
    jobs = store._run(_read(s, refs))
    values = [_value(q, jid, job) for (q, jid), job in zip(refs, jobs, strict=True)]
    return [values[0] if mode == "one" else values, *args], kwargs


def _read(s: Any, refs: list[tuple[str, str]]) -> Any:
    jobs = yield [get(s, q, jid) for q, jid in refs]
    return jobs
