"""Workflows of tasks: `chain`, `group` and `chord` (issue 12, docs/workflows.md).

``task.s(*args, **kwargs)`` describes a call without enqueueing it (a `Signature`). A chain
runs its steps one after another, each getting the previous step's result as its first
argument; a group runs its signatures in parallel; a chord runs a group, then a callback that
gets the list of the group's results (in the group's order) as its first argument::

    flow = redisq.chain(fetch.s("https://example.com"), parse.s(), store.s())
    ref = flow.enqueue()          # every job at once; await flow.aenqueue() from asyncio
    ref.result(timeout=10)        # the last step's result

The jobs are written with `depends_on` links (a child waits until its parents completed),
in one atomic script call per queue (lua/enqueue_flow.lua) when the jobs share a queue, and
through the cross-queue path (lua/deps_link.lua, lua/enqueue_deps.lua) otherwise. The ids are
chosen when the workflow is built, so calling `enqueue` again (a retry after a timeout)
creates nothing twice.

Every job of a workflow stores its result, whatever its task's ``store_result`` (a child or
the handle reads it): its payload carries ``"flow": {"keep": 1}``. A child's payload names its
parents (``"from"``); the worker reads their stored results with one pipelined read before
running it (redisq/worker/_flow.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from redisq._core.deps import FlowJob, enqueue_flow
from redisq._core.tasks import make_payload
from redisq.errors import InvalidArgument
from redisq.jobref import JobRef

if TYPE_CHECKING:
    from redisq.app import App
    from redisq.task import Task, _CallOptions

__all__ = [
    "MAX_FLOW_JOBS",
    "Chain",
    "ChainRef",
    "Chord",
    "ChordRef",
    "Group",
    "GroupRef",
    "Signature",
    "chain",
    "chord",
    "group",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R4 = TypeVar("R4")
R5 = TypeVar("R5")
R6 = TypeVar("R6")

#: Most jobs in one workflow (a chord's callback takes at most 1,000 parents, and one script
#: call creates at most 1,000 jobs: a workflow of one queue under 1 MiB is one atomic call).
MAX_FLOW_JOBS = 1000

#: The payload key that carries a job's part in a workflow (read by the worker).
FLOW_KEY = "flow"


class Signature(Generic[P, R]):
    """A described call of a task, made by ``task.s(*args, **kwargs)``; not enqueued.

    In a chain, a step after the first gets the previous result as its first argument, so its
    signature leaves that argument out (``b.s()`` for ``def b(x)``). mypy checks that each
    step's first parameter takes the previous step's return type.

    Attributes:
        task: the task.
        args, kwargs: the arguments given.
    """

    __slots__ = ("_options", "args", "kwargs", "task")

    def __init__(
        self,
        task: Task[P, R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: _CallOptions,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self._options = options

    def __repr__(self) -> str:
        return f"<Signature {self.task.name}{self.args!r}>"

    def options(
        self,
        *,
        id: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        delay_ms: int | None = None,
        on_parent_failure: str | None = None,
    ) -> Signature[P, R]:
        """This signature with enqueue options (see `Task.options`): ``a.s(1).options(queue="b")``.

        `on_parent_failure` ("fail" by default, "continue", "ignore") applies to a step with
        parents: under "continue" and "ignore" a parent that ended dead or cancelled passes
        None in place of its result.
        """
        from redisq.task import _call_options

        extra = _call_options(
            id=id,
            priority=priority,
            max_attempts=max_attempts,
            queue=queue,
            delay_ms=delay_ms,
            on_parent_failure=on_parent_failure,
        )
        return Signature(self.task, self.args, self.kwargs, self._options.merged(extra))


class _Node:
    """One job of a workflow being built."""

    __slots__ = ("id", "keep", "mode", "parents", "queue", "sig")

    def __init__(self, sig: Signature[Any, Any], parents: list[_Node], mode: str | None) -> None:
        self.sig = sig
        opts = sig._options
        self.id = opts.id if opts.id is not None else os.urandom(16).hex()
        self.queue = opts.queue or sig.task.queue
        self.parents = parents
        self.mode = mode  # None, "one" (chain: the result) or "list" (chord: the results)
        # Every job of a workflow stores its result: a child reads it, or the handle returns
        # it (a chain's last step, a group's jobs, a chord's callback).
        self.keep = True

    def flow_job(self) -> FlowJob:
        task = self.sig.task
        _, options = task._job_options(replace(self.sig._options, id=self.id))
        options.pop("depends_on", None)
        policy = options.pop("on_parent_failure", "fail")
        payload = make_payload(self.sig.args, self.sig.kwargs)
        flow: dict[str, Any] = {}
        if self.keep:
            flow["keep"] = 1
        if self.mode is not None:
            flow["from"] = [[p.queue, p.id] for p in self.parents]
            flow["as"] = self.mode
        payload[FLOW_KEY] = flow
        parents = tuple((p.queue, p.id) for p in self.parents)
        return FlowJob(self.queue, payload, options, parents, policy)


def _signature(field: str, value: Any, prepend: bool) -> Signature[Any, Any]:
    if not isinstance(value, Signature):
        raise InvalidArgument(field, "a signature made by task.s(...)", value)
    args = (None, *value.args) if prepend else value.args
    try:
        value.task.check_arguments(args, value.kwargs)
    except TypeError as exc:
        what = " after the result passed in first" if prepend else ""
        raise InvalidArgument(
            field, f"arguments that fit task {value.task.name!r}{what} ({exc})", value.args
        ) from None
    return value


def _check_size(field: str, nodes: list[_Node]) -> None:
    if len(nodes) > MAX_FLOW_JOBS:
        raise InvalidArgument(field, f"at most {MAX_FLOW_JOBS} jobs", f"{len(nodes)} jobs")
    seen: set[tuple[str, str]] = set()
    app = nodes[0].sig.task.app
    for i, node in enumerate(nodes):
        if (node.queue, node.id) in seen:
            raise InvalidArgument(f"{field}[{i}].id", "an id used once in the workflow", node.id)
        seen.add((node.queue, node.id))
        if node.sig.task.app is not app:
            raise InvalidArgument(f"{field}[{i}]", "a task of the same App as the others", node.sig)


class _Workflow:
    """What chains, groups and chords share: their jobs, built once, and enqueueing them."""

    _nodes: list[_Node]

    @property
    def app(self) -> App:
        return self._nodes[0].sig.task.app

    @property
    def ids(self) -> list[str]:
        """The job ids, in order (fixed when the workflow was built)."""
        return [n.id for n in self._nodes]

    def _jobs(self) -> list[FlowJob]:
        return [n.flow_job() for n in self._nodes]

    def _enqueue(self) -> list[JobRef]:
        app = self.app
        store = app.store
        jobs = store._run(enqueue_flow(store.settings, self._jobs(), store._registered))
        return [JobRef(job, app) for job in jobs]

    async def _aenqueue(self) -> list[JobRef]:
        app = self.app
        store = app.async_store
        jobs = await store._run(enqueue_flow(store.settings, self._jobs(), store._registered))
        return [JobRef(job, app) for job in jobs]


# --------------------------------------------------------------------------------- handles


class _HasRefs(Protocol):
    @property
    def refs(self) -> list[JobRef]: ...


class _Cancels:
    """`cancel` for a workflow's handle: every job of it that has not finished."""

    __slots__ = ()

    def cancel(self: _HasRefs) -> int:
        """Cancel the workflow: each of its jobs that has not finished (waiting, ready,
        scheduled, or running: a running one's handler hears of it at once, see
        docs/cancel.md). The last jobs go first, so no step is released while the steps before
        it are cancelled. Returns how many this call cancelled; a second call cancels none."""
        return sum(ref.cancel() for ref in reversed(self.refs))

    async def acancel(self: _HasRefs) -> int:
        """`cancel` from asyncio."""
        cancelled = 0
        for ref in reversed(self.refs):
            cancelled += await ref.acancel()
        return cancelled


