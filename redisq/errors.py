"""The whole exception tree of redisq, and nothing else.

Every error redisq raises on purpose is a `RedisqError`. Connection and timeout errors of
redis-py pass through unchanged, so callers can keep their existing handling of those.
`TaskSignal` and its subclasses are raised *inside task handlers* by user code; they are not
errors of redisq and live outside the tree on purpose.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redisq.models import Job

__all__ = [
    "BadRecord",
    "CommandDenied",
    "ConfigurationError",
    "DependencyCycle",
    "DependencyNotFound",
    "InvalidArgument",
    "InvalidTransition",
    "JobFailed",
    "JobNotFound",
    "LeaseLost",
    "MissingExtra",
    "PayloadTooLarge",
    "RateLimited",
    "RedisqError",
    "ResultExpired",
    "Retry",
    "ScheduleNotFound",
    "SchemaVersionError",
    "ScriptReplyError",
    "SerializationError",
    "Snooze",
    "TaskSignal",
    "WorkerStartError",
    "WrongKeyType",
]


class RedisqError(Exception):
    """Raised for every error redisq detects; the root of the tree."""


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxstring = r.maxother = r.maxlong = 60
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = 5
    r.maxarray = 5
    return r


_REPR = _bounded_repr()


def _shown(value: object, width: int = 80) -> str:
    """Show a value in an error message: a repr cut to `width` characters, built in bounded
    time and depth whatever the value (deep or cyclic containers, huge strings or ints, a
    __repr__ that raises)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a __repr__ that raises, an int too long to print: name the type
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= width else text[: width - 3] + "..."


class ConfigurationError(RedisqError, ValueError):
    """Raised when a connection URL, client option or server setting cannot work."""


class MissingExtra(ConfigurationError, ImportError):
    """Raised when an option needs an optional extra of redisq that is not installed.

    Attributes:
        extra: the extra that provides it (``"metrics"``: ``pip install 'redisq[metrics]'``).
        name: the module that could not be imported (as on any ImportError).
    """

    def __init__(self, extra: str, feature: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {module} package, which is not installed: install it with"
            f" `pip install 'redisq[{extra}]'`"
        )
        self.extra = extra
        self.name = module


class InvalidArgument(RedisqError, ValueError):
    """Raised when an argument is out of range or of the wrong type; nothing was written.

    Attributes:
        field: the name of the offending argument (``"priority"``, ``"jobs[3].id"``).
        limit: the rule it broke, in words (``"an int in [-1000, 1000]"``).
        value: the value given (its repr is shortened in the message).
    """

    def __init__(self, field: str, limit: str, value: object = None) -> None:
        super().__init__(f"{field} must be {limit}; got {_shown(value)}")
        self.field = field
        self.limit = limit
        self.value = value


class SerializationError(RedisqError, TypeError):
    """Raised when a payload, result or progress value cannot be encoded as msgpack.

    Attributes:
        field: what was being encoded (``"payload"``, ``"result"``, ``"progress"``).
        job_id: the job concerned, when known.
    """

    def __init__(self, field: str, reason: str, job_id: str | None = None) -> None:
        super().__init__(
            f"{field} cannot be serialized with msgpack ({reason}); pass plain data: None, bool,"
            " int, float, str, bytes, and lists or dicts of those"
        )
        self.field = field
        self.job_id = job_id


class PayloadTooLarge(RedisqError, ValueError):
    """Raised when an encoded payload is larger than the configured limit; nothing was written.

    Attributes:
        field: what was too large (``"payload"``, ``"result"``...).
        size: the encoded size in bytes (a lower bound when encoding was cut short).
        limit: the configured limit in bytes.
    """

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(
            f"{field} is {size} bytes encoded, over the limit of {limit} bytes; store large data"
            " elsewhere and enqueue a reference, or raise payload_limit in redisq.connect()"
        )
        self.field = field
        self.size = size
        self.limit = limit


class JobNotFound(RedisqError, LookupError):
    """Raised when a job does not exist (never enqueued, deleted, or trimmed by retention).

    Attributes:
        job_id: the id looked for.
        queue: the queue looked in.
    """

    def __init__(self, queue: str, job_id: str, message: str | None = None) -> None:
        super().__init__(message or f"job {job_id!r} does not exist in queue {queue!r}")
        self.queue = queue
        self.job_id = job_id


