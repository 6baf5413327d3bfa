"""Run N worker processes of one App: `Supervisor`, and `load_app` for "module:attr" paths.

::

    # one process per core, each a redisq.Worker(app, concurrency=8)
    redisq.Supervisor("myproject.tasks:app", processes=4, concurrency=8).run()

The supervisor is a plain parent process: it imports the app once to check the options, then
starts each child as a fresh interpreter (``python -c``, like the "spawn" start method: no
state is inherited through fork). A child reads its settings from its stdin, imports the app by
its path, and runs `Worker(app, **options).run()`. The parent then:

- restarts a child that exits while it is not stopping, after a pause that doubles on each
  quick death (0.5 s up to 30 s; a child that ran 30 s or more resets it), so a crash loop
  does not spin;
- on the first SIGTERM or SIGINT sends SIGTERM to every child (stop claiming, finish the
  running jobs within grace_ms, release the rest); on the second sends SIGUSR1 (release the
  running jobs at once); then waits for them;
- SIGKILLs children still alive long after that (grace_ms + 30 s, or 15 s after a second
  signal), which their leases survive: the reaper returns the jobs after lease expiry.

Children ignore SIGINT, so a Ctrl-C sent to the whole process group by a terminal counts once,
and treat repeated SIGTERMs as one, so a service manager that signals every process of the
group (systemd) still gets a graceful stop. A child whose parent died (SIGKILL) notices
within a second and stops gracefully. Jobs of a child killed with SIGKILL come back through
the reaper of the other workers once their lease expires.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from redisq._core.validate import check_int
from redisq.app import App
from redisq.errors import ConfigurationError, InvalidArgument
from redisq.keys import check_prefix
from redisq.worker import Worker
from redisq.worker._support import stop_signals

__all__ = ["Supervisor", "load_app"]

logger = logging.getLogger("redisq.supervisor")

#: The worker options a supervisor passes on to each child's Worker.
WORKER_OPTIONS = (
    "queues",
    "concurrency",
    "pool",
    "weights",
    "strict",
    "grace_ms",
    "reaper_interval_ms",
    "prefetch",
    "idle_wait_ms",
    "schedules",
    "registry_ttl_ms",
    "metrics_port",
    "metrics_host",
    "burst",
)
#: A child exits with this code when it cannot load the app or build its Worker.
CHILD_EXIT_CONFIG = 2
#: Log levels accepted by `log_level`.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The log line format of the command line and of the children.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

_FIRST_RESTART_S = 0.5
_MAX_RESTART_S = 30.0
#: A child that ran this long before dying restarts after the first pause again.
_HEALTHY_S = 30.0
#: After the first stop request, children still alive grace + this long are killed.
_STOP_MARGIN_S = 30.0
#: After a second stop request, children still alive this long are killed.
_HURRIED_STOP_S = 15.0
_TICK_S = 0.05


# -------------------------------------------------------------------------------- loading


def load_app(path: str, *, url: str | None = None, prefix: str | None = None) -> App:
    """Import the App named by ``"module:attr"`` (attr may be dotted: ``"pkg.mod:ns.app"``).

    The current directory is put on ``sys.path`` first (like uvicorn and celery), so a module
    next to where the command runs is found.

    Args:
        path: ``"module:attr"``.
        url: replaces the app's url when given.
        prefix: replaces the app's key prefix when given.

    Raises:
        ConfigurationError: the path is malformed, its module cannot be found, it has no such
            attribute, or the attribute is not a `redisq.App`.
        InvalidArgument: the prefix is not a valid name.
    """
    if not isinstance(path, str):
        raise InvalidArgument("app", 'a "module:attr" string', path)
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise ConfigurationError(
            f"{path!r} is not MODULE:ATTR; name the module and the App in it, e.g."
            " myproject.tasks:app"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the module exists but imports something missing: keep the traceback
        raise ConfigurationError(
            f"cannot import module {module_name!r} ({exc}); run the command from the folder"
            " that holds it, or add that folder to PYTHONPATH"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"module {module_name!r} has no attribute {attr!r}; name the variable that"
                f" holds your redisq.App, e.g. {module_name}:app"
            ) from None
    if not isinstance(obj, App):
        raise ConfigurationError(
            f"{path} is of type {type(obj).__name__!r}, not a redisq.App; point at the App"
            " your tasks are registered on"
        )
    if prefix is not None:
        obj.prefix = check_prefix(prefix)
    if url is not None:
        obj.url = url
    if url is not None or prefix is not None:
        obj.close()  # a store opened at import time used the old settings
    return obj


def configure_logging(level: str) -> None:
    """Send redisq's log records of `level` and above to stderr (one line each)."""
    if level not in LOG_LEVELS:
        raise InvalidArgument("log_level", f"one of {', '.join(LOG_LEVELS)}", level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger("redisq")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# ----------------------------------------------------------------------------- supervisor


class _Slot:
    """One child position: its process now, and its restart history."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0
        self.restart_at: float | None = None
        self.exit_code: int | None = None


class Supervisor:
    """Runs `processes` worker processes of one App and keeps them running until stopped.

    Args:
        app: the App as ``"module:attr"`` (each child imports it from there).
        processes: how many worker processes (1 to 1024).
        url: replaces the app's url in every process when given.
        prefix: replaces the app's key prefix in every process when given.
        log_level: the children log to stderr from this level (None: leave logging alone).
        handle_signals: when `run` is called on the main thread, stop on SIGTERM and SIGINT
            (a second signal releases the running jobs at once).
        **worker_options: passed to each child's `redisq.Worker`: queues, concurrency, pool,
            weights, strict, grace_ms, reaper_interval_ms, prefetch, idle_wait_ms,
            schedules, registry_ttl_ms, metrics_port, metrics_host. Process i serves its
            metrics on metrics_port + i (each process has its own counters; 0: each any
            free port). With burst=True a child that exits 0 (its queues were empty) is not
            restarted, and `run` returns once every child has.

    Raises:
        InvalidArgument: an option is out of range, or not a Worker option.
    """

    def __init__(
        self,
        app: str,
        *,
        processes: int = 2,
        url: str | None = None,
        prefix: str | None = None,
        log_level: str | None = "info",
        handle_signals: bool = True,
        **worker_options: Any,
    ) -> None:
        if not isinstance(app, str):
            raise InvalidArgument("app", 'a "module:attr" string (children import it)', app)
        self.app = app
        self.processes = check_int("processes", processes, 1, 1024)
        for key in worker_options:
            if key not in WORKER_OPTIONS:
                allowed = ", ".join(WORKER_OPTIONS)
                raise InvalidArgument(
                    "worker_options", f"among {allowed} (each child names itself)", key
                )
        port = worker_options.get("metrics_port")
        if type(port) is int and port > 0:
            check_int("metrics_port", port, 1, 65_536 - self.processes)  # P + i for each
        if log_level is not None and log_level not in LOG_LEVELS:
            raise InvalidArgument("log_level", f"None or one of {', '.join(LOG_LEVELS)}", log_level)
        if not isinstance(handle_signals, bool):
            raise InvalidArgument("handle_signals", "a bool", handle_signals)
        queues = worker_options.get("queues")
        if isinstance(queues, str):
            worker_options["queues"] = [queues]
        elif queues is not None and not isinstance(queues, list):
            worker_options["queues"] = list(queues)
        weights = worker_options.get("weights")
        if isinstance(weights, Mapping):
            worker_options["weights"] = dict(weights)
        self.url = url
        self.prefix = prefix
        self.log_level = log_level
        self.handle_signals = handle_signals
        self.worker_options = worker_options
        self.grace_ms: int = worker_options.get("grace_ms", 30_000)
        self.burst = bool(worker_options.get("burst", False))
        self._slots = [_Slot(i) for i in range(self.processes)]
        self._stops = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._started = False

    def __repr__(self) -> str:
        return f"<Supervisor {self.app!r} processes={self.processes}>"

    @property
    def pids(self) -> list[int | None]:
        """The pid of each child now (None while one waits for its restart)."""
        with self._lock:
            return [
                slot.process.pid
                if slot.process is not None and slot.process.poll() is None
                else None
                for slot in self._slots
            ]

    def stop(self, grace: bool = True) -> None:
        """Ask the children to stop; returns at once (thread-safe, signal-safe).

        The first call lets their running jobs finish within grace_ms; a second call (or
        ``grace=False``) makes them release their running jobs at once.
        """
        self._stops = max(self._stops + 1, 1 if grace else 2)
        self._wake.set()

    def check(self) -> App:
        """Load the app here and build a Worker with the options, to fail before any child.

        Returns:
            The loaded App (with url and prefix replaced as asked).

        Raises:
            ConfigurationError: the app cannot be loaded, its url is ``memory://`` (each
                process would have its own private store), or it has nothing to work.
            InvalidArgument: a worker option is out of range.
        """
        app = load_app(self.app, url=self.url, prefix=self.prefix)
        if app.url.startswith("memory://"):
            raise ConfigurationError(
                f"the app's url is {app.url!r}, a store private to one process: worker"
                " processes cannot share it; pass url='redis://...' (or --url)"
            )
        Worker(app, handle_signals=False, **self.worker_options)
        try:
            json.dumps(self.worker_options)
        except TypeError as exc:
            raise InvalidArgument(
                "worker_options", "JSON data (str, int, bool, list, dict)", self.worker_options
            ) from exc
        return app

    # ------------------------------------------------------------------------------ run

    def run(self) -> int:
        """Start the children and supervise them until stopped; return an exit code.

        Returns:
            0 when every child stopped cleanly, 1 when one had to be killed or failed at
            stop, 2 when a child could not load the app or its options.

        Raises:
            ConfigurationError, InvalidArgument: as `check` (before any child starts).
            RuntimeError: the supervisor already ran.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("a Supervisor runs once; create a new one to run again")
            self._started = True
        self.check()
        with stop_signals(self.handle_signals, lambda _signum: self.stop()):
            try:
                return self._run()
            finally:
                self._kill_all()

    def _run(self) -> int:
        logger.info("supervisor: starting %d worker processes of %s", self.processes, self.app)
        for slot in self._slots:
            self._spawn(slot)
        handled = 0
        kill_at: float | None = None
        fatal = False
        while True:
            stops = self._stops
            now = time.monotonic()
            if stops > handled:
                if handled == 0:  # a child waiting for its restart stays down: not a failure
                    for slot in self._slots:
                        if slot.process is None:
                            slot.exit_code = slot.restart_at = None
                handled = stops
                if stops == 1:
                    logger.info("supervisor: stopping the workers (grace %d ms)", self.grace_ms)
                    self._signal_all(signal.SIGTERM)
                    kill_at = now + self.grace_ms / 1000 + _STOP_MARGIN_S
                else:
                    logger.info("supervisor: stopping the workers now (release running jobs)")
                    self._signal_all(signal.SIGUSR1)
                    kill_at = min(kill_at or now + _HURRIED_STOP_S, now + _HURRIED_STOP_S)
            alive = self._reap_children(stopping=handled > 0)
            if any(s.exit_code == CHILD_EXIT_CONFIG for s in self._slots) and not fatal:
                fatal = True
                logger.error(
                    "supervisor: a worker process could not load the app or its options"
                    " (see its error above); stopping the others"
                )
                self.stop()
                continue
            if handled > 0:
                if not alive:
                    break
                if kill_at is not None and now >= kill_at:
                    logger.error(
                        "supervisor: killing %d worker process(es) that did not stop", alive
                    )
                    self._kill_all()
                    for slot in self._slots:
                        slot.exit_code = -signal.SIGKILL
                    break
            else:
                if self.burst and all(
                    s.process is None and s.restart_at is None for s in self._slots
                ):
                    break  # every child finished its burst
                self._restart_due(now)
            self._wake.wait(_TICK_S)
            self._wake.clear()
        if fatal:
            return CHILD_EXIT_CONFIG
        clean = all(slot.exit_code in (None, 0) for slot in self._slots)
        logger.info("supervisor: stopped%s", "" if clean else " (not every worker cleanly)")
        return 0 if clean else 1

    def _spawn(self, slot: _Slot) -> None:
        spec = {
            "app": self.app,
            "url": self.url,
            "prefix": self.prefix,
            "log_level": self.log_level,
            "options": self.worker_options,
            "parent": os.getpid(),
            "sys_path": sys.path,
            "index": slot.index,
        }
        process = subprocess.Popen(
            [sys.executable, "-c", "from redisq.supervisor import child_main; child_main()"],
            stdin=subprocess.PIPE,
        )
        stdin: IO[bytes] | None = process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(spec).encode())
            stdin.close()
        except OSError:  # died at once: the next tick sees its exit code
            pass
        with self._lock:
            slot.process = process
            slot.started_at = time.monotonic()
            slot.exit_code = None
            slot.restart_at = None
        logger.info("supervisor: worker process %d started (pid %d)", slot.index, process.pid)

    def _reap_children(self, *, stopping: bool) -> int:
        """Collect the exits of children; schedule restarts; return how many are alive."""
        alive = 0
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None:
                continue
            code = process.poll()
            if code is None:
                alive += 1
                continue
            with self._lock:
                slot.process = None
                slot.exit_code = code
            if stopping:
                if code in (-signal.SIGTERM, -signal.SIGUSR1):
                    code = 0  # our signal came before it ran any Python: it held no job
                    slot.exit_code = 0
                level = logging.INFO if code == 0 else logging.WARNING
                logger.log(
                    level,
                    "supervisor: worker process %d (pid %d) exited with %d",
                    slot.index,
                    process.pid,
                    code,
                )
                continue
            if code == CHILD_EXIT_CONFIG:
                continue
            if code == 0 and self.burst:
                logger.info(
                    "supervisor: worker process %d (pid %d) finished its burst",
                    slot.index,
                    process.pid,
                )
                continue
            if now - slot.started_at >= _HEALTHY_S:
                slot.failures = 0
            delay = min(_MAX_RESTART_S, _FIRST_RESTART_S * 2**slot.failures)
            slot.failures += 1
            slot.restart_at = now + delay
            logger.warning(
                "supervisor: worker process %d (pid %d) exited with %d; restarting in %.1f s",
                slot.index,
                process.pid,
                code,
                delay,
            )
        return alive

    def _restart_due(self, now: float) -> None:
        for slot in self._slots:
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                self._spawn(slot)

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self._slots:
            process = slot.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    process.send_signal(sig)

    def _kill_all(self) -> None:
        for slot in self._slots:
            process = slot.process
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


