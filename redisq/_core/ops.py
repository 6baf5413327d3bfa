"""Operations as pure Call builders: one function per script, plus the multi-step generators.

An operation validates its input (raising before anything is sent), then either returns one
`Call` or is a generator that yields Calls (or lists of Calls to pipeline) and receives their
replies (STYLE A3). The sync and asyncio clients only run what these build.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Generic, TypeVar

from redisq._core.backoff import exponential
from redisq._core.codec import DEFAULT_PAYLOAD_LIMIT, decode, encode, round_trip
from redisq._core.records import build_job, parse_entries, parse_record, with_changes
from redisq._core.scripts import ScriptSpec, script
from redisq._core.status import ScriptStatus, raise_for_status
from redisq._core.validate import (
    MAX_ATTEMPTS,
    MAX_DELAY_MS,
    MAX_LEASE_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_id,
    check_int,
    check_name,
    check_optional_text,
    check_state,
)
from redisq._version import __version__
from redisq.errors import BadRecord, InvalidArgument, SerializationError, WrongKeyType
from redisq.keys import QueueKeys
from redisq.models import Job, JobState, Migration, Retention, Spec

#: Store-side events worth an operator's eye (poison records met by claim).
_log = logging.getLogger("redisq.store")

__all__ = ["NOT_SET", "Call", "Op", "Settings", "queue_keys"]

T = TypeVar("T")

#: Jobs per script call in batch operations: far below Lua's unpack limit (about 8,000 values),
#: and small enough that one call stays well under a millisecond of server time.
CHUNK = 1_000
#: Most jobs one claim may lease.
MAX_CLAIM = 1_000
#: Error texts longer than this are cut (with a marker) before they reach Redis.
MAX_ERROR_LENGTH = 16 * 1024
#: Latest time accepted for run_at_ms (scores must stay exact integers below 2^53).
MAX_TIME_MS = 2**53 - 1
#: Most job records one migrate call converts.
MAX_MIGRATE_BATCH = 10_000


class _NotSet:
    """The type of NOT_SET: "argument not given" where None is a meaningful value."""

    def __repr__(self) -> str:
        return "NOT_SET"


#: Marks an argument that was not given (update's payload may be None).
NOT_SET: Any = _NotSet()


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One round trip: a script when `spec` is set, else the plain command in `args`."""

    spec: ScriptSpec | None
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]
    #: A blocking command (the wait): transports let `stop_waiting` cut it short, and then
    #: skip it (its parse gets None, as when it times out).
    blocking: bool = False


#: A multi-step operation: yields a Call (or a list of Calls to pipeline), receives the parsed
#: result (or the list of results), and returns its value.
Op = Generator["Call[Any] | list[Call[Any]]", Any, T]


@dataclass(frozen=True, slots=True)
class Settings:
    """Client-wide options that operations need (see `redisq.connect`)."""

    prefix: str = "redisq"
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT
    retention: Retention = field(default_factory=Retention)
    lease_ms: int = 30_000
    claim_memo_ms: int = 10_000
    housekeeping_batch: int = 100
    #: Test clock (ms); None = the Redis server clock. Production never sets it.
    clock: Callable[[], int] | None = None
    #: Redis Cluster: keys of different queues cannot share one command.
    cluster: bool = False
    #: Longest blocking call: below the socket timeout, so a wait never looks like a hang.
    max_block_ms: int = 60_000

    def now_arg(self) -> str:
        """Give scripts their clock override: '' means TIME on the server."""
        return "" if self.clock is None else str(self.clock())


def queue_keys(prefix: str, queue: Any) -> QueueKeys:
    """Build (and cache) the key names of a queue, validating the names."""
    if type(queue) is not str:
        check_name("queue", queue)  # raises; the cache below needs a hashable str
    return _queue_keys(prefix, queue)


@lru_cache(maxsize=4096)
def _queue_keys(prefix: str, queue: str) -> QueueKeys:
    return QueueKeys.build(prefix, queue)


@lru_cache(maxsize=8192)
def _key_list(name: str, keys: QueueKeys) -> tuple[str, ...]:
    return tuple(getattr(keys, k) for k in script(name).keys)