class DependencyNotFound(JobNotFound):
    """Raised when `enqueue(..., depends_on=...)` names a parent that does not exist.

    Nothing was written. A parent must exist when its child is enqueued (enqueue the parents
    first); a completed parent whose record retention trimmed counts as missing.

    Attributes:
        job_id: the missing parent.
        queue: its queue.
        child_id: the job that was to depend on it.
    """

    def __init__(self, queue: str, job_id: str, child_id: str) -> None:
        super().__init__(
            queue,
            job_id,
            f"job {child_id!r} cannot depend on job {job_id!r}: it does not exist in queue"
            f" {queue!r}; enqueue the parent first",
        )
        self.child_id = child_id


class DependencyCycle(RedisqError, ValueError):
    """Raised when `depends_on` would make a job wait for itself; nothing was written.

    Attributes:
        job_id: the job.
        path: the ids of the cycle, starting and ending with `job_id`.
    """

    def __init__(self, job_id: str, path: list[str]) -> None:
        shown = " -> ".join(path)
        super().__init__(
            f"job {job_id!r} cannot depend on itself ({shown}); a job may depend only on jobs"
            " that exist already, so remove it from depends_on"
        )
        self.job_id = job_id
        self.path = path


class ScheduleNotFound(RedisqError, LookupError):
    """Raised when a schedule does not exist in its queue (never stored, or removed).

    Attributes:
        queue: the queue looked in.
        schedule_id: the id looked for.
    """

    def __init__(self, queue: str, schedule_id: str) -> None:
        super().__init__(
            f"schedule {schedule_id!r} does not exist in queue {queue!r}: list them with"
            " `redisq schedules`"
        )
        self.queue = queue
        self.schedule_id = schedule_id


class ResultExpired(JobNotFound):
    """Raised by `JobRef.result` when a job is gone and no stored result of it is left.

    A completed job's record is trimmed by the count and age limits of `Retention`; a
    result stored by its ack stays readable for ``result_ttl_ms`` (one day by default), then
    expires. The job may also have been deleted or purged.
    """


class LeaseLost(RedisqError):
    """Raised when the caller no longer holds the job's lease; nothing was changed.

    The lease was lost because another claim issued a newer fencing token (the lease expired
    and was reaped, the job was cancelled) or because its deadline has passed. The handler's
    work may run again elsewhere: at-least-once delivery.

    Attributes:
        job_id: the job concerned.
        token: the caller's (stale) token.
        reason: ``"stale token"`` or ``"lease expired"``.
        state: the job's current state when known.
    """

    def __init__(
        self, job_id: str, token: int | None, reason: str, state: str | None = None
    ) -> None:
        where = f" (the job is now {state})" if state else ""
        super().__init__(
            f"lease on job {job_id!r} with token {token} is no longer held: {reason}{where}"
        )
        self.job_id = job_id
        self.token = token
        self.reason = reason
        self.state = state


class InvalidTransition(RedisqError):
    """Raised when a job is not in a state that allows the operation; nothing was changed.

    Attributes:
        job_id: the job concerned.
        expected: the states the operation accepts.
        actual: the job's state.
    """

    def __init__(self, job_id: str, expected: str, actual: str) -> None:
        super().__init__(f"job {job_id!r} is {actual}; this operation needs it {expected}")
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class SchemaVersionError(RedisqError):
    """Raised when a queue was written by a redisq with another data layout version.

    Scripts refuse the queue before writing anything, so old and new workers can run side by
    side during a rolling deploy without corrupting data. A queue of the previous version is
    converted by `redisq migrate` (`Store.migrate`); while that runs, the queue's meta hash
    records ``migrating:<version>`` and every client refuses it.

    Attributes:
        found: the version recorded in the queue's meta hash.
        expected: the version this redisq speaks.
    """

    def __init__(self, found: str, expected: str) -> None:
        super().__init__(_schema_advice(found, expected))
        self.found = found
        self.expected = expected


