"""Operations as pure Call builders: one function per script, plus the multi-step generators.

An operation validates its input (raising before anything is sent), then either returns one
`Call` or is a generator that yields Calls (or lists of Calls to pipeline) and receives their
replies (STYLE A3). The sync and asyncio clients only run what these build.

This module gathers them under one name for the clients; they live by concern in
`calls` (what every call is built from), `enqueue`, `claim`, `finish` (the lease holder's
transitions) and `manage`.
"""

from __future__ import annotations

from redisq._core.calls import (
    CHUNK,
    MAX_CLAIM,
    MAX_ERROR_LENGTH,
    MAX_MIGRATE_BATCH,
    MAX_TIME_MS,
    NOT_SET,
    Call,
    Op,
    Settings,
    command,
    new_id,
    queue_keys,
    registry,
    script_call,
)
from redisq._core.cancels import CANCEL_SIGNAL_CAP, wait_cancels
from redisq._core.claim import check_queues, claim, claim_and_ack, reap, wait
from redisq._core.enqueue import check_options, enqueue_many, enqueue_one, prepare
from redisq._core.finish import ack_many, nack, progress, release, renew_many, result_ttls
from redisq._core.groups import flow_state, set_concurrency
from redisq._core.manage import (
    cancel,
    delete,
    lock,
    migrate,
    migrate_all,
    purge,
    retry_dead,
    set_paused,
    unlock,
    update,
)
from redisq._core.rates import rate_hold, rate_keys, rate_state, set_rate_limit
from redisq._core.schedules import (
    build_definition,
    remove_schedule,
    run_schedule_now,
    schedules,
    set_schedule_paused,
    tick_schedules,
    upsert_schedule,
    wait_schedules,
)
from redisq.models import FlowState, RateKeys, RateState

__all__ = [
    "CANCEL_SIGNAL_CAP",
    "CHUNK",
    "MAX_CLAIM",
    "MAX_ERROR_LENGTH",
    "MAX_MIGRATE_BATCH",
    "MAX_TIME_MS",
    "NOT_SET",
    "Call",
    "FlowState",
    "Op",
    "RateKeys",
    "RateState",
    "Settings",
    "ack_many",
    "build_definition",
    "cancel",
    "check_options",
    "check_queues",
    "claim",
    "claim_and_ack",
    "command",
    "delete",
    "enqueue_many",
    "enqueue_one",
    "flow_state",
    "lock",
    "migrate",
    "migrate_all",
    "nack",
    "new_id",
    "prepare",
    "progress",
    "purge",
    "queue_keys",
    "rate_hold",
    "rate_keys",
    "rate_state",
    "reap",
    "registry",
    "release",
    "remove_schedule",
    "renew_many",
    "result_ttls",
    "retry_dead",
    "run_schedule_now",
    "schedules",
    "script_call",
    "set_concurrency",
    "set_paused",
    "set_rate_limit",
    "set_schedule_paused",
    "tick_schedules",
    "unlock",
    "update",
    "upsert_schedule",
    "wait",
    "wait_cancels",
    "wait_schedules",
]