def script_call(name: str, keys: QueueKeys, parse: Callable[[Any], T], **argv: Any) -> Call[T]:
    """Bind a script's KEYS and ARGV by the names in its header (never by hand)."""
    spec = script(name)
    args: list[Any] = []
    for a in spec.argv:
        if a.rest:
            args.extend(argv[a.name])
        else:
            args.append(argv[a.name])
    if len(argv) != len(spec.argv):
        unknown = set(argv) - {a.name for a in spec.argv}
        raise TypeError(f"{name}: unknown script arguments {sorted(unknown)}")
    return Call(spec, list(_key_list(name, keys)), args, parse)


def command(parse: Callable[[Any], T], *args: Any) -> Call[T]:
    """Build a plain Redis command call (reads of job records and the queue registry)."""
    return Call(None, [], list(args), parse)


def _ok(reply: Any) -> Any:
    return reply


def _decoded(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def new_id() -> str:
    """Generate a job id: 32 random hex digits (128 bits)."""
    return os.urandom(16).hex()


def _check(reply: Any, queue: str, **context: Any) -> Any:
    if reply[0] != ScriptStatus.OK:
        raise_for_status(reply, queue=queue, **context)
    return reply


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
    }
)


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


@dataclass(frozen=True, slots=True)
class _Prepared:
    id: str
    payload: bytes
    value: Any  # the payload as readers will decode it
    opts: _Options


def check_options(options: dict[str, Any], where: str = "options") -> None:
    """Refuse option names enqueue_many does not know (or takes per job), listing the valid ones."""
    if "id" in options:
        raise InvalidArgument(f"{where}.id", "given per job, with redisq.Spec(id=...)", options)
    valid = sorted(_SPEC_FIELDS - {"id"})
    unknown = sorted(set(options) - _SPEC_FIELDS)
    if unknown:
        raise InvalidArgument(f"{where}.{unknown[0]}", f"one of {', '.join(valid)}", options)


def _options(values: dict[str, Any], where: str) -> _Options:
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
    return _Options(job_id, name, priority, run_at_ms, delay_ms, max_attempts, lease_ms, ukey)


def prepare(
    s: Settings, items: Sequence[Any], defaults: dict[str, Any], single: bool
) -> list[_Prepared]:
    """Validate and encode every job of a call before anything is sent.

    Items are payloads, or Specs whose options override `defaults`. The shared defaults are
    validated once; a Spec's options are validated with the defaults merged in.
    """
    base = _options(
        {k: v for k, v in defaults.items() if v is not None}, "" if single else "options."
    )
    ids = os.urandom(16 * len(items)).hex()
    out: list[_Prepared] = []
    for i, item in enumerate(items):
        where = "" if single else f"payloads[{i}]."
        if isinstance(item, Spec):
            merged = {k: v for k, v in defaults.items() if v is not None}
            for f in _SPEC_FIELDS:
                value = getattr(item, f)
                if value is not None:
                    merged[f] = value
            opts = _options(merged, where)
            payload = item.payload
        else:
            opts = base
            payload = item
        jid = opts.id if opts.id is not None else ids[32 * i : 32 * i + 32]
        data, value = round_trip(f"{where}payload", payload, s.payload_limit, jid)
        out.append(_Prepared(jid, data, value, opts))
    return out


def _created(queue: str, p: _Prepared, now: int) -> Job:
    o = p.opts
    run_at = o.run_at_ms if o.run_at_ms is not None else now + o.delay_ms
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
    )


def _enqueue_args(batch: Sequence[_Prepared]) -> list[Any]:
    args: list[Any] = []
    for p in batch:
        o = p.opts
        args += (
            p.id,
            p.payload,
            o.name,
            o.priority,
            "" if o.run_at_ms is None else o.run_at_ms,
            o.delay_ms,
            o.max_attempts,
            "" if o.lease_ms is None else o.lease_ms,
            o.unique_key,
        )
    return args


