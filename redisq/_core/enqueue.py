"""Enqueue: validating and encoding jobs, and the enqueue script's calls."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from redisq._core.calls import (
    MAX_TIME_MS,
    Call,
    Op,
    Settings,
    check_reply,
    chunk_ranges,
    command,
    decoded,
    ok,
    queue_keys,
    registry,
    script_call,
)
from redisq._core.codec import round_trip, round_trip_many
from redisq._core.records import build_job, parse_record, with_changes
from redisq._core.tracectx import carrier, check_trace_context, pack_trace
from redisq._core.validate import (
    MAX_ATTEMPTS,
    MAX_DELAY_MS,
    MAX_GROUP_LENGTH,
    MAX_LEASE_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_id,
    check_int,
    check_optional_text,
)
from redisq._version import __version__
from redisq.errors import InvalidArgument, ScriptReplyError, WrongKeyType
from redisq.models import Job, JobState, Spec

P = ParamSpec("P")
R = TypeVar("R")

# --------------------------------------------------------------------------------------------
# enqueue

_SPEC_FIELDS = frozenset(
    {
        "id",
        "name",
        "priority",
        "delay_ms",
        "run_at_ms",
        "max_attempts",
        "lease_ms",
        "unique_key",
        "group",
        "expires_ms",
        "throttle_ms",
        "debounce_ms",
    }
)
#: The flow options (docs/expiry_dedupe.md): sent to the script after the jobs, 3 per job,
#: only in calls where some job has one (a call without them takes the script's lean path).
_FLOW_FIELDS = ("expires_ms", "throttle_ms", "debounce_ms")


@dataclass(frozen=True, slots=True)
class _Options:
    """Validated options of one job (or the shared defaults of a call)."""

    id: str | None
    name: str
    priority: int
    run_at_ms: int | None
    delay_ms: int
    max_attempts: int
    lease_ms: int | None
    unique_key: str
    #: The job's concurrency group ('' = none; docs/groups.md).
    group: str = ""
    #: The script's arguments for these options, as text (hiredis packs str faster than int):
    #: name, priority, run_at_ms, delay_ms, max_attempts, lease_ms, unique_key, group.
    argv: tuple[str, ...] = ()
    #: expires_ms, throttle_ms, debounce_ms as the script's text ('' = none); () = none given.
    flow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.argv:
            object.__setattr__(
                self,
                "argv",
                (
                    self.name,
                    str(self.priority),
                    "" if self.run_at_ms is None else str(self.run_at_ms),
                    str(self.delay_ms),
                    str(self.max_attempts),
                    "" if self.lease_ms is None else str(self.lease_ms),
                    self.unique_key,
                    self.group,
                ),
            )


@dataclass(slots=True)
class _Prepared:
    id: str
    payload: bytes
    value: Any  # the payload as readers will decode it
    opts: _Options
    #: The job's trace context (carrier dict), stored in front of its payload (_core/tracectx).
    trace: dict[str, str] | None = None


def check_keywords(unknown: dict[str, Any]) -> None:
    """Refuse keywords enqueue does not take (a misspelt option), naming the valid ones."""
    name = sorted(unknown)[0]
    valid = ", ".join(sorted(_SPEC_FIELDS))
    raise InvalidArgument(name, f"one of the keywords of enqueue: {valid}", unknown[name])


def keywords_checked(method: Callable[P, R]) -> Callable[P, R]:
    """Make a keyword `method` does not take an InvalidArgument (see check_keywords) instead
    of Python's TypeError, keeping its signature for type checkers and `inspect`."""
    known = set(inspect.signature(method).parameters)

    def refuse(kwargs: dict[str, Any]) -> None:
        if not known.issuperset(kwargs):
            check_keywords({k: v for k, v in kwargs.items() if k not in known})

    if inspect.iscoroutinefunction(method):
        # An async method stays a coroutine function (callers and tests check for that).
        run: Any = method

        @functools.wraps(method)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            refuse(kwargs)
            return await run(*args, **kwargs)

        return cast("Callable[P, R]", checked_async)

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        refuse(kwargs)
        return method(*args, **kwargs)

    return checked


