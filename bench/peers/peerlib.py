"""The side of the peer benchmark that runs inside each queue's own venv (standard library only).

The harness (run.py) starts it with the queue's interpreter:

    <venv>/bin/python bench/peers/peerlib.py <queue dir> <role> [options]

It imports ``<queue dir>/adapter.py`` as the module ``adapter`` (so task references such as
rq's ``adapter.noop`` resolve the same in producers and workers) and runs one role:

    fill    --mode single|bulk --jobs N --out FILE   enqueue jobs 0..N-1, write {"seconds": s}
    work    --ready-fd FD --go-fd FD                 build the worker, say "ready", wait for "go",
                                                     then run it until SIGTERM
    pickup  --count K --gap-ms G --socket PATH --out FILE
                                                     enqueue one job at a time into an idle worker
                                                     and time each one to its handler's start

``adapter.py`` defines ``class Adapter`` with these methods, all ``def`` or all ``async def``:

    __init__(self, url, settings)   settings: the queue's JSON settings ({} = the adapter's own)
    setup(self)                     connect (a producer; not timed)
    enqueue_one(self, i)            one job through the single-job API
    enqueue_bulk(self, ids)         jobs `ids` (a range of at most BULK_CHUNK) through the bulk API
    prepare_worker(self)            build the worker and everything it needs, short of running
    run_worker(self)                run the worker until the process is told to stop
    close(self)                     release the producer's connections

Every no-op handler calls ``record(i)`` first. It appends ``"<i> <time.monotonic_ns()>"`` to
``$BENCH_LEDGER_DIR/<pid>.log`` (O_APPEND: one write per record), and in the pickup role also
sends it as a datagram to ``$BENCH_PICKUP_SOCKET``. CLOCK_MONOTONIC is one clock for every
process of the machine on Linux, so a handler's time and a producer's time compare directly.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

# The adapter does `import peerlib`: hand it this very module, not a second copy of the script.
sys.modules.setdefault("peerlib", sys.modules[__name__])

#: Jobs per call of a peer's bulk API (redisq's enqueue_many takes at most 1,000 per call).
BULK_CHUNK = 1_000
#: How long a pickup waits for its handler before the run is declared stuck.
PICKUP_TIMEOUT_S = 30.0
#: Warm-up pickups (connections open, scripts loaded, the worker past its start).
PICKUP_WARMUPS = 3

_ledger: tuple[int, int] | None = None  # (pid, fd)
_pickup: tuple[socket.socket, str] | None = None


def record(job_id: int) -> None:
    """Record that job `job_id` started, with the time; every no-op handler calls this first."""
    global _ledger, _pickup
    pid = os.getpid()
    if _ledger is None or _ledger[0] != pid:  # first job, or a forked child
        path = os.path.join(os.environ["BENCH_LEDGER_DIR"], f"{pid}.log")
        _ledger = (pid, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        target = os.environ.get("BENCH_PICKUP_SOCKET")
        _pickup = (socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), target) if target else None
    line = b"%d %d\n" % (job_id, time.monotonic_ns())
    os.write(_ledger[1], line)
    if _pickup is not None:
        _pickup[0].sendto(line, _pickup[1])


def _write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


# ------------------------------------------------------------------------------------- fill


#: In-flight enqueues of a queue without a bulk API (the way streaq's benchmark enqueues them).
CONCURRENT_ENQUEUES = 32


async def concurrently(enqueue: Callable[[int], Awaitable[Any]], ids: range) -> None:
    """Enqueue `ids` with CONCURRENT_ENQUEUES calls in flight: for asyncio queues without a
    bulk API, the best they offer."""
    it = iter(ids)

    async def lane() -> None:
        for i in it:
            await enqueue(i)

    await asyncio.gather(*(lane() for _ in range(min(CONCURRENT_ENQUEUES, len(ids)))))


def _chunks(jobs: int) -> list[range]:
    return [range(i, min(i + BULK_CHUNK, jobs)) for i in range(0, jobs, BULK_CHUNK)]


def fill_sync(adapter: Any, mode: str, jobs: int) -> float:
    adapter.setup()
    try:
        if mode == "single":
            enqueue = adapter.enqueue_one
            started = time.perf_counter()
            for i in range(jobs):
                enqueue(i)
        else:
            chunks = _chunks(jobs)
            started = time.perf_counter()
            for chunk in chunks:
                adapter.enqueue_bulk(chunk)
        return time.perf_counter() - started
    finally:
        adapter.close()


async def fill_async(adapter: Any, mode: str, jobs: int) -> float:
    await adapter.setup()
    try:
        if mode == "single":
            enqueue = adapter.enqueue_one
            started = time.perf_counter()
            for i in range(jobs):
                await enqueue(i)
        else:
            chunks = _chunks(jobs)
            started = time.perf_counter()
            for chunk in chunks:
                await adapter.enqueue_bulk(chunk)
        return time.perf_counter() - started
    finally:
        await adapter.close()


# ------------------------------------------------------------------------------------- work


def _ready_then_wait(ready_fd: int, go_fd: int) -> None:
    os.write(ready_fd, b"ready\n")
    os.close(ready_fd)
    if not os.read(go_fd, 16).startswith(b"go"):
        raise SystemExit("peerlib: the harness closed the barrier without releasing it")
    os.close(go_fd)


def work_sync(adapter: Any, ready_fd: int, go_fd: int) -> None:
    adapter.prepare_worker()
    _ready_then_wait(ready_fd, go_fd)
    adapter.run_worker()


async def work_async(adapter: Any, ready_fd: int, go_fd: int) -> None:
    await adapter.prepare_worker()
    await asyncio.get_running_loop().run_in_executor(None, _ready_then_wait, ready_fd, go_fd)
    await adapter.run_worker()


# ----------------------------------------------------------------------------------- pickup


class _Pickups:
    """Times jobs from the enqueue call to the handler's start (both on CLOCK_MONOTONIC)."""

    def __init__(self, path: str, gap_ms: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.gap_s = gap_ms / 1000
        self.latencies_ms: list[float] = []
        self.enqueue_ms: list[float] = []
        self.strays: list[str] = []  # records of jobs other than the one awaited

    def wait_for(self, job_id: int, timeout_s: float) -> int:
        """Return the handler's start time of `job_id`, read from its datagram."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(256)
            except TimeoutError:
                raise SystemExit(
                    f"peerlib: job {job_id} did not start within {timeout_s} s"
                ) from None
            seen, _, stamp = data.decode().partition(" ")
            if int(seen) == job_id:
                return int(stamp)
            self.strays.append(data.decode().strip())

    def note(self, started_ns: int, called_ns: int, returned_ns: int) -> None:
        self.latencies_ms.append((started_ns - called_ns) / 1e6)
        self.enqueue_ms.append((returned_ns - called_ns) / 1e6)

    def result(self) -> dict[str, Any]:
        return {
            "latencies_ms": self.latencies_ms,
            "enqueue_ms": self.enqueue_ms,
            "strays": self.strays,
        }


def pickup_sync(adapter: Any, count: int, timing: _Pickups) -> None:
    adapter.setup()
    try:
        for n in range(PICKUP_WARMUPS + count):
            time.sleep(timing.gap_s)  # the worker is idle again: waiting on Redis
            called = time.monotonic_ns()
            adapter.enqueue_one(n)
            returned = time.monotonic_ns()
            started = timing.wait_for(n, 120.0 if n == 0 else PICKUP_TIMEOUT_S)
            if n >= PICKUP_WARMUPS:
                timing.note(started, called, returned)
    finally:
        adapter.close()


async def pickup_async(adapter: Any, count: int, timing: _Pickups) -> None:
    await adapter.setup()
    try:
        for n in range(PICKUP_WARMUPS + count):
            await asyncio.sleep(timing.gap_s)
            called = time.monotonic_ns()
            await adapter.enqueue_one(n)
            returned = time.monotonic_ns()
            # A blocking wait: nothing else of this producer needs the loop meanwhile.
            started = timing.wait_for(n, 120.0 if n == 0 else PICKUP_TIMEOUT_S)
            if n >= PICKUP_WARMUPS:
                timing.note(started, called, returned)
    finally:
        await adapter.close()


# ------------------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("queue_dir")
    p.add_argument("role", choices=["fill", "work", "pickup"])
    p.add_argument("--url", required=True)
    p.add_argument("--settings", default="{}", help="the queue's settings, JSON")
    p.add_argument("--mode", choices=["single", "bulk"], default="single")
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--gap-ms", type=float, default=20.0)
    p.add_argument("--socket", default="")
    p.add_argument("--out", default="")
    p.add_argument("--ready-fd", type=int, default=-1)
    p.add_argument("--go-fd", type=int, default=-1)
    args = p.parse_args(argv)

    # The adapter's folder first, and not this script's: a queue folder is named like the
    # peer's own package (bench/peers/celery), which must not shadow it.
    sys.path[0] = os.path.abspath(args.queue_dir)
    adapter_module = importlib.import_module("adapter")
    adapter = adapter_module.Adapter(args.url, json.loads(args.settings))
    is_async = inspect.iscoroutinefunction(adapter.run_worker)

    if args.role == "fill":
        if is_async:
            seconds = asyncio.run(fill_async(adapter, args.mode, args.jobs))
        else:
            seconds = fill_sync(adapter, args.mode, args.jobs)
        _write_json(args.out, {"seconds": seconds})
    elif args.role == "work":
        if is_async:
            asyncio.run(work_async(adapter, args.ready_fd, args.go_fd))
        else:
            work_sync(adapter, args.ready_fd, args.go_fd)
    else:
        timing = _Pickups(args.socket, args.gap_ms)
        if is_async:
            asyncio.run(pickup_async(adapter, args.count, timing))
        else:
            pickup_sync(adapter, args.count, timing)
        _write_json(args.out, timing.result())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
