"""The worker runtime: `Worker` runs an App's tasks until it is stopped.

::

    worker = redisq.Worker(app)            # every queue of the app's tasks, the defaults
    worker.run()                           # until SIGTERM / SIGINT / stop()
    await worker.arun()                    # or inside your own event loop (docs/embedding.md)

Threads of one worker (pool="thread"; pool="async" replaces the handler threads with one
event loop running asyncio tasks):

- the fetcher claims jobs when handler slots are free and blocks on Redis otherwise. A claim
  takes the free slots plus the buffer: jobs claimed ahead, waiting for a handler. By default
  the buffer holds what the handlers finish in about 5 ms, from their measured run times
  (`_sizing.py`): hundreds for no-op jobs, none for 100 ms jobs; a fixed `prefetch`
  replaces it;
- handler threads (or asyncio tasks) run the tasks. With threads, the fetcher's loop moves:
  when a wait for work brings jobs to an idle worker, the thread that received them runs the
  first itself, with no thread switch before the handler starts, and an idle handler thread
  takes over the loop (`State.hand_over`);
- the keeper renews every lease in flight (lease_ms / 3, the buffer's included), enforces
  timeouts, releases what the buffer holds beyond its size once it waited 100 ms (the
  handlers became slower than the buffer was sized for), and reaps;
- the settler acks (batched), nacks and releases, retrying through Redis outages;
- `run` itself waits for a stop, then drains: release the buffer's jobs, let running
  handlers finish within the grace period, release the rest, flush the outcomes.

A process supervisor runs N workers by constructing one `Worker(app, **options)` per process:
everything that touches Redis is created in `run`, never in the constructor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redisq._core.rotation import Rotation
from redisq._core.validate import check_int, check_name
from redisq._sync.store import Store
from redisq.app import App
from redisq.errors import ConfigurationError, InvalidArgument, WorkerStartError
from redisq.middleware import Hooks, call_blocking, hook_name
from redisq.models import Job
from redisq.worker._cancels import watch_store
from redisq.worker._executors import AsyncExecutor, Executor, ThreadExecutor
from redisq.worker._fetcher import Fetcher
from redisq.worker._handlers import Runner
from redisq.worker._keeper import Keeper
from redisq.worker._registry import Heartbeat
from redisq.worker._schedules import Drivers, start_drivers
from redisq.worker._settler import Settler
from redisq.worker._sizing import MAX_BUFFER
from redisq.worker._state import Entry, Outcome, State
from redisq.worker._support import WorkerMetrics, frozen_heap, logger, stop_signals

if TYPE_CHECKING:
    from redisq.metrics import WorkerExporter

__all__ = ["Worker", "WorkerMetrics"]

_POOLS = ("thread", "async")
#: How long the final flush of outcomes may retry through an outage at stop (s).
_FLUSH_S = 10.0
#: The same after a second stop request (s).
_HURRIED_FLUSH_S = 1.0
#: How long the fetcher lets a handler thread it woke get going before claiming on (s).
_YIELD_S = 0.002
#: Longest wait for work of a burst worker while it holds jobs (ms): a job retried to ready
#: is claimed at once (its wake-up), and once the worker is idle it looks again this soon.
_BURST_WAIT_MS = 100


def _default_name() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "host"
    return f"{host}-{os.getpid()}-{random.randrange(16**4):04x}"


class Worker:
    """Runs the tasks of an App: claims their jobs, runs the handlers, settles the outcomes.

    Args:
        app: the App whose tasks run here; a job whose name is not one of them is
            dead-lettered with an error saying so.
        queues: the queues to work (default: every queue of the app's tasks).
        concurrency: handlers running at once (default 10 threads, or 100 asyncio tasks).
            The default suits quick jobs and handlers that wait a little (a query, an HTTP
            call); raise it for handlers that mostly wait (many slow calls at once: or use
            pool="async"). Handlers that compute in Python share one core however many
            threads run them: run more processes (`redisq.Supervisor`, ``--processes``).
        pool: ``"thread"`` (each handler in a thread) or ``"async"`` (one event loop; async
            handlers as tasks, sync handlers through ``asyncio.to_thread``).
        weights: queue weights for the weighted round-robin (default 1 each).
        strict: claim from the queues strictly in the order given instead.
        grace_ms: at stop, how long running handlers may take to finish before their jobs
            are released (given back without counting the attempt).
        reaper_interval_ms: mean time between reaps of the queues' expired leases (+-20%).
        name: the worker's name, recorded on claimed jobs (default host-pid-random).
        prefetch: a fixed number of jobs claimed beyond the free slots, waiting in memory
            with their leases renewed (released at once at stop). Default None: adaptive,
            about what the handlers finish in 5 ms by their recent run times (up to 1,000):
            quick jobs are claimed hundreds at a time, slow ones only for free handlers, so
            other workers get them; what waits 100 ms once the handlers turn slower is
            released (attempt not counted). 0 claims only for free handlers; a fixed
            number keeps that many waiting whatever the jobs take.
        idle_wait_ms: longest blocking wait on Redis when the queues are empty (5 s).
            Enqueues and due jobs wake the worker at once, and a stop cuts the wait short;
            the claim after each wait that timed out bounds how long a lost wake-up (a
            worker killed between its wake-up and its claim) can go unnoticed.
        handle_signals: when `run` is called on the main thread, stop on SIGTERM and SIGINT
            (a second signal releases the running jobs at once); `arun` never installs them.
        schedules: drive the periodic schedules of the worker's queues (store the app's
            declared ones at start, enqueue due ticks: see docs/schedules.md); False when a
            separate `redisq scheduler` does it.
        registry_ttl_ms: the TTL of the worker's record in the worker registry
            (`Store.workers`, ``redisq workers``), rewritten every third of it: a worker
            killed without a word drops out of the list after at most this long (30 s;
            1,000 to 86,400,000). 0 keeps the worker out of the registry.
        metrics_port: serve Prometheus metrics on this port at ``/metrics`` while `run`
            runs (0: any free port, see `metrics_url`); needs ``redisq[metrics]``. See
            docs/metrics.md. Default None: no metrics, nothing is measured.
        metrics_host: the address the metrics server listens on (all interfaces).
        burst: stop by itself once its queues are empty: when, with no job of this worker
            left in flight (running, waiting for a handler or for its outcome to be stored),
            a claim over its queues leases nothing. Scheduled jobs due by then were promoted
            by that claim and run; scheduled jobs due later (a retry's backoff included),
            jobs waiting for their parents, and the ready jobs of a paused queue do not keep
            it running. A queue that refuses claims, or whose rate limit holds ready jobs
            back, does: it is waited for as usual. See docs/cli.md (``--burst``).

    Raises:
        InvalidArgument: an option is out of range.
        ConfigurationError: there is nothing to work (no queues and no tasks).
        MissingExtra: metrics_port is given but prometheus-client is not installed.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | str | None = None,
        concurrency: int | None = None,
        pool: str = "thread",
        weights: Mapping[str, int] | None = None,
        strict: bool = False,
        grace_ms: int = 30_000,
        reaper_interval_ms: int = 10_000,
        name: str | None = None,
        prefetch: int | None = None,
        idle_wait_ms: int = 5_000,
        handle_signals: bool = True,
        schedules: bool = True,
        registry_ttl_ms: int = 30_000,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
        burst: bool = False,
    ) -> None:
        if not isinstance(app, App):
            raise InvalidArgument("app", "a redisq.App", app)
        if pool not in _POOLS:
            raise InvalidArgument("pool", "'thread' or 'async'", pool)
        if queues is None:
            names = app.task_queues
            if not names:
                raise ConfigurationError(
                    "the app has no tasks, so the worker has no queue to work: register tasks"
                    " before creating the Worker, or pass queues=[...]"
                )
        elif isinstance(queues, str):
            names = [queues]
        else:
            names = list(queues)
        if not names:
            raise InvalidArgument("queues", "None or a non-empty list of queue names", queues)
        for i, queue in enumerate(names):
            check_name(f"queues[{i}]", queue)
        if len(set(names)) != len(names):
            raise InvalidArgument("queues", "a list without repeated names", queues)
        if not isinstance(strict, bool):
            raise InvalidArgument("strict", "a bool", strict)
        if weights is not None:
            if strict:
                raise InvalidArgument("weights", "None when strict=True (pick one)", weights)
            if not isinstance(weights, Mapping):
                raise InvalidArgument("weights", "a dict of queue name -> int weight", weights)
            for queue, weight in weights.items():
                if queue not in names:
                    raise InvalidArgument(f"weights[{queue!r}]", f"one of {names}", queue)
                check_int(f"weights[{queue!r}]", weight, 1, 1000)
        default_concurrency = 10 if pool == "thread" else 100
        self.app = app
        self.queues = names
        self.pool = pool
        self.concurrency = check_int(
            "concurrency",
            default_concurrency if concurrency is None else concurrency,
            1,
            10_000,
        )
        self.weights = dict(weights or {})
        self.strict = strict
        self.grace_ms = check_int("grace_ms", grace_ms, 0, 24 * 60 * 60 * 1000)
        self.reaper_interval_ms = check_int(
            "reaper_interval_ms", reaper_interval_ms, 1, 24 * 60 * 60 * 1000
        )
        self.name = check_name("name", _default_name() if name is None else name)
        self.prefetch = None if prefetch is None else check_int("prefetch", prefetch, 0, MAX_BUFFER)
        self.idle_wait_ms = check_int("idle_wait_ms", idle_wait_ms, 1, 60_000)
        if not isinstance(handle_signals, bool):
            raise InvalidArgument("handle_signals", "a bool", handle_signals)
        self.handle_signals = handle_signals
        if not isinstance(schedules, bool):
            raise InvalidArgument("schedules", "a bool", schedules)
        self.schedules = schedules
        if registry_ttl_ms != 0:
            check_int("registry_ttl_ms", registry_ttl_ms, 1_000, 24 * 60 * 60 * 1000)
        self.registry_ttl_ms = registry_ttl_ms
        self.metrics_port = (
            None if metrics_port is None else check_int("metrics_port", metrics_port, 0, 65_535)
        )
        if not isinstance(metrics_host, str) or not metrics_host:
            raise InvalidArgument("metrics_host", "an address to listen on", metrics_host)
        self.metrics_host = metrics_host
        if not isinstance(burst, bool):
            raise InvalidArgument("burst", "a bool", burst)
        self.burst = burst
        #: Set once a burst worker found its queues empty (it then stops by itself).
        self.drained = False
        if self.metrics_port is not None:
            from redisq.metrics import require_prometheus

            require_prometheus("metrics_port (Prometheus metrics)")
        #: The metrics server while `run` runs (see metrics_port).
        self._exporter: WorkerExporter | None = None
        self.metrics = WorkerMetrics()
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._started = False
        self._finished = threading.Event()
        self._lock = threading.Lock()
        #: Called after every stop request (`arun` wakes its event loop with it).
        self._on_stop: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.name!r} queues={self.queues} pool={self.pool}>"

    @property
    def metrics_url(self) -> str | None:
        """The URL of this worker's ``/metrics`` while `run` serves it, else None."""
        exporter = self._exporter
        return None if exporter is None else exporter.url

    @property
    def running(self) -> bool:
        """Tell whether `run` is under way (started and not yet returned)."""
        return self._started and not self._finished.is_set()

    def stop(self, grace: bool = True) -> None:
        """Ask the worker to stop; returns at once (thread-safe, signal-safe).

        The first call stops claiming and lets running handlers finish within grace_ms; a
        second call (or ``grace=False``) releases the running jobs at once.
        """
        if grace and not self._stop.is_set():
            logger.info("worker %s: stopping (grace %d ms)", self.name, self.grace_ms)
            self._stop.set()
        else:
            logger.info("worker %s: stopping now; releasing the running jobs", self.name)
            self._stop.set()
            self._hurry.set()
        notify = self._on_stop
        if notify is not None:
            notify()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until `run` has returned; True if it did within `timeout`."""
        return self._finished.wait(timeout)

    # ------------------------------------------------------------------------------ run

    def run(self) -> None:
        """Work until stopped (SIGTERM, SIGINT or `stop`), then drain and return.

        While it runs, the objects that existed when it started are frozen out of the
        garbage collector's passes (`gc.freeze`; undone when the last worker of the
        process returns): a full collection then walks the jobs in flight, not the whole
        application again.

        Raises:
            RuntimeError: the worker already ran (make a new one).
            ConfigurationError: the metrics port cannot be bound (nothing was claimed).
        """
        self._begin_run()
        with stop_signals(self.handle_signals, self._on_signal), frozen_heap():
            try:
                if self.metrics_port is not None:
                    from redisq.metrics import WorkerExporter

                    # Bound before anything is claimed: a port in use fails the start.
                    self._exporter = WorkerExporter(self, self.metrics_host, self.metrics_port)
                store = self.app.connect()
                try:
                    self._run(store)
                finally:
                    store.close()
            finally:
                if self._exporter is not None:
                    self._exporter.close()
                    self._exporter = None
                self._finished.set()

    def _begin_run(self) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("a Worker runs once; create a new Worker to run again")
            self._started = True

    def _run(self, store: Store) -> None:
        runtime = self._start(store, None)
        while not self._stop.wait(0.5):
            pass
        self._end(runtime)

    async def arun(self) -> None:
        """Work inside the running event loop until stopped, then drain and return.

        For applications that own their event loop (a web app's lifespan, docs/embedding.md).
        The worker's own threads (fetcher, keeper, settler; handler threads with
        pool="thread") run as with `run`; with pool="async" the handlers are tasks on this
        loop (sync handlers on a pool of `concurrency` threads). No signal handler is
        installed (the application owns them), and the heap is not frozen (see `run`).

        Stops when `stop` is called (from any thread, this loop's included) or when the task
        awaiting it is cancelled. Either way it stops as `run` does at SIGTERM: claims stop,
        prefetched jobs are released, running handlers finish within grace_ms and what still
        runs is then released, outcomes are flushed, on_worker_stop hooks run; only then
        does it return. A cancel waits for that drain (a second cancel, like a second stop
        request, releases the running jobs at once) and then raises CancelledError, as a
        cancelled task should; after `stop` it returns None.

        Raises:
            RuntimeError: the worker already ran (make a new one).
            WorkerStartError: an on_worker_start hook failed (nothing was claimed).
            ConfigurationError: the metrics port cannot be bound (nothing was claimed).
            asyncio.CancelledError: the task was cancelled (after the drain).
        """
        self._begin_run()
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(stopped.set)

        self._on_stop = notify
        if self._stop.is_set():
            stopped.set()
        cancelled = False

        def on_cancel() -> None:
            # The first cancel is a stop request (none if one came already); a second one
            # releases the running jobs at once.
            nonlocal cancelled
            if cancelled:
                self.stop(grace=False)
            elif not self._stop.is_set():
                self.stop()
            cancelled = True

        try:
            runtime_of: tuple[Store, _Runtime] = await _finish(
                _in_thread(loop, lambda: self._open(loop), f"redisq-{self.name}-start"),
                on_cancel,
            )
            store, runtime = runtime_of
            try:
                if not cancelled:
                    try:
                        await stopped.wait()
                    except asyncio.CancelledError:
                        on_cancel()
                await _finish(
                    _in_thread(loop, lambda: self._end(runtime), f"redisq-{self.name}-stop"),
                    on_cancel,
                )
            finally:
                store.close()
                self._close_exporter()
        finally:
            self._on_stop = None
            self._finished.set()
        if cancelled:
            raise asyncio.CancelledError

    def _open(self, loop: asyncio.AbstractEventLoop) -> tuple[Store, _Runtime]:
        """`arun`'s start, in a thread: bind the metrics port, connect, start the runtime."""
        try:
            if self.metrics_port is not None:
                from redisq.metrics import WorkerExporter

                self._exporter = WorkerExporter(self, self.metrics_host, self.metrics_port)
            store = self.app.connect()
        except BaseException:
            self._close_exporter()
            raise
        try:
            return store, self._start(store, loop)
        except BaseException:
            store.close()
            self._close_exporter()
            raise

    def _close_exporter(self) -> None:
        if self._exporter is not None:
            self._exporter.close()
            self._exporter = None

    def _start(self, store: Store, loop: asyncio.AbstractEventLoop | None) -> _Runtime:
        limits = self.app.declare_rate_limits(store, self.queues)
        if limits:
            logger.info("worker %s: rate limits %s", self.name, limits)
        flow = self.app.declare_flow_limits(store, self.queues)
        if flow:
            logger.info("worker %s: concurrency limits %s", self.name, flow)
        hooks = self.app.hooks
        runtime = _Runtime(self, store, hooks, loop)
        try:
            self._start_hooks(hooks, runtime)
        except BaseException:
            runtime.abort()
            raise
        logger.info(
            "worker %s: working %s with %d %s handler(s)",
            self.name,
            ", ".join(self.queues),
            self.concurrency,
            self.pool,
        )
        runtime.start()
        return runtime

    def _end(self, runtime: _Runtime) -> None:
        stop = runtime.hooks.worker_stop
        runtime.shutdown(lambda: self._stop_hooks(stop, runtime))
        logger.info("worker %s: stopped; %s", self.name, self.metrics.snapshot())

    def _burst_done(self) -> None:
        """A burst worker found its queues empty: it stops (gracefully: nothing runs)."""
        if not self._stop.is_set():
            logger.info("worker %s: burst done: its queues are empty", self.name)
            self.drained = True
            self.stop()

    def _start_hooks(self, hooks: Hooks, runtime: _Runtime) -> None:
        """Run the on_worker_start hooks in order; when one fails, run the on_worker_stop
        hooks of the middleware that started, and raise WorkerStartError."""
        for index, fn in hooks.worker_start:
            try:
                runtime.call_hook(fn, self)
            except BaseException as exc:
                logger.error(
                    "worker %s: on_worker_start hook %s failed; the worker does not start",
                    self.name,
                    hook_name(fn),
                    exc_info=exc,
                )
                # The layers outside the failed one started: they stop (onion order).
                self._stop_hooks(tuple((i, f) for i, f in hooks.worker_stop if i < index), runtime)
                raise WorkerStartError(hook_name(fn), exc) from exc

    def _stop_hooks(self, stop: tuple[tuple[int, Any], ...], runtime: _Runtime) -> None:
        """Run on_worker_stop hooks (last added first); an error is logged, the others run."""
        for _, fn in stop:
            try:
                runtime.call_hook(fn, self)
            except BaseException:
                logger.exception(
                    "worker %s: on_worker_stop hook %s failed", self.name, hook_name(fn)
                )

    def _on_signal(self, signum: int) -> None:
        logger.info("worker %s: got %s", self.name, signal.Signals(signum).name)
        self.stop(grace=not self._stop.is_set())


class _Runtime:
    """The threads of one `Worker.run` and how they start and stop."""

    def __init__(
        self,
        worker: Worker,
        store: Store,
        hooks: Hooks,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.worker = worker
        self.store = store
        self.hooks = hooks
        self.metrics = worker.metrics
        name = f"redisq-{worker.name}"
        self.runner = Runner(store, worker.name, self._mark_started, hooks)
        self.executor: Executor
        executor: ThreadExecutor | AsyncExecutor
        if worker.pool == "thread":
            executor = ThreadExecutor(self.runner, worker.concurrency, name)
        else:
            executor = AsyncExecutor(self.runner, worker.concurrency, name, loop)
        self.executor = executor
        self._hand_over = isinstance(executor, ThreadExecutor)
        self.settler = Settler(store, self.metrics, f"{name}-settler")
        #: The metrics exporter (None: metrics off, and nothing below measures anything).
        self._observer = observer = worker._exporter
        settle = self.settler.put if observer is None else observer.timed(self.settler.put)
        self.state = State(worker.concurrency, worker.prefetch, executor.wake, settle)
        self.settler.bind(self.state)
        executor.bind(self.state)
        self._default_lease = store.settings.lease_ms
        self.keeper = Keeper(
            store,
            self.state,
            worker.queues,
            worker.reaper_interval_ms,
            self.metrics,
            executor.cancel,
            self.runner.backoff_ms,
            f"{name}-keeper",
            # Its own store: one blocking read a minute (see _cancels.py).
            lambda: watch_store(worker.app.url, worker.app.prefix, worker.app.connect_options),
        )
        if observer is not None:
            self.settler.observer = self.keeper.observer = observer
            observer.bind(self.state)
        self.fetcher = Fetcher(
            store,
            worker.queues,
            Rotation(worker.queues, worker.weights, worker.strict),
            worker.name,
            lambda: self.state.wait_capacity(0.5),
            self._admit,
            executor.adopt if isinstance(executor, ThreadExecutor) else None,
            worker._stop,
            min(worker.idle_wait_ms, _BURST_WAIT_MS) if worker.burst else worker.idle_wait_ms,
            self.metrics,
            f"{name}-fetcher",
            idle=self.state.holds_nothing if worker.burst else None,
            drained=worker._burst_done if worker.burst else None,
        )
        if isinstance(executor, ThreadExecutor):
            executor.fetch = self.fetcher.work
        self._name = name
        self.drivers: Drivers | None = None
        self.heartbeat: Heartbeat | None = None
        if worker.registry_ttl_ms:
            self.heartbeat = Heartbeat(
                store,
                self.state,
                self.metrics,
                worker.name,
                worker.queues,
                worker.concurrency,
                worker.pool,
                worker.registry_ttl_ms,
                f"{name}-heartbeat",
            )

    def start(self) -> None:
        self.settler.start()
        self.keeper.start()
        self.fetcher.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        worker = self.worker
        if worker.schedules:
            app = worker.app
            self.drivers = start_drivers(
                app.url,
                app.prefix,
                app.connect_options,
                worker.queues,
                lambda store: app.declare_schedules(store, worker.queues),
                self._name,
            )

    def _mark_started(self, entry: Entry) -> None:
        """The handler of `entry` starts now: its timeout (if any) counts from here."""
        task = entry.task
        if task is not None and task.timeout_ms is not None:
            entry.timeout_at = time.monotonic() + task.timeout_ms / 1000
            self.keeper.watch_timeout(entry)

    def _admit(self, jobs: list[Job], sent_at: float, waited: bool) -> Entry | None:
        """Register claimed jobs; after a wait for work (the worker was idle), maybe keep the
        first for the calling thread (see `State.hand_over`) and return it."""
        task_of = self.worker.app.tasks.get
        default_lease = self._default_lease
        entries = [
            Entry(job, task_of(job.name or ""), job.lease_ms or default_lease, sent_at)
            for job in jobs
        ]
        # Pickup latency: from due (run_at) to leased (the deadline less the lease), >= 0.
        pickups = [
            pickup if (pickup := deadline - e.lease_ms - e.job.run_at_ms) > 0 else 0
            for e in entries
            if (deadline := e.job.lease_deadline_ms) is not None
        ]
        self.metrics.claimed_batch(len(jobs), pickups)  # counted before any can complete
        if self._observer is not None:
            self._observer.claimed(entries)
        kept = self.state.hand_over(entries) if waited and self._hand_over else None
        refused = [] if kept is not None else self.state.admit(entries)
        self.keeper.watch(entries)  # until settled, released ones included
        for entry in refused:  # claimed while the worker began to stop
            self.settler.put(Outcome(entry, "release", "release"))
        if kept is None and waited:
            # An idle worker's handler starts before the next claim is prepared. (A busy
            # worker's fetcher goes straight on: its next claim should overlap the handlers.)
            self.state.yield_to_woken(_YIELD_S)
        return kept

    def call_hook(self, fn: Any, worker: Worker) -> None:
        """Call a worker hook: an async one on the handlers' event loop (pool="async"), so
        what it opens (an asyncpg pool) belongs to that loop; else on a private one."""
        executor = self.executor
        if isinstance(executor, AsyncExecutor):
            executor.call(fn, worker)
        else:
            call_blocking(fn, worker)

    def abort(self) -> None:
        """Undo a start that did not happen (an on_worker_start hook failed)."""
        self.state.close()
        self.executor.shutdown(1.0)

    def shutdown(self, before_close: Callable[[], None] | None = None) -> None:
        worker = self.worker
        state = self.state
        # No claim may start now; one waiting for work returns (what it leased is released).
        if self.drivers is not None:
            self.drivers.stop()
        self.fetcher.stop_waiting()
        for entry in state.begin_stop():
            self.settler.put(Outcome(entry, "release", "release"))
        state.wait_idle(worker.grace_ms / 1000, worker._hurry)
        running = state.take_running()
        if running:
            logger.warning(
                "worker %s: releasing %d job(s) still running%s",
                worker.name,
                len(running),
                " (second stop request)" if worker._hurry.is_set() else " after the grace period",
            )
            for entry in running:
                self.settler.put(Outcome(entry, "release", "release"))
                self.executor.cancel(entry)
        self.fetcher.quiesce(30)
        flush = _HURRIED_FLUSH_S if worker._hurry.is_set() else _FLUSH_S
        if not state.wait_settled(flush, worker._hurry):
            state.wait_settled(_HURRIED_FLUSH_S)
        self.settler.close(_HURRIED_FLUSH_S)
        self.keeper.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop(2.0)
        self.keeper.join(5)
        if self.drivers is not None:
            self.drivers.join(5)
        if before_close is not None:
            before_close()  # the on_worker_stop hooks, while the executor's loop runs
        self.executor.shutdown(1.0)


async def _finish(future: asyncio.Future[Any], on_cancel: Callable[[], None]) -> Any:
    """Await `future` to its end whatever cancels the waiting task: each cancel calls
    `on_cancel` (which asks the worker to stop) and the wait goes on."""
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            on_cancel()  # even when `future` is done by now: the cancel must not be lost
            if future.done():
                return future.result()


def _in_thread(
    loop: asyncio.AbstractEventLoop, fn: Callable[[], Any], name: str
) -> asyncio.Future[Any]:
    """Run `fn` in a new daemon thread; its outcome as a future of `loop`.

    Not the loop's default executor: the application's own blocking calls may fill it,
    and the worker's start and stop must not wait behind them.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def main() -> None:
        try:
            value = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=main, name=name, daemon=True).start()
    return future