def check_options(options: dict[str, Any], where: str = "options") -> None:
    """Refuse option names enqueue_many does not know (or takes per job), listing the valid ones."""
    if "id" in options:
        raise InvalidArgument(f"{where}.id", "given per job, with redisq.Spec(id=...)", options)
    valid = sorted(_SPEC_FIELDS - {"id"})
    unknown = sorted(set(options) - _SPEC_FIELDS - {"trace_context"})
    if unknown:
        raise InvalidArgument(f"{where}.{unknown[0]}", f"one of {', '.join(valid)}", options)


#: Validated options by their values (see _options): most calls repeat a few combinations.
_OPTIONS_CACHE: dict[tuple[Any, ...], _Options] = {}
_OPTIONS_CACHE_SIZE = 256
_PLAIN_TYPES = frozenset({int, str, type(None)})
_OPTION_NAMES = tuple(sorted(_SPEC_FIELDS - {"id"}))


def _options(values: dict[str, Any], where: str) -> _Options:
    """Validate enqueue options; `where` prefixes field names in errors ("", "options.").

    Options of plain types (int, str, None) are validated once per combination of values and
    remembered; the id, which changes with every job, is checked on its own each time. An
    option given as None is the same as one not given (its default).
    """
    key = tuple([values.get(name) for name in _OPTION_NAMES])
    if set(map(type, key)) <= _PLAIN_TYPES:
        job_id = values.get("id")
        if job_id is not None:
            check_id(f"{where}id", job_id)
        cached = _OPTIONS_CACHE.get(key)
        if cached is None:
            given = {k: v for k, v in values.items() if v is not None and k != "id"}
            cached = _check_options(given, where)
            if len(_OPTIONS_CACHE) >= _OPTIONS_CACHE_SIZE:
                _OPTIONS_CACHE.clear()
            _OPTIONS_CACHE[key] = cached
        if job_id is None:
            return cached
        return _Options(
            job_id,
            cached.name,
            cached.priority,
            cached.run_at_ms,
            cached.delay_ms,
            cached.max_attempts,
            cached.lease_ms,
            cached.unique_key,
            cached.group,
            cached.argv,
            cached.flow,
        )
    return _check_options({k: v for k, v in values.items() if v is not None}, where)


def _check_options(values: dict[str, Any], where: str) -> _Options:
    """Validate enqueue options; `where` prefixes field names in errors ("", "options.")."""
    job_id = values.get("id")
    if job_id is not None:
        check_id(f"{where}id", job_id)
    priority = check_int(f"{where}priority", values.get("priority", 0), PRIORITY_MIN, PRIORITY_MAX)
    delay_ms = check_int(f"{where}delay_ms", values.get("delay_ms", 0), 0, MAX_DELAY_MS)
    run_at_ms = values.get("run_at_ms")
    if run_at_ms is not None:
        check_int(f"{where}run_at_ms", run_at_ms, 0, MAX_TIME_MS)
        if delay_ms:
            raise InvalidArgument(
                f"{where}run_at_ms", "given without delay_ms (pick one)", run_at_ms
            )
    max_attempts = check_int(f"{where}max_attempts", values.get("max_attempts", 3), 1, MAX_ATTEMPTS)
    lease_ms = values.get("lease_ms")
    if lease_ms is not None:
        check_int(f"{where}lease_ms", lease_ms, 1, MAX_LEASE_MS)
    unique_key = values.get("unique_key")
    ukey = "" if unique_key is None else check_id(f"{where}unique_key", unique_key)
    name = check_optional_text(f"{where}name", values.get("name"))
    group = check_optional_text(f"{where}group", values.get("group"), MAX_GROUP_LENGTH)
    flow = _check_flow(values, where, ukey, delay_ms, run_at_ms)
    return _Options(
        job_id, name, priority, run_at_ms, delay_ms, max_attempts, lease_ms, ukey, group, (), flow
    )