def enqueue_many(
    s: Settings,
    queue: str,
    items: Sequence[Any],
    defaults: dict[str, Any],
    registered: set[str],
) -> Op[list[Job]]:
    """Enqueue jobs in chunks of CHUNK; every item is validated before the first is sent.

    The first chunk goes alone, so that a refusal (a key of the wrong type, another schema)
    writes nothing; the rest are pipelined, so the server runs one chunk while the client
    sends the next. Then the queue is added to the registry (outside its slot, idempotently):
    the first time this client enqueues to it (`registered` remembers that), and whenever a
    script reports that it created the queue; never before, so a refused call writes nothing.
    """
    keys = queue_keys(s.prefix, queue)
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidArgument("payloads", "a list of payloads or redisq.Spec items", items)
    prepared = prepare(s, items, defaults, single=len(items) == 1 and "id" in defaults)
    if not prepared:
        return []
    if queue not in registered:
        # The registry is written after the jobs: make sure that write cannot fail first.
        found = yield command(_decoded, "TYPE", registry(s))
        if found not in ("set", "none"):
            raise WrongKeyType(registry(s), found)
    batches = [prepared[i : i + CHUNK] for i in range(0, len(prepared), CHUNK)]
    # Each chunk's reply becomes its Jobs in the Call's parse, so a pipelining transport builds
    # one chunk's Jobs while the server runs the next chunk.
    calls = [
        script_call(
            "enqueue",
            keys,
            _enqueued(queue, batch),
            now_ms=s.now_arg(),
            lib_version=__version__,
            count=len(batch),
            jobs=_enqueue_args(batch),
        )
        for batch in batches
    ]
    first = yield calls[0]
    chunks = [first]
    if len(calls) > 1:
        chunks += yield calls[1:]
    jobs: list[Job] = []
    new_queue = False
    for chunk_jobs, created_queue in chunks:
        jobs.extend(chunk_jobs)
        new_queue = new_queue or created_queue
    if new_queue or queue not in registered:
        # A new meta hash also means the registry may have lost the queue with the rest of the
        # data (a server restarted without persistence): add it again.
        yield command(_ok, "SADD", registry(s), queue)
        registered.add(queue)
    return jobs


def _enqueued(queue: str, batch: list[_Prepared]) -> Callable[[Any], tuple[list[Job], bool]]:
    """Parse an enqueue reply into the chunk's Jobs, and whether it created the queue."""

    def parse(reply: Any) -> tuple[list[Job], bool]:
        _check(reply, queue)
        now = reply[1]
        out: list[Job] = []
        for p, entry in zip(batch, reply[2], strict=True):
            if entry == 0:
                out.append(_created(queue, p, now))
            elif isinstance(entry, int):
                out.append(out[entry - 1])
            else:
                out.append(parse_record(queue, entry[0].decode(), entry[1]))
        return out, bool(reply[3])

    return parse


def registry(s: Settings) -> str:
    """Name the queue registry set."""
    return f"{s.prefix}:queues"


# --------------------------------------------------------------------------------------------
# claim and the lease transitions


def check_queues(queues: str | Sequence[str]) -> list[str]:
    """Validate the queue argument of claim: one name or a non-empty list of names."""
    if isinstance(queues, str):
        return [check_name("queue", queues)]
    if not isinstance(queues, (list, tuple)) or not queues:
        raise InvalidArgument("queues", "a queue name or a non-empty list of names", queues)
    return [check_name(f"queues[{i}]", q) for i, q in enumerate(queues)]


