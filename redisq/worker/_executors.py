"""Where handlers run: a pool of threads, or asyncio tasks on one event loop.

Both executors take entries from `State.next` (which never lets more than `concurrency` run)
and report back through it. Neither talks to Redis: claims, renewals and outcomes
are the worker's other threads' business, so a handler that blocks its thread or its event
loop delays nothing but itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol

from redisq.worker._handlers import Runner, cancel_handler
from redisq.worker._state import Entry, Handoff, State
from redisq.worker._support import logger

__all__ = ["AsyncExecutor", "Executor", "ThreadExecutor"]


class Executor(Protocol):
    """Runs handlers."""

    def wake(self) -> None:
        """Entries wait in the state's `pending` (called without blocking)."""

    def cancel(self, entry: Entry) -> None:
        """Stop the handler of `entry` if that is possible (asyncio), else do nothing."""

    def shutdown(self, timeout: float) -> None:
        """Stop the executor; handlers still running in threads are left to finish."""


class ThreadExecutor:
    """`concurrency` daemon threads, each running one handler at a time.

    Each thread loops in `State.next`: it hands in the outcome of the job it ran and takes
    the next pending one under one lock acquisition, and sleeps only when nothing is
    pending. So a busy thread runs job after job without a thread switch, and an idle one
    is woken only when work arrives (one at a time: each thread that takes a job wakes
    another idle one if more jobs wait).

    The fetcher's loop moves between threads: when a waiting claim wakes an idle worker,
    the thread that received the jobs runs the first one itself (no thread switch before the
    handler starts) and then carries on here as a handler thread, while an idle handler
    thread takes over the fetcher's loop (`State.hand_over`, `Handoff.FETCH`).

    An ``async def`` handler runs on a private event loop in its thread and can be cancelled
    as in the async pool. A thread cannot be killed: a sync handler past its timeout, or still
    running after a stop's grace period, runs on; its job was already failed or released, so
    its late ack is refused by the store (and dropped here). The threads are daemons, so they
    do not keep the process alive after `Worker.run` returned.
    """

    def __init__(self, runner: Runner, concurrency: int, name: str) -> None:
        self._runner = runner
        self._state: State | None = None
        #: The fetcher's loop (`Fetcher.work`), run by a thread handed the role.
        self.fetch: Callable[[], Entry | None] | None = None
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-handler-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def bind(self, state: State) -> None:
        """Attach the state the threads take work from, and start them."""
        self._state = state
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """Nothing to do: `State.admit` wakes an idle thread itself."""

    def cancel(self, entry: Entry) -> None:
        """Cancel an async handler's task; a thread cannot be stopped (see the docstring)."""
        cancel_handler(entry)

    def adopt(self, entry: Entry) -> None:
        """Run `entry` (already marked running) in the calling thread, which then works as
        one more handler thread (the fetcher's thread, after `State.hand_over`)."""
        self._loop(entry)

    def _loop(self, first: Entry | None = None) -> None:
        state = self._state
        assert state is not None
        run = self._runner.run_sync
        entry = first if first is not None else state.next(None, None, block=True)
        while entry is not None:
            if entry is Handoff.FETCH:
                assert self.fetch is not None
                # Until the worker stops (None), or until a claim's first job is kept for
                # this thread (it runs it, and the loop moved to another thread).
                kept = self.fetch()
                entry = kept if kept is not None else state.next(None, None, block=True)
                continue
            try:
                outcome = run(entry)
            except Exception:  # a bug in the runner itself: never lose the slot
                logger.exception("job %s/%s: the handler runner failed", *entry.key)
                outcome = None
            entry = state.next(entry, outcome, block=True)

    def shutdown(self, timeout: float) -> None:
        """Ask the threads to end once idle; a handler still running is not waited for."""
        if self._state is not None:
            self._state.close()


class AsyncExecutor:
    """One event loop in its own thread; each handler is an asyncio task on it.

    Sync handlers run on a pool of `concurrency` threads. A handler past its timeout, or
    still running when a stop's grace period ends, is cancelled (an async handler at its next
    await; a sync one runs on in its thread).

    Given a `loop` (`Worker.arun`: the application's own, running), the handlers are tasks on
    it: no thread of its own, and the loop is neither stopped nor closed at shutdown.
    """

    def __init__(
        self,
        runner: Runner,
        concurrency: int,
        name: str,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._runner = runner
        self._state: State | None = None
        self._owned = loop is None
        self.loop = asyncio.new_event_loop() if loop is None else loop
        self._pool = concurrent.futures.ThreadPoolExecutor(
            concurrency, thread_name_prefix=f"{name}-sync"
        )
        runner.pool = self._pool
        if self._owned:
            self.loop.set_default_executor(self._pool)
        self._tasks: set[asyncio.Task[None]] = set()
        #: A _fill is scheduled on the loop (a hint: an extra _fill is harmless).
        self._filling = False
        self._thread = threading.Thread(target=self._run_loop, name=f"{name}-loop", daemon=True)

    def bind(self, state: State) -> None:
        """Attach the state the tasks report to, and start the loop's thread."""
        self._state = state
        if self._owned:
            self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn` on the loop and wait for it (awaiting what it returns); raise its error."""

        async def call() -> None:
            value = fn(*args)
            if inspect.isawaitable(value):
                await value

        asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def wake(self) -> None:
        """Start handlers for the pending entries, on the loop (thread-safe)."""
        if not self._filling:
            self._filling = True
            self.loop.call_soon_threadsafe(self._fill)

    def _fill(self) -> None:
        self._filling = False
        state = self._state
        assert state is not None
        while (entry := state.next(None, None, block=False)) is not None:
            self._spawn(entry)

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
        following = state.next(entry, outcome, block=False)
        if following is not None:
            self._spawn(following)

    def cancel(self, entry: Entry) -> None:
        """Cancel the handler's asyncio task (thread-safe)."""

        def cancel() -> None:
            cancel_handler(entry)

        # Through the loop: the task may not exist yet (its _spawn is queued before this).
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(cancel)

    async def _cancel_all(self, wait_s: float) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait_s)

    def shutdown(self, timeout: float) -> None:
        """Cancel what still runs, stop the loop and close it (a borrowed loop: only the
        handlers' tasks end; call from another thread than the loop's)."""
        if not self._owned:
            if not self.loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self._cancel_all(timeout), self.loop)
                try:
                    future.result(timeout + 1)
                except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                    logger.warning("some handler tasks did not end after cancellation")
            self._pool.shutdown(wait=False, cancel_futures=True)
            return
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
