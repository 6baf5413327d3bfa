"""Where handlers run: a pool of threads, or asyncio tasks on one event loop.

Both executors take entries from `State` (which never starts more than `concurrency`) and
report back with `State.handler_done`. Neither talks to Redis: claims, renewals and outcomes
are the worker's other threads' business, so a handler that blocks its thread or its event
loop delays nothing but itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Protocol

from redisq.worker._handlers import Runner
from redisq.worker._state import Entry, State
from redisq.worker._support import logger

__all__ = ["AsyncExecutor", "Executor", "ThreadExecutor"]


class Executor(Protocol):
    """Runs handlers."""

    def start(self, entry: Entry) -> None:
        """Run the handler of `entry` (called without blocking)."""

    def cancel(self, entry: Entry) -> None:
        """Stop the handler of `entry` if that is possible (asyncio), else do nothing."""

    def shutdown(self, timeout: float) -> None:
        """Stop the executor; handlers still running in threads are left to finish."""


class ThreadExecutor:
    """`concurrency` daemon threads, each running one handler at a time.

    A thread cannot be killed: a handler past its timeout, or still running after a stop's
    grace period, runs on; its job was already failed or released, so its late ack is refused
    by the store (and dropped here). The threads are daemons, so they do not keep the process
    alive after `Worker.run` returned.
    """

    def __init__(self, runner: Runner, concurrency: int, name: str) -> None:
        self._runner = runner
        self._state: State | None = None
        self._queue: queue.SimpleQueue[Entry | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-handler-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def bind(self, state: State) -> None:
        """Attach the state the threads report to, and start them."""
        self._state = state
        for thread in self._threads:
            thread.start()

    def start(self, entry: Entry) -> None:
        """Queue the entry for the next free thread (State guarantees there is one)."""
        self._queue.put(entry)

    def cancel(self, entry: Entry) -> None:
        """Threads cannot be cancelled: the handler runs on (see the class docstring)."""

    def _loop(self) -> None:
        state = self._state
        assert state is not None
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                outcome = self._runner.run_sync(entry)
            except Exception:  # a bug in the runner itself: never lose the slot
                logger.exception("job %s/%s: the handler runner failed", *entry.key)
                outcome = None
            state.handler_done(entry, outcome)

    def shutdown(self, timeout: float) -> None:
        """Ask the idle threads to end; wait a little for them."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout / max(1, len(self._threads)))


class AsyncExecutor:
    """One event loop in its own thread; each handler is an asyncio task on it.

    Sync handlers run through ``asyncio.to_thread`` on a pool of `concurrency` threads. A
    handler past its timeout, or still running when a stop's grace period ends, is cancelled
    (an async handler at its next await; a sync one runs on in its thread).
    """

    def __init__(self, runner: Runner, concurrency: int, name: str) -> None:
        self._runner = runner
        self._state: State | None = None
        self.loop = asyncio.new_event_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            concurrency, thread_name_prefix=f"{name}-sync"
        )
        self.loop.set_default_executor(self._pool)
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run_loop, name=f"{name}-loop", daemon=True)

    def bind(self, state: State) -> None:
        """Attach the state the tasks report to, and start the loop's thread."""
        self._state = state
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, entry: Entry) -> None:
        """Schedule the handler of `entry` on the loop (thread-safe)."""
        self.loop.call_soon_threadsafe(self._spawn, entry)

    def _spawn(self, entry: Entry) -> None:
        task = self.loop.create_task(self._run(entry), name=f"redisq:{entry.job.id}")
        entry.handle = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, entry: Entry) -> None:
        state = self._state
        assert state is not None
        try:
            outcome = await self._runner.run_async(entry)
        except BaseException:  # a bug in the runner itself: never lose the slot
            logger.exception("job %s/%s: the handler runner failed", *entry.key)
            outcome = None
        state.handler_done(entry, outcome)

    def cancel(self, entry: Entry) -> None:
        """Cancel the handler's asyncio task (thread-safe)."""

        def cancel() -> None:
            if entry.handle is not None:
                entry.handle.cancel()

        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(cancel)

    async def _cancel_all(self, wait_s: float) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait_s)

    def shutdown(self, timeout: float) -> None:
        """Cancel what still runs, stop the loop and close it."""
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._cancel_all(timeout), self.loop)
            try:
                future.result(timeout + 1)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                logger.warning("some handler tasks did not end after cancellation")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
