"""redisq: a Redis-native job queue; every state transition is one atomic Lua script.

Quick start::

    import redisq

    store = redisq.connect("redis://localhost:6379")   # or "memory://" (in-process)
    store.enqueue("emails", {"to": "ada@example.com"})
    for job in store.claim("emails", worker="w1", count=10):
        ...                                              # do the work
        store.ack(job)

Tasks and workers::

    app = redisq.App("redis://localhost:6379")

    @app.task(queue="emails", max_attempts=5)
    def send(to: str) -> None: ...

    send.enqueue("ada@example.com")
    redisq.Worker(app, concurrency=8).run()              # until SIGTERM
"""

from redisq import backoff
from redisq._async.store import AsyncStore
from redisq._connect import connect, connect_async
from redisq._server import ServerConfigWarning
from redisq._sync.store import Store
from redisq._version import __version__
from redisq.app import App
from redisq.canvas import (
    Chain,
    ChainRef,
    Chord,
    ChordRef,
    Group,
    GroupRef,
    Signature,
    chain,
    chord,
    group,
)
from redisq.context import Context, current_context
from redisq.errors import (
    BadRecord,
    CommandDenied,
    ConfigurationError,
    InvalidArgument,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    LeaseLost,
    MissingExtra,
    PayloadTooLarge,
    RateLimited,
    RedisqError,
    ResultExpired,
    Retry,
    ScheduleNotFound,
    SchemaVersionError,
    ScriptReplyError,
    SerializationError,
    Snooze,
    TaskSignal,
    WorkerStartError,
    WrongKeyType,
)
from redisq.jobref import JobRef
from redisq.middleware import EnqueueRequest, JobOutcome, Middleware
from redisq.models import (
    Claimed,
    FlowState,
    Job,
    JobState,
    Migration,
    RateState,
    Retention,
    Schedule,
    ScheduleTicks,
    Spec,
    WorkerInfo,
)
from redisq.supervisor import Supervisor, load_app
from redisq.task import Task, TaskCall, TaskOptions
from redisq.worker import Worker, WorkerMetrics

__all__ = [  # noqa: RUF022  (grouped by topic, STYLE section 1)
    # connecting
    "AsyncStore",
    "Store",
    "connect",
    "connect_async",
    # data
    "Claimed",
    "Job",
    "JobState",
    "Migration",
    "FlowState",
    "RateState",
    "Retention",
    "Schedule",
    "ScheduleTicks",
    "Spec",
    "WorkerInfo",
    # tasks and workers
    "App",
    "Context",
    "JobRef",
    "Supervisor",
    "Task",
    "TaskCall",
    "TaskOptions",
    "Worker",
    "WorkerMetrics",
    "backoff",
    "current_context",
    "load_app",
    # workflows (docs/workflows.md)
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
    # hooks and middleware
    "EnqueueRequest",
    "JobOutcome",
    "Middleware",
    # signals raised by task handlers
    "RateLimited",
    "Retry",
    "Snooze",
    "TaskSignal",
    # errors
    "BadRecord",
    "CommandDenied",
    "ConfigurationError",
    "InvalidArgument",
    "InvalidTransition",
    "JobFailed",
    "JobNotFound",
    "LeaseLost",
    "MissingExtra",
    "PayloadTooLarge",
    "RedisqError",
    "ResultExpired",
    "ScheduleNotFound",
    "SchemaVersionError",
    "ScriptReplyError",
    "SerializationError",
    "ServerConfigWarning",
    "WorkerStartError",
    "WrongKeyType",
    "__version__",
]
