"""Dashboard page times with 1,000,000 jobs in one queue (issue 14 point 4).

Fills a queue on a private server with enqueue_many in calls of 1,000 (plus dead, scheduled
and leased jobs, and one job with 10 failed attempts, each with a 2 KiB traceback), then
serves each page of `redisq.dashboard.app` in-process (httpx's ASGI
transport: the app's own time, Redis round trips included, no network or browser) and prints
each page's median and worst time over the rounds, and the Redis commands one page costs
(INFO commandstats, scripts' own commands included).

    python bench/bench_dashboard.py [--jobs 1000000] [--rounds 20] [--url ...]

Speed is never asserted; the tests check only that a page's commands do not grow with the
queue (tests/dashboard/test_app.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import redis
from _common import (
    Figure,
    base_parser,
    command_line,
    delete_prefix,
    new_prefix,
    print_environment,
    run_main,
    step,
)
from _server import bench_server

import redisq
from redisq import dashboard

SCRIPT = "bench_dashboard.py"
JOBS, QUICK_JOBS = 1_000_000, 20_000
ROUNDS, QUICK_ROUNDS = 20, 5
BATCH = 1_000
#: Jobs of each other state (dead, scheduled, leased, completed).
OTHERS = 2_000
QUEUE = "big"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"ready jobs ({JOBS:,})")
    p.add_argument("--rounds", type=int, default=None, help=f"requests per page ({ROUNDS})")
    return p


def fill(store: redisq.Store, jobs: int) -> str:
    """Enqueue `jobs` ready jobs in calls of 1,000, and OTHERS of each other state."""
    for start in range(0, jobs, BATCH):
        n = min(BATCH, jobs - start)
        store.enqueue_many(
            QUEUE,
            [{"i": start + i, "to": f"user{start + i}@example.com"} for i in range(n)],
            name="emails.send",
            priority=(start // BATCH) % 5,
        )
    store.enqueue_many(QUEUE, list(range(OTHERS)), name="later", delay_ms=3_600_000)
    claimed: list[redisq.Job] = []
    while len(claimed) < OTHERS * 3:
        want = min(1_000, OTHERS * 3 - len(claimed))
        claimed += store.claim(QUEUE, worker="bench", count=want, lease_ms=3_600_000)
    for job in claimed[:OTHERS]:
        store.nack(job, error=f"ValueError: bad input {job.id}", dead=True)
    store.ack_many(claimed[OTHERS : 2 * OTHERS])
    fail_ten_times(store)
    return claimed[-1].id


#: The job whose page shows a full attempt history (10 attempts, the most kept).
FAILING = "failing-10"
TRACE = "".join(
    f'  File "app/tasks.py", line {n}, in step{n}\n    step{n + 1}()\n' for n in range(20)
)


def fail_ten_times(store: redisq.Store) -> None:
    """Give job FAILING 10 failed attempts (of 12), each with a traceback of about 2 KiB."""
    store.enqueue(
        QUEUE,
        {"to": "x@example.com"},
        id=FAILING,
        name="emails.send",
        max_attempts=12,
        priority=1000,
    )
    for n in range(10):
        (job,) = store.claim(QUEUE, worker=f"bench-{n}")
        assert job.id == FAILING
        summary = f"ConnectionError: attempt {n + 1}"
        error = f"{summary}\n\nTraceback (most recent call last):\n{TRACE}{summary}"
        store.nack(job, error=error, delay_ms=0 if n < 9 else 3_600_000)


def pages(last_id: str) -> dict[str, str]:
    """The pages timed, by label."""
    return {
        "overview": "/",
        "overview (live JSON)": "/api/overview",
        "queue: ready, first page": f"/queues/{QUEUE}",
        "queue: ready, page 10,000": f"/queues/{QUEUE}?page=10000",
        "queue: ready, last page (desc)": f"/queues/{QUEUE}?order=desc",
        "queue: dead": f"/queues/{QUEUE}?state=dead",
        "queue: search by id": f"/queues/{QUEUE}?id={last_id}",
        "queue: search by name (5,000 read)": f"/queues/{QUEUE}?name=nomatch",
        "job": f"/queues/{QUEUE}/jobs/{last_id}",
        "job with 10 failed attempts": f"/queues/{QUEUE}/jobs/{FAILING}",
        "dead letters, filtered": f"/queues/{QUEUE}/dead?error=bad",
        "workers": "/workers",
        "schedules": "/schedules",
        "redis": "/redis",
    }


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def time_pages(
    url: str, prefix: str, paths: dict[str, str], rounds: int, admin: redis.Redis
) -> dict[str, tuple[float, float, int]]:
    app = dashboard.app(url, prefix=prefix)
    out: dict[str, tuple[float, float, int]] = {}
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
        for label, path in paths.items():
            r = await c.get(path)  # warm: connections, scripts
            assert r.status_code in (200, 303), (path, r.status_code)
            before = commands(admin)
            await c.get(path)
            calls = commands(admin) - before
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                await c.get(path)
                times.append((time.perf_counter() - start) * 1000)
            out[label] = (statistics.median(times), max(times), calls)
    await app.state.store.close()
    return out


def run(args: argparse.Namespace) -> list[Figure]:
    """Fill the queue, time each page, return the figures."""
    jobs = args.jobs or (QUICK_JOBS if args.quick else JOBS)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    command = command_line(SCRIPT, {"jobs": jobs, "rounds": rounds}, args.url)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("dashboard")
        store = redisq.connect(server.url, prefix=prefix)
        try:
            with step(f"enqueue {jobs:,} jobs in calls of {BATCH:,}"):
                last_id = fill(store, jobs)
            counts = {str(k): v for k, v in store.counts(QUEUE).items()}
            print(f"# queue {QUEUE!r}: {counts}", flush=True)
            results = asyncio.run(time_pages(server.url, prefix, pages(last_id), rounds, admin))
            for label, (median, worst, calls) in results.items():
                # A search reads up to SEARCH_WINDOW records: its own, looser goal.
                goal = 500 if "search by name" in label else 100
                figures.append(
                    Figure(
                        f"{label}: median ms (worst), commands",
                        f"{median:.1f} ({worst:.1f}), {calls}",
                        f"< {goal} ms",
                        median < goal,
                        command,
                    )
                )
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
    return figures


if __name__ == "__main__":
    raise SystemExit(run_main(parser(), run))
