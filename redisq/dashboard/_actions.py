"""The dashboard's actions: each one store operation (or a bounded batch of them)."""

from __future__ import annotations

import asyncio
from typing import Any

from redisq._async.store import AsyncStore
from redisq.dashboard import _data
from redisq.models import JobState

__all__ = ["ACTIONS", "BATCH", "do_action"]

#: Every action the dashboard can take; `authorize` is asked about each by this name.
ACTIONS = (
    "retry",
    "cancel",
    "delete",
    "pause",
    "resume",
    "purge",
    "retry_dead",
    "delete_dead",
    "pause_schedule",
    "resume_schedule",
    "run_schedule",
)

#: Jobs a bulk dead-letter action handles per click at most.
BATCH = 500


async def do_action(
    store: AsyncStore, action: str, queue: str | None, form: Any
) -> tuple[str, str]:
    """Run one action through the store; return ("ok" or "error", what the user reads)."""
    if queue is None:
        return "error", "no queue given"
    job_id = str(form.get("id", ""))
    if action == "retry":
        n = await store.retry_dead(queue, [job_id], limit=1)
        if n:
            return "ok", f"job {job_id} is ready again (from dead)"
        return "error", f"job {job_id} is not dead, so it was not retried"
    if action == "cancel":
        done = await store.cancel(queue, job_id)
        return (
            ("ok", f"cancelled job {job_id}")
            if done
            else (
                "error",
                f"job {job_id} was not cancelled: it has finished or does not exist",
            )
        )
    if action == "delete":
        done = await store.delete(queue, job_id)
        return (
            ("ok", f"deleted job {job_id}")
            if done
            else (
                "error",
                f"job {job_id} does not exist",
            )
        )
    if action == "pause":
        await store.pause(queue)
        return "ok", f"paused queue {queue}: workers claim nothing from it"
    if action == "resume":
        await store.resume(queue)
        return "ok", f"resumed queue {queue}"
    if action == "purge":
        state = str(form.get("state", ""))
        if str(form.get("confirm", "")) != queue:
            return "error", f"purge not done: type the queue's name ({queue}) to confirm"
        n = await store.purge(queue, JobState(state) if state else None)
        return "ok", f"purged {n:,} {state or 'all'} jobs from {queue}"
    if action in ("retry_dead", "delete_dead"):
        return await _bulk_dead(store, action, queue, form)
    schedule = str(form.get("schedule", ""))
    if action == "pause_schedule":
        await store.pause_schedule(schedule, queue=queue)
        return "ok", f"paused schedule {schedule}"
    if action == "resume_schedule":
        await store.resume_schedule(schedule, queue=queue)
        return "ok", f"resumed schedule {schedule}"
    if action == "run_schedule":
        new_id = await store.run_schedule_now(schedule, queue=queue)
        return "ok", f"schedule {schedule} enqueued job {new_id}"
    raise AssertionError(action)  # pragma: no cover - ACTIONS is checked above


async def _bulk_dead(store: AsyncStore, action: str, queue: str, form: Any) -> tuple[str, str]:
    """Retry or delete dead jobs: the selected ids, or every match, BATCH per call."""
    task = str(form.get("task", ""))
    error = str(form.get("error", ""))
    if form.get("all"):
        if not task and not error and action == "retry_dead":
            n = await store.retry_dead(queue, limit=BATCH)
            left = (await store.counts(queue)).get(JobState.DEAD, 0)
            return "ok", _batch_text("retried", n, left)
        jobs, _ = await _data.search_jobs(
            store, queue, JobState.DEAD, name=task, error=error, limit=BATCH
        )
        ids = [j.id for j in jobs]
    else:
        ids = [str(i) for i in form.getlist("ids")][:BATCH]
        if not ids:
            return "error", "no job selected"
    if action == "retry_dead":
        n = await store.retry_dead(queue, ids, limit=len(ids) or 1) if ids else 0
        verb = "retried"
    else:
        flags = await asyncio.gather(*(store.delete(queue, i) for i in ids))
        n = sum(1 for f in flags if f)
        verb = "deleted"
    left = (await store.counts(queue)).get(JobState.DEAD, 0)
    return "ok", _batch_text(verb, n, left)


def _batch_text(verb: str, n: int, left: int) -> str:
    more = f"; {left:,} dead jobs remain (press again for the next batch)" if left else ""
    return f"{verb} {n:,} dead jobs{more}"
