"""Server time of one claim, claim_and_ack or reap script call at its caps (issue 9, point 3).

Each case sets up the worst a call may meet at its cap, runs the call --rounds times, and reads
each call's server time from INFO commandstats (CONFIG RESETSTAT before the call; the usec of
EVALSHA cover the whole script, its redis.call()s included: SLOWLOG at 0 would log every
inner command too and slow the script down); the table gives the fastest, the median and the
slowest. On a busy machine the slowest includes time the server waited for a core. The caps:
at most 250 leases reaped and 250 due jobs promoted per call, at most 1,000 jobs claimed, and
about 512 KiB of job records moved per call (lua/lib/budget.lua).

Cases: reap of 250 expired leases to the ready set, and to the dead set while the dead set is
at its retention limit (so each call also trims 250 records); the same with large payloads
(the byte budget stops the call); claim(count=1000) of small jobs behind a full housekeeping
batch (100 due jobs promoted, 100 expired leases reaped), and of large payloads;
claim_and_ack behind a housekeeping batch of large payloads.

Goal: every call within about 20 ms on the reference machine (2 cores).

    python bench/bench_caps.py [--rounds 20] [--big 500000] [--url redis://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import redis
from _common import (
    Figure,
    base_parser,
    command_line,
    command_stats,
    delete_prefix,
    new_prefix,
    print_environment,
    reset_stats,
    run_main,
)
from _server import bench_server

import redisq
from redisq._core.claim import MAX_REAP_BATCH
from redisq._core.scripts import load_all

SCRIPT = "bench_caps.py"
ROUNDS, QUICK_ROUNDS = 20, 5
BIG = 500_000
GOAL_MS = 20.0
SMALL = {"to": "ada@example.com", "n": 1}


class Case:
    """One measured call: `prepare(store, queue)` sets the stage (untimed), `call` runs it."""

    def __init__(
        self,
        label: str,
        prepare: Callable[[redisq.Store, str], None],
        call: Callable[[redisq.Store, str], object],
    ) -> None:
        self.label = label
        self.prepare = prepare
        self.call = call


def _redis_ms(store: redisq.Store) -> int:
    seconds, micros = store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _expire(store: redisq.Store, queue: str, payload: object, n: int, attempts: int) -> None:
    """Leave `n` expired leases in `queue`."""
    for start in range(0, n, 500):
        store.enqueue_many(queue, [payload] * min(500, n - start), max_attempts=attempts)
    deadline, leased = 0, 0
    while leased < n:
        got = store.claim(queue, worker="gone", count=min(1000, n - leased), lease_ms=2_000)
        leased += len(got)
        deadline = max([deadline, *(j.lease_deadline_ms or 0 for j in got)])
    while _redis_ms(store) <= deadline:
        time.sleep(0.02)


def _fill_dead(store: redisq.Store, queue: str, n: int) -> None:
    """Put the dead set of `queue` at its retention limit (10,000 by default)."""
    for start in range(0, n, 1000):
        store.enqueue_many(queue, [SMALL] * min(1000, n - start), max_attempts=1)
        for job in store.claim(queue, worker="w", count=1000):
            store.nack(job, dead=True)


def _due(store: redisq.Store, queue: str, payload: object, n: int) -> None:
    store.enqueue_many(queue, [payload] * n, delay_ms=1)
    time.sleep(0.01)


def cases(big: int) -> list[Case]:
    large = b"x" * big

    def one_reap(store: redisq.Store, q: str) -> object:
        # The first script call of reap (not the loop over calls that store.reap makes).
        return store._run(next(redisq._core.claim.reap(store.settings, q, MAX_REAP_BATCH)))

    def reap_small_ready(store: redisq.Store, q: str) -> None:
        _expire(store, q, SMALL, MAX_REAP_BATCH, 3)

    def reap_small_dead(store: redisq.Store, q: str) -> None:
        if store.counts(q)[redisq.JobState.DEAD] < 10_000:
            _fill_dead(store, q, 10_000)
        _expire(store, q, SMALL, MAX_REAP_BATCH, 1)

    def reap_big(attempts: int) -> Callable[[redisq.Store, str], None]:
        return lambda store, q: _expire(store, q, large, 6, attempts)

    def claim_small(store: redisq.Store, q: str) -> None:
        store.purge(q)
        store.enqueue_many(q, [SMALL] * 1000)
        _due(store, q, SMALL, 100)
        _expire(store, q, SMALL, 100, 3)

    def claim_big(store: redisq.Store, q: str) -> None:
        store.purge(q)
        store.enqueue_many(q, [large] * 8)

    def claim_and_ack_big(store: redisq.Store, q: str) -> None:
        store.purge(q)
        _due(store, q, large, 4)
        _expire(store, q, large, 4, 3)
        store.enqueue(q, SMALL)

    def claim_1000(store: redisq.Store, q: str) -> object:
        # One script call of the claim (the client would claim again for the rest).
        call = redisq._core.claim._claim_call(store.settings, q, "w", 1000, 30_000)
        return store._run(call)

    return [
        Case(f"reap: {MAX_REAP_BATCH} expired leases to ready", reap_small_ready, one_reap),
        Case(
            f"reap: {MAX_REAP_BATCH} expired leases to dead, dead set full (trims"
            f" {MAX_REAP_BATCH})",
            reap_small_dead,
            one_reap,
        ),
        Case(f"reap: {big:,} B payloads to ready (byte budget)", reap_big(3), one_reap),
        Case(f"reap: {big:,} B payloads to dead (byte budget)", reap_big(1), one_reap),
        Case(
            "claim(count=1000) of small jobs, after promoting 100 due and reaping 100",
            claim_small,
            claim_1000,
        ),
        Case(f"claim(count=1000) of {big:,} B payloads (byte budget)", claim_big, claim_1000),
        Case(
            f"claim_and_ack after a housekeeping batch of {big:,} B payloads",
            claim_and_ack_big,
            lambda store, q: store.claim_and_ack(q),
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    rounds = QUICK_ROUNDS if args.quick and args.rounds == ROUNDS else args.rounds
    command = command_line(SCRIPT, {"rounds": rounds, "big": args.big}, args.url)
    figures: list[Figure] = []
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("caps")
        store = redisq.connect(
            server.url, prefix=prefix, payload_limit=max(512 * 1024, args.big + 1024)
        )
        for spec in load_all().values():  # no NOSCRIPT round inside a measured call
            admin.script_load(spec.source)
        try:
            for n, case in enumerate(cases(args.big)):
                queue = f"q{n}"
                times: list[float] = []
                for _ in range(rounds):
                    case.prepare(store, queue)
                    reset_stats(admin)
                    case.call(store, queue)
                    stats = command_stats(admin)
                    assert stats.script_calls == 1, stats
                    times.append(stats.script_usec / 1000)
                worst = max(times)
                line = (
                    f"fastest {min(times):.2f} ms, median {statistics.median(times):.2f} ms,"
                    f" slowest {worst:.2f} ms ({rounds} calls)"
                )
                print(f"  {case.label}: {line}", flush=True)
                figures.append(
                    Figure(
                        f"server time of one call: {case.label}",
                        line,
                        f"<= {GOAL_MS:g} ms",
                        worst <= GOAL_MS,
                        command,
                    )
                )
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="calls measured per case")
    parser.add_argument("--big", type=int, default=BIG, help="payload bytes of the large cases")
    return run_main(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