def claim(
    s: Settings,
    queues: str | Sequence[str],
    worker: str,
    lease_ms: int | None,
    count: int,
    turn: int,
    due_in: dict[str, int] | None = None,
    block_ms: int = 0,
) -> Op[list[Job]]:
    """Lease up to `count` jobs, starting the round at queue number `turn` (for fairness).

    For each queue that came up short, `due_in` receives the ms until its earliest scheduled
    job is due (-1: none), which `wait` uses to wake in time. With `block_ms`, the first
    claim is pipelined behind a blocking wait on the queues' wake sets (see `wait`): Redis
    runs it the moment the wait returns, so a woken worker gets its jobs in the same round
    trip. On Redis Cluster that wait covers the first queue only (one slot per command). When
    the wait times out with nothing found, the other queues are not claimed (idle cost).
    """
    names = check_queues(queues)
    check_name("worker", worker)
    lease = s.lease_ms if lease_ms is None else check_int("lease_ms", lease_ms, 1, MAX_LEASE_MS)
    check_int("count", count, 1, MAX_CLAIM)
    start = turn % len(names)
    order = names[start:] + names[:start]
    jobs: list[Job] = []
    for queue in order:
        call = script_call(
            "claim",
            queue_keys(s.prefix, queue),
            _ok,
            now_ms=s.now_arg(),
            worker=worker,
            count=count - len(jobs),
            lease_ms=lease,
            request_id=os.urandom(8).hex(),
            memo_ms=s.claim_memo_ms,
            batch=s.housekeeping_batch,
            dead_keep=s.retention.dead,
            dead_age_ms=s.retention.dead_age_ms,
        )
        timed_out = False
        if block_ms > 0 and queue is order[0]:
            waited = order[:1] if s.cluster else order
            woken, reply = yield [wait(s, waited, block_ms), call]
            timed_out = woken is None
        else:
            reply = yield call
        if reply[0] != ScriptStatus.PAUSED:
            _check(reply, queue)
            good, spoiled = _claimed_jobs(queue, reply)
            jobs.extend(good)
            if spoiled:
                yield [_bury(s, queue, *bad) for bad in spoiled]
            if due_in is not None:
                due_in[queue] = int(reply[2])
        # A wait that timed out signalled nothing: the claim behind it was a safety check of
        # its first queue (the round rotates, so each queue is checked in turn).
        if len(jobs) >= count or (timed_out and not jobs):
            break
    return jobs


def _claimed_jobs(queue: str, reply: list[Any]) -> tuple[list[Job], list[tuple[str, int, str]]]:
    """Parse a claim's ``id, record, ...`` (from reply[3]): the Jobs, and (id, token, why)
    for each leased record whose tail does not parse (the script checked only its head)."""
    try:
        return parse_entries(queue, reply, 3), []  # the usual case: every record parses
    except (BadRecord, SerializationError, ValueError):
        pass
    good: list[Job] = []
    spoiled: list[tuple[str, int, str]] = []
    for i in range(3, len(reply), 2):
        job_id, data = reply[i].decode(), reply[i + 1]
        try:
            good.append(parse_record(queue, job_id, data))
        except (BadRecord, SerializationError, ValueError) as exc:
            try:
                token = int(data.split(b"\n", 4)[3])  # the head parsed on the server
            except (ValueError, IndexError):
                continue  # cannot happen after the script's check; its lease runs out
            spoiled.append((job_id, token, str(exc)))
            _log.warning(
                "job %s of queue %s: its stored record does not parse (%s); it goes to the"
                " dead set as it is",
                job_id,
                queue,
                exc,
            )
    return good, spoiled


def _bury(s: Settings, queue: str, job_id: str, token: int, why: str) -> Call[Any]:
    """Dead-letter a job just claimed whose stored record does not parse (a poison record):
    no handler can run it, and it must not hold up the jobs claimed with it. The nack script
    rewrites only the record's head; the reply (the record) is not parsed."""
    text = _error_text(f"dead-lettered by claim: its stored record does not parse ({why})")
    return _nack_call(s, queue, job_id, token, text, 0, True, _ok)


def _jobs(jobs: Any, field: str) -> list[Job]:
    if not isinstance(jobs, (list, tuple)):
        raise InvalidArgument(field, "a list of Jobs returned by claim", jobs)
    # One pass without building a label per job (this runs for every ack of a worker); the
    # labels are made to name the first bad one.
    if all(isinstance(j, Job) and j.token is not None for j in jobs):
        return list(jobs)
    return [_held(j, f"{field}[{i}]") for i, j in enumerate(jobs)]


def _held(job: Any, where: str) -> Job:
    if not isinstance(job, Job):
        raise InvalidArgument(where, "a Job returned by claim", job)
    if job.token is None:
        raise InvalidArgument(f"{where}.token", "set: pass the Job that claim returned", job.token)
    return job


