"""Script caps: the longest single script call of each store operation at its worst argument.

Every scenario builds the worst case an accepted argument allows (1,000 jobs whose payloads,
results or records are near the 512 KiB payload limit; the largest accepted limits and
batches), then runs the operation through the public store API and reads SLOWLOG (with
slowlog-log-slower-than 0) for the longest call of the script under test. The goal (issue 9
point 3) is about 20 ms per call; the client loops where the caller asks for more.

    python bench/bench_caps.py [--jobs 1000] [--size 524000] [--only ack,renew] [--url ...]

--url runs against that server (its keys under a fresh prefix; it reconfigures the slowlog and
runs CONFIG RESETSTAT); without it a private valkey-server is started. Figures are wall time
on the server's main thread, so a busy machine makes them noisy: run twice, keep the lower.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from _common import (
    Figure,
    base_parser,
    command_line,
    delete_prefix,
    new_prefix,
    print_environment,
    run_main,
)
from _server import bench_server

import redisq
from redisq import Retention
from redisq._core.scripts import script
from redisq.keys import QueueKeys

SCRIPT = "bench_caps.py"
GOAL_MS = 20.0
JOBS = 1_000
SIZE = 524_000  # payload bytes: encoded, just under the default 512 KiB limit
Q = "caps"

# The text fields of a record, layout 3 and layout 2 (for the migrate scenario).
_LAYOUT3 = (
    "state", "attempts", "token", "worker", "leased_at", "deadline", "finished", "ended",
    "lease_ms", "ukey", "prio", "max", "created", "run_at", "seq", "name",
)  # fmt: skip
_LAYOUT2 = (
    "state", "prio", "attempts", "max", "created", "run_at", "seq", "token", "worker",
    "leased_at", "deadline", "finished", "lease_ms", "ukey", "name", "ended",
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=JOBS, help=f"jobs per scenario ({JOBS:,})")
    p.add_argument("--size", type=int, default=SIZE, help=f"payload bytes ({SIZE:,})")
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument(
        "--payload-limit",
        type=int,
        default=512 * 1024,
        help="the stores' payload_limit (512 KiB); raise it with --size for larger jobs",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="runs of each scenario; the lowest is kept (3)"
    )
    return p


@dataclass
class Ctx:
    """What a scenario works with."""

    store: redisq.Store
    admin: redis.Redis
    keys: QueueKeys
    jobs: int
    size: int
    url: str
    prefix: str

    def big(self) -> bytes:
        return b"\x01" * self.size

    def fill(self, n: int | None = None, **options: Any) -> list[redisq.Job]:
        """Enqueue n big jobs (in small calls, so the setup itself stays cheap)."""
        n = self.jobs if n is None else n
        out: list[redisq.Job] = []
        payload = self.big()
        for start in range(0, n, 10):
            out += self.store.enqueue_many(Q, [payload] * min(10, n - start), **options)
        return out

    def small(self, n: int) -> None:
        """Enqueue n small jobs."""
        for start in range(0, n, 1_000):
            self.store.enqueue_many(Q, [{"n": i} for i in range(start, min(n, start + 1_000))])

    def leased(self, n: int | None = None) -> list[redisq.Job]:
        """n big jobs, leased."""
        n = self.jobs if n is None else n
        self.fill(n)
        out: list[redisq.Job] = []
        while len(out) < n:
            got = self.store.claim(Q, worker="w", count=min(10, n - len(out)), lease_ms=600_000)
            assert got, "nothing left to claim"
            out += got
        return out

    def dead(self, n: int | None = None) -> None:
        """n big jobs in the dead set."""
        for job in self.leased(n):
            self.store.nack(job, error="e", dead=True)


@dataclass(frozen=True)
class Scenario:
    name: str  # the script under test
    what: str
    setup: Callable[[Ctx], Any]
    action: Callable[[Ctx, Any], Any]
    #: The store's retention: completed jobs are trimmed at once (the most trimming per ack).
    retention: Callable[[], Retention] = lambda: Retention(completed=0, dead=10**6)


def _migrate_setup(ctx: Ctx, small: int = 0) -> None:
    if small:
        ctx.small(small)
    else:
        ctx.fill()
    raw = ctx.admin
    for job_id, record in raw.hgetall(ctx.keys.jobs).items():
        parts = record.split(b"\n", 20)
        fields = dict(zip(_LAYOUT3, parts[1:17], strict=True))
        raw.hset(
            ctx.keys.jobs, job_id, b"\n".join([b"j2", *(fields[n] for n in _LAYOUT2), *parts[17:]])
        )
    raw.hset(ctx.keys.meta, "schema", "2")


def _trim_setup(ctx: Ctx) -> list[redisq.Job]:
    """20,000 small completed jobs kept (retention off while they are made), N leased."""
    keep = redisq.connect(
        ctx.url, prefix=ctx.prefix, retention=Retention(completed=10**6), **OPTIONS
    )
    try:
        for _ in range(20):
            keep.enqueue_many(Q, list(range(1_000)))
            keep.ack_many(keep.claim(Q, worker="w", count=1_000))
        keep.enqueue_many(Q, list(range(ctx.jobs)))
        return keep.claim(Q, worker="w", count=ctx.jobs, lease_ms=600_000)
    finally:
        keep.close()


def _big_trim_setup(ctx: Ctx) -> list[redisq.Job]:
    """N big completed jobs kept (retention off while they are made), N big ones leased."""
    keep = redisq.connect(
        ctx.url, prefix=ctx.prefix, retention=Retention(completed=10**6), **OPTIONS
    )
    try:
        first = Ctx(keep, ctx.admin, ctx.keys, ctx.jobs, ctx.size, ctx.url, ctx.prefix)
        keep.ack_many(first.leased())
        return first.leased()
    finally:
        keep.close()


def _small_over_big_setup(ctx: Ctx) -> list[redisq.Job]:
    """1,100 big completed jobs kept (retention off while they are made), N small ones leased:
    acking those trims old records far larger than the new ones."""
    keep = redisq.connect(
        ctx.url, prefix=ctx.prefix, retention=Retention(completed=10**6), **OPTIONS
    )
    try:
        big = Ctx(keep, ctx.admin, ctx.keys, 1_100, ctx.size, ctx.url, ctx.prefix)
        keep.ack_many(big.leased())
        keep.enqueue_many(Q, list(range(ctx.jobs)))
        return keep.claim(Q, worker="w", count=ctx.jobs, lease_ms=600_000)
    finally:
        keep.close()


def _mixed_done_setup(ctx: Ctx) -> None:
    """10 small completed jobs, then N big ones (payload, progress and result near the limit):
    the worst order for the read budget (small records make it read large groups)."""
    keep = redisq.connect(
        ctx.url, prefix=ctx.prefix, retention=Retention(completed=10**6), **OPTIONS
    )
    try:
        keep.enqueue_many(Q, list(range(10)))
        keep.ack_many(keep.claim(Q, worker="w", count=10))
        big = Ctx(keep, ctx.admin, ctx.keys, ctx.jobs, ctx.size, ctx.url, ctx.prefix)
        for job in big.leased():
            keep.ack(keep.progress(job, ctx.big()), ctx.big())
    finally:
        keep.close()


SCENARIOS = [
    Scenario(
        "enqueue",
        "enqueue_many of N jobs, payloads near the limit",
        lambda c: None,
        lambda c, _: c.store.enqueue_many(Q, [c.big()] * c.jobs),
    ),
    Scenario(
        "enqueue",
        "enqueue_many of N small jobs with unique keys",
        lambda c: None,
        lambda c, _: c.store.enqueue_many(
            Q, [redisq.Spec(i, unique_key=f"u{i}") for i in range(c.jobs)]
        ),
    ),
    Scenario(
        "ack",
        "ack_many of N leased jobs, results near the limit",
        lambda c: c.leased(),
        lambda c, jobs: c.store.ack_many(jobs, [c.big()] * len(jobs)),
    ),
    Scenario(
        "ack",
        "ack_many of N leased big jobs, no results",
        lambda c: c.leased(),
        lambda c, jobs: c.store.ack_many(jobs),
    ),
    Scenario(
        "renew",
        "renew_many of N leased big jobs",
        lambda c: c.leased(),
        lambda c, jobs: c.store.renew_many(jobs, lease_ms=600_000),
    ),
    Scenario(
        "nack",
        "nack of a big job (error 16 KiB, progress near the limit) into the dead set",
        lambda c: c.store.progress(c.leased(1)[0], c.big()),
        lambda c, job: c.store.nack(job, error="e" * 20_000, dead=True),
    ),
    Scenario(
        "release",
        "release of a big job",
        lambda c: c.leased(1)[0],
        lambda c, job: c.store.release(job),
    ),
    Scenario(
        "progress",
        "progress near the limit on a big job",
        lambda c: c.leased(1)[0],
        lambda c, job: c.store.progress(job, c.big()),
    ),
    Scenario(
        "update",
        "update with a payload near the limit",
        lambda c: c.fill(1)[0],
        lambda c, job: c.store.update(Q, job.id, payload=c.big(), priority=5),
    ),
    Scenario(
        "delete",
        "delete of a big job",
        lambda c: c.fill(1)[0],
        lambda c, job: c.store.delete(Q, job.id),
    ),
    Scenario(
        "cancel",
        "cancel of a big job",
        lambda c: c.fill(1)[0],
        lambda c, job: c.store.cancel(Q, job.id),
    ),
    Scenario(
        "retry_dead",
        "retry_dead of N big dead jobs (limit N)",
        lambda c: c.dead(),
        lambda c, _: c.store.retry_dead(Q, limit=c.jobs),
    ),
    Scenario(
        "purge",
        "purge of N big jobs",
        lambda c: c.fill(),
        lambda c, _: c.store.purge(Q),
    ),
    Scenario(
        "migrate",
        "migrate of N big layout-2 records, batch 10,000",
        _migrate_setup,
        lambda c, _: c.store.migrate(Q, batch=10_000),
    ),
    Scenario(
        "list_jobs",
        "list of N big jobs (no limit)",
        lambda c: c.fill(),
        lambda c, _: c.store.list(Q),
    ),
    Scenario(
        "peek",
        "peek of N big jobs, limit 10,000",
        lambda c: c.fill(),
        lambda c, _: c.store.peek(Q, 10_000),
    ),
    Scenario(
        "list_jobs",
        "list of 10 small completed jobs, then N big ones (1.5 MB records)",
        _mixed_done_setup,
        lambda c, _: c.store.list(Q, state=redisq.JobState.COMPLETED),
    ),
    Scenario(
        "peek",
        "peek of 10,000 small jobs, limit 10,000",
        lambda c: c.small(10_000),
        lambda c, _: c.store.peek(Q, 10_000),
    ),
    Scenario(
        "list_jobs",
        "list of 10,000 small jobs",
        lambda c: c.small(10_000),
        lambda c, _: c.store.list(Q),
    ),
    Scenario(
        "migrate",
        "migrate of 10,000 small layout-2 records, batch 10,000",
        lambda c: _migrate_setup(c, small=10_000),
        lambda c, _: c.store.migrate(Q, batch=10_000),
    ),
    Scenario(
        "ack",
        "ack_many of N small jobs trimming a done set of 20,000 (trim_batch 10,000)",
        _trim_setup,
        lambda c, jobs: c.store.ack_many(jobs),
        lambda: Retention(completed=0, trim_batch=10_000),
    ),
    Scenario(
        "ack",
        "ack_many of N big jobs into a done set of N big jobs over its limit",
        _big_trim_setup,
        lambda c, jobs: c.store.ack_many(jobs),
        lambda: Retention(completed=0),
    ),
    Scenario(
        "ack",
        "ack_many of N small jobs into a done set of 1,100 big jobs over its limit",
        _small_over_big_setup,
        lambda c, jobs: c.store.ack_many(jobs),
        lambda: Retention(completed=0),
    ),
    Scenario(
        "get",
        "get of a big record (payload, progress near the limit)",
        lambda c: c.store.progress(c.leased(1)[0], c.big()),
        lambda c, job: c.store.get(Q, job.id),
    ),
    Scenario("counts", "counts", lambda c: c.fill(10), lambda c, _: c.store.counts(Q)),
    Scenario(
        "lock", "lock", lambda c: None, lambda c, _: c.store.lock(Q, "x" * 256, "w" * 200, 10**9)
    ),
    Scenario("unlock", "unlock", lambda c: None, lambda c, _: c.store.unlock(Q, "x", "w")),
    Scenario("set_paused", "pause", lambda c: None, lambda c, _: c.store.pause(Q)),
]


def _slowest(admin: redis.Redis, sha: str) -> tuple[float, int]:
    """The longest call of the script with `sha` in the slowlog (ms), and how many calls."""
    entries = admin.slowlog_get(1_000_000)
    worst, calls = 0.0, 0
    for entry in entries:
        args = entry["command"].split()
        if len(args) > 1 and args[0].lower() in (b"evalsha", b"eval") and args[1] == sha.encode():
            calls += 1
            worst = max(worst, entry["duration"] / 1000)
    return worst, calls


class CpuMeter:
    """Runs a store's calls one at a time and records the server's main-thread CPU time of
    each script call (INFO cpu before and after it, less what the INFO pair itself costs).

    Unlike the slowlog's wall time, CPU time does not grow when the server waits for a core,
    so it is the steadier figure on a busy machine.
    """

    def __init__(self, store: redisq.Store, admin: redis.Redis, sha: str) -> None:
        self.admin = admin
        self.sha = sha
        self.cpu_ms: list[float] = []
        self._transport = store._transport
        self._run = self._transport.run
        pairs = sorted(self._cpu_pair_ms() for _ in range(9))
        self._overhead = pairs[len(pairs) // 2]

    def _cpu(self) -> float:
        info = self.admin.info("cpu")
        return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])

    def _cpu_pair_ms(self) -> float:
        return 1000 * (-self._cpu() + self._cpu())

    def run(self, call: Any) -> Any:
        if call.spec is None or call.spec.sha != self.sha:
            return self._run(call)
        before = self._cpu()
        try:
            return self._run(call)
        finally:
            self.cpu_ms.append(max(0.0, 1000 * (self._cpu() - before) - self._overhead))

    def pipeline(self, calls: list[Any]) -> list[Any]:
        return [self.run(c) for c in calls]

    def __enter__(self) -> CpuMeter:
        self._transport.run = self.run
        self._transport.pipeline = self.pipeline
        return self

    def __exit__(self, *exc: object) -> None:
        del self._transport.run
        del self._transport.pipeline


#: Options of every store the benchmark opens: a socket timeout long enough that a slow call
#: (before the caps) is not sent again by redis-py's retry, which would distort the figures.
OPTIONS: dict[str, Any] = {"socket_timeout": 600}


def _run_once(
    sc: Scenario, args: argparse.Namespace, url: str, admin: redis.Redis, private: bool
) -> tuple[float, int, float, float]:
    """Set a scenario up and run it twice: its script's longest call in wall time (slowlog)
    and, in a second run that sends one call at a time, in server CPU time (ms); the calls,
    and the wall time of the first run."""
    prefix = new_prefix("caps")
    store = redisq.connect(url, prefix=prefix, retention=sc.retention(), **OPTIONS)
    ctx = Ctx(store, admin, QueueKeys.build(prefix, Q), args.jobs, args.size, url, prefix)
    try:
        state = sc.setup(ctx)
        admin.config_set("slowlog-log-slower-than", 0)
        admin.slowlog_reset()
        start = time.perf_counter()
        sc.action(ctx, state)
        wall = time.perf_counter() - start
        admin.config_set("slowlog-log-slower-than", 10_000)
        worst, calls = _slowest(admin, script(sc.name).sha)
    finally:
        store.close()
        delete_prefix(admin, prefix, private)
    prefix = new_prefix("caps")
    store = redisq.connect(url, prefix=prefix, retention=sc.retention(), **OPTIONS)
    ctx = Ctx(store, admin, QueueKeys.build(prefix, Q), args.jobs, args.size, url, prefix)
    try:
        state = sc.setup(ctx)
        with CpuMeter(store, admin, script(sc.name).sha) as meter:
            sc.action(ctx, state)
    finally:
        store.close()
        delete_prefix(admin, prefix, private)
    return worst, calls, wall, max(meter.cpu_ms, default=0.0)


def run(args: argparse.Namespace) -> list[Figure]:
    """Measure each scenario's longest script call."""
    options = {"jobs": args.jobs, "size": args.size, "rounds": args.rounds}
    if args.payload_limit != 512 * 1024:
        options["payload_limit"] = args.payload_limit
    if args.only:
        options["only"] = args.only
    cmd = command_line(SCRIPT, options, args.url)
    print(f"## script caps: {args.jobs:,} jobs of {args.size:,} bytes\n# {cmd}", flush=True)
    only = {s for s in args.only.split(",") if s}
    OPTIONS["payload_limit"] = args.payload_limit
    rounds = max(1, args.rounds)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        admin.config_set("slowlog-max-len", 1_000_000)
        for sc in SCENARIOS:
            if only and sc.name not in only:
                continue
            runs = [_run_once(sc, args, server.url, admin, server.private) for _ in range(rounds)]
            worst, calls, wall, _ = min(runs)
            cpu = min(r[3] for r in runs)
            spread = ", ".join(f"{r[0]:.1f}/{r[3]:.1f}" for r in runs)
            print(
                f"{sc.name:<11} {worst:8.2f} ms wall, {cpu:6.2f} ms CPU, longest of {calls:>4}"
                f" call(s) (rounds wall/CPU: {spread}), {wall:6.2f} s: {sc.what}",
                flush=True,
            )
            figures.append(
                Figure(
                    f"{sc.name}: {sc.what}",
                    f"{worst:.2f} ms wall, {cpu:.2f} ms server CPU (longest of {calls} calls;"
                    f" lowest of {rounds} rounds)",
                    f"<= {GOAL_MS:.0f} ms",
                    worst <= GOAL_MS,
                    cmd,
                )
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print the table."""
    return run_main(parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