class ChainRef(_Cancels, Generic[R_co]):
    """The enqueued jobs of a chain: `refs` (one per step, in order) and `last`."""

    __slots__ = ("refs",)

    def __init__(self, refs: list[JobRef]) -> None:
        self.refs = refs

    def __repr__(self) -> str:
        return f"<ChainRef {len(self.refs)} steps, last {self.last.id}>"

    @property
    def last(self) -> JobRef:
        return self.refs[-1]

    def result(self, timeout: float | None = None) -> R_co:
        """Wait for the last step and return its result (see `JobRef.result`).

        Raises:
            JobFailed: the last step ended dead or cancelled (a failed step cancels the steps
                after it; the error names it).
        """
        value: R_co = self.last.result(timeout)
        return value

    async def aresult(self, timeout: float | None = None) -> R_co:  # noqa: ASYNC109
        """`result` from asyncio."""
        value: R_co = await self.last.aresult(timeout)
        return value


class GroupRef(_Cancels, Generic[R_co]):
    """The enqueued jobs of a group: `refs`, one per signature, in order."""

    __slots__ = ("refs",)

    def __init__(self, refs: list[JobRef]) -> None:
        self.refs = refs

    def __repr__(self) -> str:
        return f"<GroupRef {len(self.refs)} jobs>"

    def results(self, timeout: float | None = None) -> list[R_co]:
        """Wait for every job and return their results in the group's order.

        Args:
            timeout: seconds to wait in all; None waits for ever.

        Raises:
            JobFailed: a job ended dead or cancelled.
            TimeoutError: not all were final within `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[R_co] = []
        for ref in self.refs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(ref.result(left))
        return out

    async def aresults(self, timeout: float | None = None) -> list[R_co]:  # noqa: ASYNC109
        """`results` from asyncio (waits for the jobs concurrently)."""
        waits = [ref.aresult() for ref in self.refs]
        values = await asyncio.wait_for(asyncio.gather(*waits), timeout)
        return list(values)


class ChordRef(_Cancels, Generic[R_co]):
    """The enqueued jobs of a chord: `header` (the group's refs) and `callback`."""

    __slots__ = ("callback", "header")

    def __init__(self, refs: list[JobRef]) -> None:
        self.header = refs[:-1]
        self.callback = refs[-1]

    def __repr__(self) -> str:
        return f"<ChordRef {len(self.header)} jobs, callback {self.callback.id}>"

    @property
    def refs(self) -> list[JobRef]:
        """Every job: the group's, then the callback."""
        return [*self.header, self.callback]

    def result(self, timeout: float | None = None) -> R_co:
        """Wait for the callback and return its result (see `ChainRef.result`)."""
        value: R_co = self.callback.result(timeout)
        return value

    async def aresult(self, timeout: float | None = None) -> R_co:  # noqa: ASYNC109
        """`result` from asyncio."""
        value: R_co = await self.callback.aresult(timeout)
        return value


# ------------------------------------------------------------------------------- workflows


class Chain(_Workflow, Generic[R]):
    """Steps run one after another; made by `chain`."""

    def __init__(self, steps: tuple[Any, ...]) -> None:
        if not steps:
            raise InvalidArgument("steps", "at least one signature (task.s(...))", steps)
        nodes: list[_Node] = []
        for i, step in enumerate(steps):
            sig = _signature(f"steps[{i}]", step, i > 0)
            nodes.append(_Node(sig, nodes[-1:], "one" if nodes else None))
        _check_size("steps", nodes)
        self._nodes = nodes

    def __repr__(self) -> str:
        return f"<Chain {' | '.join(n.sig.task.name for n in self._nodes)}>"

    def enqueue(self) -> ChainRef[R]:
        """Enqueue every step (see the module doc); idempotent on the workflow's ids."""
        return ChainRef(self._enqueue())

    async def aenqueue(self) -> ChainRef[R]:
        """`enqueue` from asyncio."""
        return ChainRef(await self._aenqueue())


class Group(_Workflow, Generic[R]):
    """Signatures run in parallel; made by `group`."""

    def __init__(self, sigs: Any) -> None:
        if isinstance(sigs, (str, bytes, Signature)) or not isinstance(sigs, Iterable):
            raise InvalidArgument("sigs", "a list of signatures (task.s(...))", sigs)
        items = list(sigs)
        if not items:
            raise InvalidArgument("sigs", "at least one signature (task.s(...))", items)
        self._nodes = [
            _Node(_signature(f"sigs[{i}]", s, False), [], None) for i, s in enumerate(items)
        ]
        _check_size("sigs", self._nodes)

    def __repr__(self) -> str:
        return f"<Group of {len(self._nodes)}>"

    def enqueue(self) -> GroupRef[R]:
        """Enqueue every job (one atomic call per queue); idempotent on the workflow's ids."""
        return GroupRef(self._enqueue())

    async def aenqueue(self) -> GroupRef[R]:
        """`enqueue` from asyncio."""
        return GroupRef(await self._aenqueue())


class Chord(_Workflow, Generic[R]):
    """A group, then a callback that gets the list of its results; made by `chord`."""

    def __init__(self, header: Any, callback: Any) -> None:
        if not isinstance(header, Group):
            header = Group(header)
        sig = _signature("callback", callback, True)
        members = [_Node(n.sig, [], None) for n in header._nodes]  # a chord's own jobs
        nodes = [*members, _Node(sig, members, "list")]
        _check_size("jobs", nodes)
        self._nodes = nodes

    def __repr__(self) -> str:
        return f"<Chord of {len(self._nodes) - 1} then {self._nodes[-1].sig.task.name}>"

    def enqueue(self) -> ChordRef[R]:
        """Enqueue the group and the callback; idempotent on the workflow's ids."""
        return ChordRef(self._enqueue())

    async def aenqueue(self) -> ChordRef[R]:
        """`enqueue` from asyncio."""
        return ChordRef(await self._aenqueue())


# ------------------------------------------------------------------------------ builders


@overload
def chain(s1: Signature[..., R1], /) -> Chain[R1]: ...
@overload
def chain(s1: Signature[..., R1], s2: Signature[Concatenate[R1, ...], R2], /) -> Chain[R2]: ...
@overload
def chain(
    s1: Signature[..., R1],
    s2: Signature[Concatenate[R1, ...], R2],
    s3: Signature[Concatenate[R2, ...], R3],
    /,
) -> Chain[R3]: ...
@overload
def chain(
    s1: Signature[..., R1],
    s2: Signature[Concatenate[R1, ...], R2],
    s3: Signature[Concatenate[R2, ...], R3],
    s4: Signature[Concatenate[R3, ...], R4],
    /,
) -> Chain[R4]: ...
@overload
def chain(
    s1: Signature[..., R1],
    s2: Signature[Concatenate[R1, ...], R2],
    s3: Signature[Concatenate[R2, ...], R3],
    s4: Signature[Concatenate[R3, ...], R4],
    s5: Signature[Concatenate[R4, ...], R5],
    /,
) -> Chain[R5]: ...
@overload
def chain(
    s1: Signature[..., R1],
    s2: Signature[Concatenate[R1, ...], R2],
    s3: Signature[Concatenate[R2, ...], R3],
    s4: Signature[Concatenate[R3, ...], R4],
    s5: Signature[Concatenate[R4, ...], R5],
    s6: Signature[Concatenate[R5, ...], R6],
    /,
) -> Chain[R6]: ...
@overload
def chain(
    s1: Signature[..., Any],
    s2: Signature[..., Any],
    s3: Signature[..., Any],
    s4: Signature[..., Any],
    s5: Signature[..., Any],
    s6: Signature[..., Any],
    s7: Signature[..., Any],
    /,
    *rest: Signature[..., Any],
) -> Chain[Any]: ...
def chain(*steps: Any) -> Chain[Any]:
    """Steps that run one after another, each getting the previous result as its first
    argument: ``redisq.chain(a.s(1), b.s(), c.s())`` runs ``c(b(a(1)))`` as three jobs.

    mypy checks the steps' types for chains of up to 6 steps (longer ones are checked at run
    time only: their arguments must fit each task's signature).

    Raises:
        InvalidArgument: no step, a step that is not a signature, arguments that do not fit a
            task, more than MAX_FLOW_JOBS steps; nothing is written.
    """
    return Chain(steps)


def group(sigs: Iterable[Signature[..., R]]) -> Group[R]:
    """Signatures that run in parallel: ``redisq.group([a.s(1), a.s(2)]).enqueue().results()``.

    Raises:
        InvalidArgument: no signature, an item that is not one, or more than MAX_FLOW_JOBS.
    """
    return Group(sigs)


def chord(
    header: Group[R] | Iterable[Signature[..., R]],
    callback: Signature[Concatenate[list[R], ...], R2],
) -> Chord[R2]:
    """A group, then `callback` with the list of the group's results (in the group's order)
    as its first argument: ``redisq.chord([a.s(i) for i in range(100)], total.s())``.

    Raises:
        InvalidArgument: as `group`, or a callback that is not a signature; nothing is written.
    """
    return Chord(header, callback)