def _schema_advice(found: str, expected: str) -> str:
    """Say what to do about a queue at schema `found` for a redisq that speaks `expected`."""
    if found == f"migrating:{expected}":
        return (
            f"the queue is being migrated to schema version {expected}, or its migration was"
            " interrupted; run `redisq migrate` again (it resumes where it stopped), then retry"
        )
    if found.startswith("migrating:"):
        version = found.removeprefix("migrating:")
        return (
            f"the queue is being migrated to schema version {version}, or its migration was"
            f" interrupted, and this redisq speaks version {expected}; finish the migration"
            f" with a redisq that speaks version {version} (`redisq migrate`)"
        )
    if found.isdigit() and expected.isdigit() and int(found) < int(expected):
        if int(found) == int(expected) - 1:
            return (
                f"the queue was written with schema version {found}, older than version"
                f" {expected} that this redisq speaks; stop every client of the old version,"
                " then run `redisq migrate` to convert the queue (or roll back to the old redisq)"
            )
        return (
            f"the queue was written with schema version {found}, and this redisq speaks"
            f" version {expected}; its `redisq migrate` converts only from version"
            f" {int(expected) - 1}, so roll back to a redisq that speaks version {found}"
            " (or purge the queue)"
        )
    return (
        f"the queue was written with schema version {found}, this redisq speaks version"
        f" {expected}; upgrade (or roll back) every client of the queue to one version"
    )


class WrongKeyType(RedisqError):
    """Raised when a key redisq owns holds a value of another type; nothing was written.

    Attributes:
        key: the key name.
        found: its Redis type.
    """

    def __init__(self, key: str, found: str) -> None:
        super().__init__(
            f"key {key!r} holds a {found}, not what redisq stores there; another program"
            " shares this prefix: pick another prefix or remove the key"
        )
        self.key = key
        self.found = found


class ScriptReplyError(RedisqError):
    """Raised when a script replies in an unexpected shape: always a bug in redisq."""


class BadRecord(RedisqError):
    """Raised when a stored job record does not parse (written by something other than redisq).

    The job is left as it is; delete it (``store.delete``) or repair it by hand.
    """

    def __init__(self, queue: str, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id!r} of queue {queue!r} has a corrupt record: {reason}")
        self.queue = queue
        self.job_id = job_id
        self.reason = reason


class JobFailed(RedisqError):
    """Raised when a job awaited with `JobRef.result` ended dead or cancelled.

    Attributes:
        job: the job's final snapshot.
        state: its final state (``JobState.DEAD`` or ``JobState.CANCELLED``).
        last_error: the error text of its last failure (a traceback for handler errors), or
            None.
    """

    def __init__(self, job: Job) -> None:
        error = job.last_error or ""
        first = error.strip().splitlines()[0] if error.strip() else "no error recorded"
        super().__init__(
            f"job {job.id!r} of queue {job.queue!r} ended {job.state} after {job.attempts}"
            f" attempt(s): {first}"
        )
        self.job = job
        self.state = job.state
        self.last_error = job.last_error


class CommandDenied(RedisqError, PermissionError):
    """Raised when the server's access control (ACL) refuses a command redisq sends.

    The Redis user lacks a command, or a key pattern, of the rule in docs/security.md. A
    denial inside a script stops the script where it happens: grant the whole rule, since a
    script refused after its first write leaves that write in place (Redis does not roll back).

    Attributes:
        command: the command refused, as ACL rules name it (``"sadd"``, ``"client|id"``), or
            None when the server does not say (Redis before 7.2, inside some scripts).
        key: the key the user may not access, when the refusal is about a key and the key is
            known; else None.
        keys_refused: True when the user may run the command but not on its keys.
        script: the name of redisq's script the refusal happened in, or None for a plain
            command.
        reason: the server's own message.
    """

    def __init__(
        self,
        command: str | None,
        *,
        key: str | None = None,
        keys_refused: bool = False,
        script: str | None = None,
        reason: str = "",
        near_key: str | None = None,
        candidates: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            _denied_message(command, key, keys_refused, script, reason, near_key, candidates)
        )
        self.command = command
        self.key = key
        self.keys_refused = keys_refused
        self.script = script
        self.reason = reason
        self._more = (near_key, candidates)

    def __reduce__(self) -> tuple[Any, ...]:
        near_key, candidates = self._more
        options = {
            "key": self.key,
            "keys_refused": self.keys_refused,
            "script": self.script,
            "reason": self.reason,
            "near_key": near_key,
            "candidates": candidates,
        }
        return (_rebuild_denied, (self.command, options))


def _rebuild_denied(command: str | None, options: dict[str, Any]) -> CommandDenied:
    return CommandDenied(command, **options)