def _check_flow(
    values: dict[str, Any], where: str, ukey: str, delay_ms: int, run_at_ms: int | None
) -> tuple[str, ...]:
    """Validate expires_ms, throttle_ms and debounce_ms; give their script arguments, or ()
    when none is set. Throttle and debounce act on a unique key and exclude each other;
    debounce sets the due time itself, so it takes neither delay_ms nor run_at_ms."""
    given = {f: values.get(f) for f in _FLOW_FIELDS}
    if all(v is None for v in given.values()):
        return ()
    for f, v in given.items():
        if v is not None:
            check_int(f"{where}{f}", v, 1, MAX_DELAY_MS)
    throttle, debounce = given["throttle_ms"], given["debounce_ms"]
    if throttle is not None and debounce is not None:
        raise InvalidArgument(
            f"{where}debounce_ms", "given without throttle_ms (pick one)", debounce
        )
    for f in ("throttle_ms", "debounce_ms"):
        if given[f] is not None and not ukey:
            raise InvalidArgument(
                f"{where}unique_key",
                f"set when {f} is given (the window dedupes repeats by their unique key)",
                None,
            )
    if debounce is not None and (delay_ms or run_at_ms is not None):
        field = "run_at_ms" if run_at_ms is not None else "delay_ms"
        raise InvalidArgument(
            f"{where}{field}",
            "left out when debounce_ms is given (the job waits debounce_ms)",
            values.get(field),
        )
    return tuple("" if v is None else str(v) for v in given.values())


def prepare(
    s: Settings, items: Sequence[Any], defaults: dict[str, Any], single: bool
) -> list[_Prepared]:
    """Validate and encode every job of a call before anything is sent.

    Items are payloads, or Specs whose options override `defaults`. The shared defaults are
    validated once; a Spec's options are validated with the defaults merged in (once per
    combination of values, see _options).
    """
    given = {k: v for k, v in defaults.items() if v is not None}
    trace_text = ""
    if "trace_context" in given:
        trace_text = check_trace_context(
            ("" if single else "options.") + "trace_context", given.pop("trace_context")
        )
    base = _options(given, "" if single else "options.")
    ids = os.urandom(16 * len(items)).hex()
    jobs: list[tuple[str, _Options]] = []
    payloads: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, Spec):
            merged = dict(given)
            for f in _SPEC_FIELDS:
                value = getattr(item, f)
                if value is not None:
                    merged[f] = value
            opts = _options(merged, "" if single else f"payloads[{i}].")
            payloads.append(item.payload)
        else:
            opts = base
            payloads.append(item)
        jobs.append((opts.id if opts.id is not None else ids[32 * i : 32 * i + 32], opts))
    encoded = round_trip_many(payloads, s.payload_limit)
    if encoded is None:
        # Some payload is refused: find the first one, for its error.
        for i, payload in enumerate(payloads):
            where = "" if single else f"payloads[{i}]."
            round_trip(f"{where}payload", payload, s.payload_limit, jobs[i][0])
        raise AssertionError("round_trip_many refused payloads that round_trip accepts")
    data, values = encoded
    if not single:
        _check_debounce_repeats(jobs, given)
    if trace_text:
        trace = carrier(trace_text)
        return [
            _Prepared(jid, pack_trace(trace_text, d), v, opts, trace)
            for (jid, opts), d, v in zip(jobs, data, values, strict=True)
        ]
    return [
        _Prepared(jid, d, v, opts) for (jid, opts), d, v in zip(jobs, data, values, strict=True)
    ]


def _check_debounce_repeats(jobs: Sequence[tuple[str, _Options]], given: dict[str, Any]) -> None:
    """Refuse one call that repeats a debounced unique key: each repeat replaces the payload of
    the one before, so they go in separate calls, in the order they happen."""
    seen: set[str] = set()
    for i, (_, opts) in enumerate(jobs):
        if opts.flow and opts.flow[2]:
            if opts.unique_key in seen:
                where = "options." if "unique_key" in given else f"payloads[{i}]."
                raise InvalidArgument(
                    f"{where}unique_key",
                    "different for each job of one call when debounce_ms is given"
                    " (enqueue the repeats one by one)",
                    opts.unique_key,
                )
            seen.add(opts.unique_key)


