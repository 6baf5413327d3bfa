"""The lease holder's transitions: ack, nack, renew, release and progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from redisq._core.backoff import exponential
from redisq._core.calls import (
    CHUNK,
    MAX_ERROR_LENGTH,
    Call,
    Op,
    Settings,
    T,
    check_reply,
    chunk_ranges,
    ok,
    queue_keys,
    script_call,
)
from redisq._core.codec import round_trip
from redisq._core.records import changer, parse_record
from redisq._core.status import ScriptStatus, raise_for_status
from redisq._core.validate import (
    MAX_DELAY_MS,
    MAX_LEASE_MS,
    check_id,
    check_int,
    check_name,
)
from redisq.errors import BadRecord, InvalidArgument, ScriptReplyError
from redisq.models import Job, JobState

#: The largest fencing token (the meta hash's counter is a signed 64-bit integer).
MAX_TOKEN = 2**63 - 1
#: The snapshot of an acked job: (job, state, finished_at_ms, lease_deadline_ms, result).
_completed = changer("state", "finished_at_ms", "lease_deadline_ms", "result")


def _jobs(jobs: Any, field: str) -> list[Job]:
    if not isinstance(jobs, (list, tuple)):
        raise InvalidArgument(field, "a list of Jobs returned by claim", jobs)
    # One pass without building a label per job (this runs for every ack of a worker): the
    # fields sent to Redis have the types claim gives them (a str id that encodes as it is, an
    # int token, a str queue, checked with its keys). The labels are made to name a bad one.
    if all(
        isinstance(j, Job)
        and type(j.token) is int
        and 0 <= j.token <= MAX_TOKEN
        and type(j.id) is str
        and j.id.isascii()
        and type(j.queue) is str
        for j in jobs
    ):
        return list(jobs)
    return [held_job(j, f"{field}[{i}]") for i, j in enumerate(jobs)]


def held_job(job: Any, where: str) -> Job:
    """Check that `job` is a Job whose lease can be named to Redis: its id, queue and token.

    A Job made by hand, or changed with dataclasses.replace, is refused here (InvalidArgument
    naming the field) rather than failing in the client library or in a script.
    """
    if not isinstance(job, Job):
        raise InvalidArgument(where, "a Job returned by claim", job)
    if job.token is None:
        raise InvalidArgument(f"{where}.token", "set: pass the Job that claim returned", job.token)
    if type(job.token) is not int or not 0 <= job.token <= MAX_TOKEN:
        raise InvalidArgument(
            f"{where}.token",
            f"an int in [0, {MAX_TOKEN}]: pass the Job that claim returned",
            job.token,
        )
    check_id(f"{where}.id", job.id)
    check_name(f"{where}.queue", job.queue)
    return job


def _by_queue(s: Settings, held: list[Job], where: str, single: bool) -> dict[str, list[int]]:
    """Group the jobs' indexes by queue, checking every queue name before anything is sent.

    So a bad queue anywhere in the list refuses the whole call: no queue's jobs are changed.
    """
    by_queue: dict[str, list[int]] = {}
    first = held[0].queue if held else ""
    if all(j.queue == first for j in held):  # the usual case: one queue
        by_queue = {first: list(range(len(held)))} if held else {}
    else:
        for i, j in enumerate(held):
            by_queue.setdefault(j.queue, []).append(i)
    for queue, indexes in by_queue.items():
        try:
            queue_keys(s.prefix, queue)
        except InvalidArgument as exc:
            label = where if single else f"{where}[{indexes[0]}]"
            raise InvalidArgument(f"{label}.queue", exc.limit, queue) from None
    return by_queue


def result_ttls(
    s: Settings, count: int, result_ttl_ms: int | Sequence[int | None] | None
) -> list[int] | None:
    """Check ack's result_ttl_ms (one value, or one per job); None: the store's default."""
    if result_ttl_ms is None:
        return None
    if isinstance(result_ttl_ms, int) and not isinstance(result_ttl_ms, bool):
        check_int("result_ttl_ms", result_ttl_ms, 0, MAX_DELAY_MS)
        return [result_ttl_ms] * count
    if not isinstance(result_ttl_ms, (list, tuple)) or len(result_ttl_ms) != count:
        raise InvalidArgument(
            "result_ttl_ms", f"None, an int, or a list of {count} ints or Nones", result_ttl_ms
        )
    default = s.retention.result_ttl_ms
    return [
        default if t is None else check_int(f"result_ttl_ms[{i}]", t, 0, MAX_DELAY_MS)
        for i, t in enumerate(result_ttl_ms)
    ]


def ack_many(
    s: Settings,
    jobs: Sequence[Job],
    results: Sequence[Any],
    single: bool = False,
    snapshots: bool = True,
    ttls: list[int] | None = None,
) -> Op[list[Job]]:
    """Complete leased jobs; one script call per queue and chunk, each all or nothing.

    Every job, queue and result is checked (and encoded) before the first call. A job with a
    result keeps it for its entry of `ttls` (see `result_ttls`; None: the store's retention);
    jobs whose results have different TTLs go in separate calls. A queue's jobs go in calls of
    at most CHUNK jobs and CHUNK_BYTES of results; a call whose script handled only its first
    jobs (their stored records past the read budget) has the rest sent again. Returns the
    completed snapshots in the order given, or nothing when `snapshots` is False.
    """
    held = [held_job(jobs[0], "job")] if single else _jobs(jobs, "jobs")
    # Each result is encoded and read back before anything is sent: a value msgpack writes but
    # cannot read (a dict keyed by tuples) is refused here, not stored to break every read.
    checked = [
        (b"", None) if r is None else round_trip("result", r, s.payload_limit, j.id)
        for j, r in zip(held, results, strict=True)
    ]
    encoded = [data for data, _ in checked]
    any_result = any(encoded)
    # Every queue is checked before any call.
    queues = _by_queue(s, held, "job" if single else "jobs", single)
    r = s.retention
    default_ttl = r.result_ttl_ms
    by_queue: dict[tuple[str, int], list[int]] = {}
    if ttls is None:
        by_queue = {(queue, default_ttl): indexes for queue, indexes in queues.items()}
    else:
        for i, j in enumerate(held):
            ttl = ttls[i] if encoded[i] else default_ttl  # no result: any call will do
            by_queue.setdefault((j.queue, ttl), []).append(i)
    out: list[Job | None] = [None] * len(held)
    for (queue, result_ttl_ms), indexes in by_queue.items():
        keys = queue_keys(s.prefix, queue)
        if any_result:
            todo = chunk_ranges([len(encoded[i]) for i in indexes])
        else:  # (calls of CHUNK jobs)
            todo = [(a, min(a + CHUNK, len(indexes))) for a in range(0, len(indexes), CHUNK)]
        while todo:
            first, stop = todo.pop(0)
            part = indexes[first:stop]
            args: list[Any] = []
            for i in part:
                args += (held[i].id, held[i].token, encoded[i])
            reply = yield script_call(
                "ack",
                keys,
                ok,
                now_ms=s.now_arg(),
                keep=r.completed,
                max_age_ms=r.completed_age_ms,
                batch=r.trim_batch,
                result_ttl_ms=result_ttl_ms,
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
            handled = len(reply[2])
            if not 0 < handled <= len(part):
                raise ScriptReplyError(f"ack handled {handled} of {len(part)} jobs")
            if handled < len(part):
                todo.insert(0, (first + handled, stop))
            if not snapshots:
                continue
            now = reply[1]
            completed = JobState.COMPLETED
            for i, stored in zip(part, reply[2], strict=False):  # (the first `handled`)
                if stored != 0:  # acked before by this token (a retry): report what Redis holds
                    out[i] = parse_record(queue, held[i].id, stored)
                    continue
                out[i] = _completed(held[i], completed, now, None, checked[i][1])
    return [j for j in out if j is not None]


def error_text(error: Any) -> bytes:
    """Encode an error text for last_error: UTF-8, at most MAX_ERROR_LENGTH bytes.

    A longer text keeps its first half (the summary line comes first) and its last half (the
    end of a traceback: the failing frame and the exception) around a marker, so the attempt
    history (lua/lib/attempt_entry.lua) can keep both ends too. Text that is not valid
    Unicode (lone surrogates from surrogateescape decoding) is kept with backslash escapes
    rather than refused: an error report must never fail.
    """
    if not isinstance(error, str):
        raise InvalidArgument("error", "a str", error)
    data = error.encode("utf-8", "backslashreplace")
    if len(data) > MAX_ERROR_LENGTH:
        marker = b"\n... [truncated] ...\n"
        keep = MAX_ERROR_LENGTH - len(marker)
        head = data[: keep // 2].decode("utf-8", "ignore").encode()
        tail = data[len(data) - (keep - keep // 2) :].decode("utf-8", "ignore").encode()
        return head + marker + tail
    return data


def _record(queue: str, job_id: str, token: int | None) -> Callable[[Any], Job]:
    def parse(reply: Any) -> Job:
        check_reply(reply, queue, job_ids=[job_id], tokens=[token])
        return parse_record(queue, job_id, reply[1])

    return parse


def nack(s: Settings, job: Job, error: Any, delay_ms: int | None, dead: bool) -> Call[Job]:
    """Fail the current attempt: retry after `delay_ms` (None: exponential backoff), or die."""
    held_job(job, "job")
    text = error_text(error)
    if delay_ms is None:
        # The backoff grows with the attempt number the job carries.
        attempts = check_int("job.attempts", job.attempts, 0, MAX_TOKEN)
        delay_ms = exponential(attempts)
    check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
    if not isinstance(dead, bool):
        raise InvalidArgument("dead", "a bool", dead)
    assert job.token is not None  # checked by held_job
    parse = _record(job.queue, job.id, job.token)
    return nack_call(s, job.queue, job.id, job.token, text, delay_ms, dead, parse)


def nack_call(
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
    held = [held_job(jobs[0], "job")] if single else _jobs(jobs, "jobs")
    if lease_ms is not None:
        check_int("lease_ms", lease_ms, 1, MAX_LEASE_MS)
    by_queue = _by_queue(s, held, "job" if single else "jobs", single)
    results: dict[int, Job | Exception] = {}
    for queue, indexes in by_queue.items():
        keys = queue_keys(s.prefix, queue)
        todo = [(a, min(a + CHUNK, len(indexes))) for a in range(0, len(indexes), CHUNK)]
        while todo:
            first, stop = todo.pop(0)
            part = indexes[first:stop]
            args: list[Any] = []
            for i in part:
                args += (held[i].id, held[i].token)
            reply = yield script_call(
                "renew",
                keys,
                ok,
                now_ms=s.now_arg(),
                lease_ms="" if lease_ms is None else lease_ms,
                default_ms=s.lease_ms,
                count=len(part),
                jobs=args,
            )
            check_reply(reply, queue)
            handled = len(reply[2])
            if not 0 < handled <= len(part):
                raise ScriptReplyError(f"renew handled {handled} of {len(part)} jobs")
            if handled < len(part):  # the read budget: the rest go again
                todo.insert(0, (first + handled, stop))
            for n, i in enumerate(part[:handled]):
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
    return [results[i] for i in range(len(held))]


def release(s: Settings, job: Job, delay_ms: int = 0) -> Call[Job]:
    """Give the lease back without counting the attempt, ready now or after `delay_ms`."""
    held_job(job, "job")
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


def progress(s: Settings, job: Job, value: Any) -> Call[Job]:
    """Record progress for a job whose lease the caller holds."""
    held_job(job, "job")
    data, decoded_value = round_trip("progress", value, s.payload_limit, job.id)

    def parse(reply: Any) -> Job:
        check_reply(reply, job.queue, job_ids=[job.id], tokens=[job.token])
        return replace(job, progress=decoded_value)

    return script_call(
        "progress",
        queue_keys(s.prefix, job.queue),
        parse,
        now_ms=s.now_arg(),
        id=job.id,
        token=job.token,
        progress=data,
    )