# ---------------------------------------------------------------------------------- child


def child_main() -> None:
    """Run one supervised worker process (the code of each child; not for direct use).

    Reads its settings as JSON from stdin, then runs the Worker until SIGTERM (graceful,
    repeats ignored), SIGUSR1 (release the running jobs now) or the parent's death. Exits 0
    after a stop, 2 when the app or the options cannot be loaded.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor forwards Ctrl-C
    # Until the Worker exists nothing was claimed: a stop request simply ends the process.
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, lambda signum, frame: os._exit(0))
    spec = json.loads(sys.stdin.read())
    sys.stdin.close()
    sys.path[:] = [*spec["sys_path"], *(p for p in sys.path if p not in spec["sys_path"])]
    if spec["log_level"] is not None:
        configure_logging(spec["log_level"])
    options = spec["options"]
    if options.get("metrics_port"):  # each process its own port: P, P+1, ... (0: any free one)
        options["metrics_port"] += spec["index"]
    try:
        app = load_app(spec["app"], url=spec["url"], prefix=spec["prefix"])
        worker = Worker(app, handle_signals=False, **options)
    except (ConfigurationError, InvalidArgument) as exc:
        logger.error("worker process %d: %s", spec["index"], exc)
        sys.exit(CHILD_EXIT_CONFIG)
    requested = threading.Event()

    def graceful() -> None:  # once: a repeated SIGTERM is the same request
        if not requested.is_set():
            requested.set()
            worker.stop(grace=True)

    signal.signal(signal.SIGTERM, lambda signum, frame: graceful())
    signal.signal(signal.SIGUSR1, lambda signum, frame: worker.stop(grace=False))
    parent = spec["parent"]

    def watch_parent() -> None:
        while not worker.wait_stopped(1.0):
            if os.getppid() != parent:
                logger.warning("worker %s: the supervisor is gone; stopping", worker.name)
                graceful()
                return

    threading.Thread(target=watch_parent, name="redisq-parent-watch", daemon=True).start()
    try:
        worker.run()
    except ConfigurationError as exc:  # its metrics port is in use: restarting cannot help
        logger.error("worker process %d: %s", spec["index"], exc)
        sys.exit(CHILD_EXIT_CONFIG)
    sys.exit(0)