def _created(queue: str, p: _Prepared, now: int) -> Job:
    o = p.opts
    run_at = o.run_at_ms if o.run_at_ms is not None else now + o.delay_ms
    if o.flow and o.flow[2]:
        run_at = now + int(o.flow[2])  # debounce_ms sets the due time
    # Positional, in the order of Job's fields (see records.make_job).
    return build_job(
        p.id,
        queue,
        o.name or None,
        p.value,
        JobState.SCHEDULED if run_at > now else JobState.READY,
        o.priority,
        0,
        o.max_attempts,
        None,
        None,
        now,
        run_at,
        None,
        None,
        None,
        None,
        None,
        o.lease_ms,
        o.unique_key or None,
        p.trace,
    )


def _enqueue_args(batch: Sequence[_Prepared]) -> list[Any]:
    args: list[Any] = []
    for p in batch:
        args += (p.id, p.payload, *p.opts.argv)
    if any(p.opts.flow for p in batch):
        for p in batch:
            args += p.opts.flow or ("", "", "")
    return args


def _existing(queue: str, p: _Prepared, entry: Any, now: int) -> Job:
    """The Job of an existing-job entry: its stored record, or, when a throttle window's job
    is no longer stored (retention trimmed it, or it was deleted), a Job with its id built
    from this repeat, CANCELLED with last_error "throttled" (the repeat was ignored)."""
    job_id = entry[0].decode()
    if entry[1]:
        return parse_record(queue, job_id, entry[1])
    return with_changes(
        _created(queue, p, now),
        id=job_id,
        state=JobState.CANCELLED,
        last_error="throttled",
        finished_at_ms=now,
    )


def enqueue_many(
    s: Settings,
    queue: str,
    items: Sequence[Any],
    defaults: dict[str, Any],
    registered: set[str],
) -> Op[list[Job]]:
    """Enqueue jobs in calls of at most CHUNK jobs and CHUNK_BYTES of payloads; every item is
    validated before the first is sent.

    The queue goes into the registry first (outside its slot, so not in the script), the first
    time this client enqueues to it (`registered` remembers that): a refused SADD (an ACL
    without it, a key of another type) then writes nothing, and a registered queue whose jobs
    never came reads as an empty queue everywhere (`queues`, `counts`, `list`, `find`).
    The first call goes alone, so that a refusal (a key of the wrong type, another schema)
    writes no job; the rest are pipelined, so the server runs one call while the client sends
    the next. A call whose script handled only its first jobs (stored records of existing ids
    past the read budget) has the rest sent again.
    """
    keys = queue_keys(s.prefix, queue)
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidArgument("payloads", "a list of payloads or redisq.Spec items", items)
    prepared = prepare(s, items, defaults, single=len(items) == 1 and "id" in defaults)
    if not prepared:
        return []
    known = queue in registered
    if not known:
        # TYPE names what holds the registry key when it is not a set (the SADD behind it,
        # in the same round trip, is then refused without writing).
        yield [
            command(_registry_type(s), "TYPE", registry(s)),
            command(ok, "SADD", registry(s), queue),
        ]
        registered.add(queue)

    def call(first: int, stop: int) -> Call[tuple[list[Job], bool]]:
        # Each call's reply becomes its Jobs in the Call's parse, so a pipelining transport
        # builds one call's Jobs while the server runs the next.
        part = prepared[first:stop]
        return script_call(
            "enqueue",
            keys,
            _enqueued(queue, part),
            now_ms=s.now_arg(),
            lib_version=__version__,
            count=str(len(part)),
            jobs=_enqueue_args(part),
        )

    out: list[Job | None] = [None] * len(prepared)
    todo = chunk_ranges([len(p.payload) for p in prepared])
    new_queue = False
    alone = True
    while todo:
        group, todo = (todo[:1], todo[1:]) if alone or len(todo) == 1 else (todo, [])
        if len(group) == 1:
            replies = [(yield call(*group[0]))]
        else:
            replies = yield [call(*g) for g in group]
        alone = False
        again: list[tuple[int, int]] = []
        for (first, stop), (jobs, created) in zip(group, replies, strict=True):
            if not jobs:
                raise ScriptReplyError("enqueue handled no job of its call")
            out[first : first + len(jobs)] = jobs
            new_queue = new_queue or created
            if first + len(jobs) < stop:
                again.append((first + len(jobs), stop))
        todo = again + todo
    if new_queue and known:
        # The script created the queue's meta hash, though this client registered the queue
        # before: the server lost its data (a restart without persistence), and the registry
        # with it. Add it again (a client whose SADD went through once is allowed it).
        yield command(ok, "SADD", registry(s), queue)
    return [j for j in out if j is not None]