def _denied_message(
    command: str | None,
    key: str | None,
    keys_refused: bool,
    script: str | None,
    reason: str,
    near_key: str | None,
    candidates: tuple[str, ...],
) -> str:
    """Say what the server refused, which part of the ACL rule is missing, and where to look."""
    where = f" inside redisq's script {script!r}" if script else ""
    if keys_refused:
        if key:
            what = f"key {key!r}"
        elif near_key:
            what = f"the keys of this call (such as {near_key!r})"
        else:
            what = "a key of this call"
        doing = f" with `{command}`" if command else ""
        prefix = _prefix_of(key or near_key or "")
        patterns = (
            f"`~{{{prefix}:*` and `~{prefix}:queues`"
            if prefix
            else "`~{<prefix>:*` and `~<prefix>:queues`"
        )
        head = f"the Redis user may not access {what}{doing}{where}"
        fix = f"its ACL rule needs the key patterns {patterns} of the store's prefix"
    elif command:
        head = f"the Redis user may not run `{command}`{where}"
        fix = f"its ACL rule lacks `+{command}`"
    else:
        runs = f" (the script runs {', '.join(candidates)})" if candidates else ""
        head = f"the Redis user was refused a command{where}, and this server does not say which"
        fix = f"its ACL rule lacks one of the commands redisq needs{runs}"
    said = f" (server: {reason})" if reason else ""
    return (
        f"{head}{said}: {fix}; docs/security.md in the redisq repository gives the whole rule"
        " a store and its workers need"
    )


def _prefix_of(key: str) -> str | None:
    """The store prefix a key belongs to: ``{p:q}:ready`` and ``p:queues`` give ``p``."""
    if key.startswith("{") and ":" in key:
        return key[1 : key.index(":")]
    if key.endswith(":queues"):
        return key.removesuffix(":queues") or None
    return None


# ------------------------------------------------------------------------------------------
# signals raised by task handlers (not errors of redisq)


def _check_delay(field: str, value: object, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if type(value) is not int or not 0 <= value <= _MAX_SIGNAL_DELAY_MS:
        what = "None or an int" if optional else "an int"
        raise InvalidArgument(field, f"{what} in [0, {_MAX_SIGNAL_DELAY_MS}] (ms)", value)
    return value


#: About one year, the store's longest delay.
_MAX_SIGNAL_DELAY_MS = 366 * 24 * 60 * 60 * 1000


class WorkerStartError(RedisqError):
    """Raised when an on_worker_start hook failed: the worker did not start.

    Attributes:
        hook: the hook's name.
    """

    def __init__(self, hook: str, error: BaseException) -> None:
        self.hook = hook
        super().__init__(
            f"on_worker_start hook {hook} failed ({type(error).__name__}: {error}); the worker"
            " did not start: fix the hook or what it opens (the hooks that had run got their"
            " on_worker_stop)"
        )


class TaskSignal(Exception):
    """Raised inside a task handler to tell the worker what to do with the job.

    Not a `RedisqError`: handlers raise these on purpose, and catching RedisqError in user
    code must not swallow them.
    """


class Retry(TaskSignal):
    """Raised by a handler to fail this attempt and try again: the attempt counts.

    Once the job's attempts are used up it is dead-lettered, as for any failure.

    Args:
        delay_ms: wait this long before the next attempt; None uses the task's backoff.
        reason: a short text recorded as the job's last_error.
    """

    def __init__(self, delay_ms: int | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested by the task")
        self.delay_ms = _check_delay("delay_ms", delay_ms, optional=True)
        self.reason = reason


class Snooze(TaskSignal):
    """Raised by a handler to put the job back for `delay_ms`: the attempt does not count.

    The worker releases the lease with a delay: the job is scheduled, its attempts go back
    to what they were before this run, and its last_error is kept. A job can snooze any
    number of times (to wait for a resource, a rate limit, a time window).

    Args:
        delay_ms: how long until the job may run again.
    """

    def __init__(self, delay_ms: int) -> None:
        super().__init__(f"snoozed for {delay_ms} ms")
        self.delay_ms: int = _check_delay("delay_ms", delay_ms, optional=False) or 0


class RateLimited(TaskSignal):
    """Raised by a handler that met a rate limit (an HTTP 429): hold this job's queue back.

    The job goes back to its place in the ready set without using an attempt (like a
    `Snooze`), and no worker claims a job of its queue for `delay_ms` (the queue's bucket,
    `Store.set_rate_limit`, is held until then on the Redis clock). A job with a rate key
    (or a group) holds only the jobs of its key instead (docs/rate_limits.md#per-key).

    Args:
        delay_ms: how long the queue is held back (for example the response's Retry-After).
    """

    def __init__(self, delay_ms: int) -> None:
        super().__init__(f"rate limited for {delay_ms} ms")
        self.delay_ms: int = _check_delay("delay_ms", delay_ms, optional=False) or 0
