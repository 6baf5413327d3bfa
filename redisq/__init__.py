"""redisq: a Redis-native job queue; every state transition is one atomic Lua script.

Quick start::

    import redisq

    store = redisq.connect("redis://localhost:6379")   # or "memory://" (in-process)
    store.enqueue("emails", {"to": "ada@example.com"})
    for job in store.claim("emails", worker="w1", count=10):
        ...                                              # do the work
        store.ack(job)
"""

from redisq._async.store import AsyncStore
from redisq._connect import connect, connect_async
from redisq._server import ServerConfigWarning
from redisq._sync.store import Store
from redisq._version import __version__
from redisq.errors import (
    BadRecord,
    ConfigurationError,
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    PayloadTooLarge,
    RedisqError,
    SchemaVersionError,
    ScriptReplyError,
    SerializationError,
    WrongKeyType,
)
from redisq.models import Job, JobState, Retention, Spec

__all__ = [  # noqa: RUF022  (grouped by topic, STYLE section 1)
    # connecting
    "AsyncStore",
    "Store",
    "connect",
    "connect_async",
    # data
    "Job",
    "JobState",
    "Retention",
    "Spec",
    # errors
    "BadRecord",
    "ConfigurationError",
    "InvalidArgument",
    "InvalidTransition",
    "JobNotFound",
    "LeaseLost",
    "PayloadTooLarge",
    "RedisqError",
    "SchemaVersionError",
    "ScriptReplyError",
    "SerializationError",
    "ServerConfigWarning",
    "WrongKeyType",
    "__version__",
]