def enqueue_one(
    s: Settings, queue: str, payload: Any, options: dict[str, Any], registered: set[str]
) -> Op[Job]:
    """Enqueue one job: `enqueue_many` of one item, in one script call once the queue is
    known to this client, with no batch bookkeeping (the call a web request makes)."""
    keys = queue_keys(s.prefix, queue)
    if queue not in registered:
        first: list[Job] = yield from enqueue_many(s, queue, [payload], options, registered)
        return first[0]
    opts = _options(options, "")
    jid = opts.id if opts.id is not None else os.urandom(16).hex()
    data, value = round_trip("payload", payload, s.payload_limit, jid)
    prepared = _Prepared(jid, data, value, opts)
    if options.get("trace_context") is not None:
        trace_text = check_trace_context("trace_context", options["trace_context"])
        if trace_text:
            data = prepared.payload = pack_trace(trace_text, data)
            prepared.trace = carrier(trace_text)
    job: Job
    created: bool
    job, created = yield script_call(
        "enqueue",
        keys,
        _enqueued_one(queue, prepared),
        now_ms=s.now_arg(),
        lib_version=__version__,
        count="1",
        jobs=(jid, data, *opts.argv, *opts.flow),
    )
    if created:
        # The server lost its data (see enqueue_many): register the queue again.
        yield command(ok, "SADD", registry(s), queue)
    return job


def _enqueued_one(queue: str, p: _Prepared) -> Callable[[Any], tuple[Job, bool]]:
    """Parse the reply of a one-job enqueue: its Job, and whether it created the queue."""

    def parse(reply: Any) -> tuple[Job, bool]:
        check_reply(reply, queue)
        entries = reply[2]
        if not entries:
            raise ScriptReplyError("enqueue handled no job of its call")
        entry = entries[0]
        if entry == 0:
            return _created(queue, p, reply[1]), bool(reply[3])
        return _existing(queue, p, entry, reply[1]), bool(reply[3])

    return parse


def _registry_type(s: Settings) -> Callable[[Any], str]:
    def parse(reply: Any) -> str:
        found = decoded(reply)
        if found not in ("set", "none"):
            raise WrongKeyType(registry(s), found)
        return found

    return parse


def _enqueued(queue: str, batch: list[_Prepared]) -> Callable[[Any], tuple[list[Job], bool]]:
    """Parse an enqueue reply into the chunk's Jobs, and whether it created the queue."""

    def parse(reply: Any) -> tuple[list[Job], bool]:
        check_reply(reply, queue)
        now = reply[1]
        out: list[Job] = []
        # The script may have handled only the first jobs (the read budget): zip stops there.
        for p, entry in zip(batch, reply[2], strict=False):
            if entry == 0:
                out.append(_created(queue, p, now))
            elif isinstance(entry, int):
                out.append(out[entry - 1])
            else:
                out.append(_existing(queue, p, entry, now))
        return out, bool(reply[3])

    return parse
