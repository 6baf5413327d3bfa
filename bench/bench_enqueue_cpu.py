"""CPU per single enqueue, client and server, for redisq's task API or huey's (beside it).

Client: this process's CPU time (socket I/O included); server: the change in INFO's
used_cpu_user + used_cpu_sys; both over --jobs calls, against the server at --url (start one:
`redis-server --port 6399 --save '' --appendonly no`). With one client the two take turns,
so their sum per call bounds the rate of an idle machine, whatever other work shares it now.
huey runs from its peer venv (bench/peers, `make bench-peers` builds it):

    URL=redis://127.0.0.1:6399
    python bench/bench_enqueue_cpu.py --url $URL --queue redisq
    .bench-peers/huey/bin/python bench/bench_enqueue_cpu.py --url $URL --queue huey

Alternate the two a few times and compare medians.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import redis


def _redisq_call(url: str, prefix: str) -> Callable[[int], Any]:
    import redisq

    app = redisq.App(url, prefix=prefix)
    return app.task(name="bench.noop", queue="bench")(lambda i: None).enqueue


def _huey_call(url: str, prefix: str) -> Callable[[int], Any]:
    from huey import RedisHuey

    huey = RedisHuey(prefix, url=url, blocking=True)

    @huey.task(name="noop")
    def noop(i: int) -> None:
        pass

    return noop  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True)
    p.add_argument("--queue", choices=("redisq", "huey"), default="redisq")
    p.add_argument("--jobs", type=int, default=10_000)
    args = p.parse_args()
    admin = redis.Redis.from_url(args.url)
    prefix = f"cpu{time.time_ns()}"
    call = (_redisq_call if args.queue == "redisq" else _huey_call)(args.url, prefix)
    call(0)  # connected, script loaded

    def server_cpu() -> float:
        info = admin.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    s0, c0, t0 = server_cpu(), time.process_time(), time.perf_counter()
    for i in range(args.jobs):
        call(i)
    wall = time.perf_counter() - t0
    client, server = time.process_time() - c0, server_cpu() - s0
    n = args.jobs
    print(
        f"{args.queue}: client {1e6 * client / n:.1f} us + server {1e6 * server / n:.1f} us CPU"
        f" per enqueue; {n / wall:,.0f} /s"
    )
    for key in admin.scan_iter(f"*{prefix}*"):
        admin.delete(key)


if __name__ == "__main__":
    main()