def ack_many(
    s: Settings,
    jobs: Sequence[Job],
    results: Sequence[Any],
    single: bool = False,
    snapshots: bool = True,
) -> Op[list[Job]]:
    """Complete leased jobs; one script call per queue and chunk, each all or nothing.

    Returns the completed snapshots in the order given, or nothing when `snapshots` is False.
    """
    held = [_held(jobs[0], "job")] if single else _jobs(jobs, "jobs")
    encoded = [
        b"" if r is None else encode("result", r, s.payload_limit, j.id)
        for j, r in zip(held, results, strict=True)
    ]
    by_queue: dict[str, list[int]] = {}
    for i, j in enumerate(held):
        by_queue.setdefault(j.queue, []).append(i)
    out: list[Job | None] = [None] * len(held)
    r = s.retention
    for queue, indexes in by_queue.items():
        keys = queue_keys(s.prefix, queue)
        for start in range(0, len(indexes), CHUNK):
            part = indexes[start : start + CHUNK]
            args: list[Any] = []
            for i in part:
                args += (held[i].id, held[i].token, encoded[i])
            reply = yield script_call(
                "ack",
                keys,
                _ok,
                now_ms=s.now_arg(),
                keep=r.completed,
                max_age_ms=r.completed_age_ms,
                batch=r.trim_batch,
                count=len(part),
                jobs=args,
            )
            if reply[0] != ScriptStatus.OK:  # (the per-job context is built only for errors)
                raise_for_status(
                    reply,
                    queue=queue,
                    job_ids=[held[i].id for i in part],
                    tokens=[held[i].token for i in part],
                )
            if not snapshots:
                continue
            now = reply[1]
            for n, i in enumerate(part):
                stored = reply[2][n]
                if stored != 0:  # acked before by this token (a retry): report what Redis holds
                    out[i] = parse_record(queue, held[i].id, stored)
                    continue
                out[i] = with_changes(
                    held[i],
                    state=JobState.COMPLETED,
                    finished_at_ms=now,
                    lease_deadline_ms=None,
                    result=decode(encoded[i]) if encoded[i] else None,
                )
    return [j for j in out if j is not None]


def _error_text(error: Any) -> bytes:
    """Encode an error text for last_error: UTF-8, at most MAX_ERROR_LENGTH bytes.

    Text that is not valid Unicode (lone surrogates from surrogateescape decoding) is kept
    with backslash escapes rather than refused: an error report must never fail.
    """
    if not isinstance(error, str):
        raise InvalidArgument("error", "a str", error)
    data = error.encode("utf-8", "backslashreplace")
    if len(data) > MAX_ERROR_LENGTH:
        marker = b"... [truncated]"
        cut = data[: MAX_ERROR_LENGTH - len(marker)].decode("utf-8", "ignore").encode()
        return cut + marker
    return data


def _record(queue: str, job_id: str, token: int | None) -> Callable[[Any], Job]:
    def parse(reply: Any) -> Job:
        _check(reply, queue, job_ids=[job_id], tokens=[token])
        return parse_record(queue, job_id, reply[1])

    return parse


def nack(s: Settings, job: Job, error: Any, delay_ms: int | None, dead: bool) -> Call[Job]:
    """Fail the current attempt: retry after `delay_ms` (None: exponential backoff), or die."""
    _held(job, "job")
    text = _error_text(error)
    if delay_ms is None:
        delay_ms = exponential(job.attempts)
    check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
    if not isinstance(dead, bool):
        raise InvalidArgument("dead", "a bool", dead)
    assert job.token is not None  # checked by _held
    parse = _record(job.queue, job.id, job.token)
    return _nack_call(s, job.queue, job.id, job.token, text, delay_ms, dead, parse)


def _nack_call(
    s: Settings,
    queue: str,
    job_id: str,
    token: int,
    error: bytes,
    delay_ms: int,
    dead: bool,
    parse: Callable[[Any], T],
) -> Call[T]:
    """The nack script's call, for validated arguments."""
    r = s.retention
    return script_call(
        "nack",
        queue_keys(s.prefix, queue),
        parse,
        now_ms=s.now_arg(),
        id=job_id,
        token=token,
        error=error,
        delay_ms=delay_ms,
        dead=1 if dead else 0,
        dead_keep=r.dead,
        dead_age_ms=r.dead_age_ms,
        batch=r.trim_batch,
    )


def renew_many(
    s: Settings, jobs: Sequence[Job], lease_ms: int | None, single: bool = False
) -> Op[list[Job | Exception]]:
    """Extend leases; each job's outcome is its new snapshot or the exception it earned."""
    held = [_held(jobs[0], "job")] if single else _jobs(jobs, "jobs")
    if lease_ms is not None:
        check_int("lease_ms", lease_ms, 1, MAX_LEASE_MS)
    out: list[Job | Exception] = []
    by_queue: dict[str, list[int]] = {}
    for i, j in enumerate(held):
        by_queue.setdefault(j.queue, []).append(i)
    results: dict[int, Job | Exception] = {}
    for queue, indexes in by_queue.items():
        keys = queue_keys(s.prefix, queue)
        for start in range(0, len(indexes), CHUNK):
            part = indexes[start : start + CHUNK]
            args: list[Any] = []
            for i in part:
                args += (held[i].id, held[i].token)
            reply = yield script_call(
                "renew",
                keys,
                _ok,
                now_ms=s.now_arg(),
                lease_ms="" if lease_ms is None else lease_ms,
                default_ms=s.lease_ms,
                count=len(part),
                jobs=args,
            )
            _check(reply, queue)
            for n, i in enumerate(part):
                status, deadline, state = reply[2][n], reply[3][n], reply[4][n]
                if status == ScriptStatus.OK:
                    results[i] = replace(held[i], lease_deadline_ms=deadline)
                elif status == ScriptStatus.BAD_RECORD:
                    why = f"the record in {keys.jobs} does not parse"
                    results[i] = BadRecord(queue, held[i].id, why)
                else:
                    try:
                        raise_for_status(
                            [status, 1, state],
                            queue=queue,
                            job_ids=[held[i].id],
                            tokens=[held[i].token],
                        )
                    except Exception as exc:  # collected per job, re-raised by renew()
                        results[i] = exc
    out = [results[i] for i in range(len(held))]
    return out


def release(s: Settings, job: Job, delay_ms: int = 0) -> Call[Job]:
    """Give the lease back without counting the attempt, ready now or after `delay_ms`."""
    _held(job, "job")
    check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
    return script_call(
        "release",
        queue_keys(s.prefix, job.queue),
        _record(job.queue, job.id, job.token),
        now_ms=s.now_arg(),
        id=job.id,
        token=job.token,
        delay_ms=delay_ms,
    )


def wait(s: Settings, queues: Sequence[str], timeout_ms: int) -> Call[str | None]:
    """Block on the queues' wake sets (BZPOPMIN) for up to `timeout_ms` (at least 1 ms).

    The reply names the queue whose set was signalled, or None when the time ran out. The
    caller has validated the names and chosen queues that may share one command (standalone
    servers: any; Redis Cluster: one queue per call, since each queue has its own slot).
    """
    by_key = {queue_keys(s.prefix, q).wake: q for q in queues}

    def parse(reply: Any) -> str | None:
        if not reply:
            return None
        return by_key.get(_decoded(reply[0]))

    seconds = f"{max(1, timeout_ms) / 1000:.3f}"
    return Call(None, [], ["BZPOPMIN", *by_key, seconds], parse, blocking=True)


def progress(s: Settings, job: Job, value: Any) -> Call[Job]:
    """Record progress for a job whose lease the caller holds."""
    _held(job, "job")
    data = encode("progress", value, s.payload_limit, job.id)

    def parse(reply: Any) -> Job:
        _check(reply, job.queue, job_ids=[job.id], tokens=[job.token])
        return replace(job, progress=decode(data))

    return script_call(
        "progress",
        queue_keys(s.prefix, job.queue),
        parse,
        now_ms=s.now_arg(),
        id=job.id,
        token=job.token,
        progress=data,
    )


def claim_and_ack(s: Settings, queue: str, worker: str) -> Call[Job | None]:
    """Take the best ready job and complete it in one script."""
    check_name("worker", worker)
    r = s.retention

    def parse(reply: Any) -> Job | None:
        if reply[0] == ScriptStatus.PAUSED:
            return None
        _check(reply, queue)
        jobs = parse_entries(queue, reply, 2)
        return jobs[0] if jobs else None

    return script_call(
        "claim_and_ack",
        queue_keys(s.prefix, queue),
        parse,
        now_ms=s.now_arg(),
        worker=worker,
        request_id=os.urandom(8).hex(),
        memo_ms=s.claim_memo_ms,
        batch=s.housekeeping_batch,
        done_keep=r.completed,
        done_age_ms=r.completed_age_ms,
        dead_keep=r.dead,
        dead_age_ms=r.dead_age_ms,
    )


def reap(s: Settings, queue: str, limit: int) -> Call[int]:
    """Return expired leases (and promote due scheduled jobs) of one queue."""
    check_int("limit", limit, 1, 100_000)

    def parse(reply: Any) -> int:
        _check(reply, queue)
        return int(reply[1]) + int(reply[2])

    return script_call(
        "reap",
        queue_keys(s.prefix, queue),
        parse,
        now_ms=s.now_arg(),
        limit=limit,
        dead_keep=s.retention.dead,
        dead_age_ms=s.retention.dead_age_ms,
    )


# --------------------------------------------------------------------------------------------
# management of waiting and finished jobs


def update(
    s: Settings,
    queue: str,
    job_id: str,
    priority: int | None,
    payload: Any,
    set_payload: bool,
    run_at_ms: int | None,
) -> Call[Job]:
    """Change a waiting job's priority, payload or due time."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    if priority is not None:
        check_int("priority", priority, PRIORITY_MIN, PRIORITY_MAX)
    if run_at_ms is not None:
        check_int("run_at_ms", run_at_ms, 0, MAX_TIME_MS)
    data = encode("payload", payload, s.payload_limit, job_id) if set_payload else b""

    def parse(reply: Any) -> Job:
        _check(reply, queue, job_ids=[job_id], expected_state="ready or scheduled")
        return parse_record(queue, job_id, reply[1])

    return script_call(
        "update",
        keys,
        parse,
        now_ms=s.now_arg(),
        id=job_id,
        priority="" if priority is None else priority,
        set_payload=1 if set_payload else 0,
        payload=data,
        run_at_ms="" if run_at_ms is None else run_at_ms,
    )


def _flag(queue: str, not_found: bool | None = None) -> Callable[[Any], bool]:
    def parse(reply: Any) -> bool:
        if not_found is not None and reply[0] == ScriptStatus.NOT_FOUND:
            return not_found
        _check(reply, queue)
        return bool(reply[1])

    return parse


def delete(s: Settings, queue: str, job_id: str) -> Call[bool]:
    """Remove a job in any state; True when it existed."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    return script_call("delete", keys, _flag(queue), id=job_id)


def cancel(s: Settings, queue: str, job_id: str) -> Call[bool]:
    """Cancel a job that has not finished; True when it was cancelled by this call."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    r = s.retention
    return script_call(
        "cancel",
        keys,
        _flag(queue, not_found=False),
        now_ms=s.now_arg(),
        id=job_id,
        request_id=os.urandom(8).hex(),
        keep=r.cancelled,
        max_age_ms=r.cancelled_age_ms,
        batch=r.trim_batch,
    )


def retry_dead(s: Settings, queue: str, ids: Iterable[str] | None, limit: int) -> Op[int]:
    """Replay dead jobs (the given ids, else the oldest `limit`) with a fresh attempt budget."""
    keys = queue_keys(s.prefix, queue)
    check_int("limit", limit, 1, 1_000_000)
    chosen: list[str] = []
    if ids is not None:
        if isinstance(ids, str):
            raise InvalidArgument("ids", "a list of job ids (not one str)", ids)
        chosen = [check_id(f"ids[{i}]", v) for i, v in enumerate(ids)][:limit]
    total = 0
    if ids is None:
        while total < limit:
            step = min(CHUNK, limit - total)
            reply = yield script_call(
                "retry_dead", keys, _ok, now_ms=s.now_arg(), limit=step, count=0, ids=[]
            )
            _check(reply, queue)
            total += int(reply[1])
            if int(reply[1]) < step:
                break
        return total
    for start in range(0, len(chosen), CHUNK):
        part = chosen[start : start + CHUNK]
        reply = yield script_call(
            "retry_dead", keys, _ok, now_ms=s.now_arg(), limit=len(part), count=len(part), ids=part
        )
        _check(reply, queue)
        total += int(reply[1])
    return total


def set_paused(s: Settings, queue: str, paused: bool) -> Call[None]:
    """Pause or resume claiming from a queue, for every worker."""
    keys = queue_keys(s.prefix, queue)

    def parse(reply: Any) -> None:
        _check(reply, queue)

    return script_call(
        "set_paused", keys, parse, lib_version=__version__, paused=1 if paused else 0
    )


def purge(s: Settings, queue: str, state: JobState | None) -> Op[int]:
    """Delete every job of a queue in `state` (None = every state), CHUNK per call."""
    keys = queue_keys(s.prefix, queue)
    checked = check_state("state", state)
    name = "" if checked is None else checked.value
    total = 0
    while True:
        reply = yield script_call("purge", keys, _ok, state=name, limit=CHUNK)
        _check(reply, queue)
        total += int(reply[1])
        if int(reply[1]) < CHUNK:
            return total


def lock(s: Settings, queue: str, job_id: str, worker: str, ttl_ms: int) -> Call[bool]:
    """Take a job's advisory lock (not re-entrant, expires after ttl_ms)."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    check_name("worker", worker)
    check_int("ttl_ms", ttl_ms, 1, MAX_DELAY_MS)
    return script_call("lock", keys, _flag(queue), id=job_id, owner=worker, ttl_ms=ttl_ms)


def unlock(s: Settings, queue: str, job_id: str, worker: str) -> Call[bool]:
    """Release a job's advisory lock if `worker` holds it."""
    keys = queue_keys(s.prefix, queue)
    check_id("id", job_id)
    check_name("worker", worker)
    return script_call("unlock", keys, _flag(queue), id=job_id, owner=worker)


# --------------------------------------------------------------------------------------------
# schema migration


def migrate(s: Settings, queue: str, batch: int, max_calls: int | None = None) -> Op[Migration]:
    """Convert one queue's records to the current layout, about `batch` per script call.

    The script marks the queue as migrating on its first call (every other script refuses it
    until the last call), and each call resumes from the cursor the previous one returned, so
    the whole queue is never converted in one call. `max_calls` stops early (tests: a
    migration left half done, as a killed `redisq migrate` leaves it); the result then says
    done=False.
    """
    keys = queue_keys(s.prefix, queue)
    check_int("batch", batch, 1, MAX_MIGRATE_BATCH)
    cursor = "0"
    found: str | None = None
    converted = skipped = bad = pending = calls = 0
    while True:
        reply = yield script_call("migrate", keys, _ok, cursor=cursor, batch=batch)
        _check(reply, queue)
        calls += 1
        if calls == 1:
            found = _decoded(reply[1]) or None
        step_cursor, done = _decoded(reply[2]), bool(reply[6])
        converted += int(reply[3])
        if done or step_cursor != cursor:
            # A finished step counts its records that were in layout 3 before that call,
            # which includes those the calls that scanned the step before converted.
            skipped += max(0, int(reply[4]) - pending)
            bad += int(reply[5])
            pending = 0
        else:
            pending += int(reply[3])
        cursor = step_cursor
        if done or (max_calls is not None and calls >= max_calls):
            return Migration(queue, found, converted, skipped, bad, done)


def migrate_all(s: Settings, batch: int) -> Op[list[Migration]]:
    """Migrate every queue of the registry in name order (see `migrate`)."""
    check_int("batch", batch, 1, MAX_MIGRATE_BATCH)
    names = yield command(_names, "SMEMBERS", registry(s))
    out: list[Migration] = []
    for name in names:
        out.append((yield from migrate(s, name, batch)))
    return out


def _names(reply: Any) -> list[str]:
    return sorted(_decoded(v) for v in reply)
