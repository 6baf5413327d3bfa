"""A worker's throughput on a 3-master cluster before and during the outage of one master
(issue 9, point 1).

A local Redis Cluster of three masters (``cluster-require-full-coverage no``, so the live
masters keep serving their slots) holds one queue per master, each filled with --jobs no-op
jobs. One worker (in this process: --concurrency handler threads, --prefetch) works all
three. After --before seconds the master of the second queue is killed (SIGKILL); the worker
goes on for --during seconds; then the master is restarted and the worker runs --after
seconds more. The figures: jobs/s completed on the two other masters' queues before and
during the outage, the longest time they completed nothing after the kill, and how long
after the restart the third queue runs jobs again (its claims back off up to 30 s). Jobs are
counted when their handler runs (in this process).

Before the fix, a refusing queue stopped the worker on every queue for the whole outage.

    python bench/bench_cluster_outage.py [--jobs 150000] [--before 5] [--during 10] [--after 20]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from _common import Figure, base_parser, command_line, fmt_rate, run_main, step
from redis.crc import key_slot

import redisq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's local cluster (tests/support/cluster.py)

from tests.support.cluster import ClusterProcess  # noqa: E402
from tests.support.servers import redis_binary, valkey_binary  # noqa: E402

SCRIPT = "bench_cluster_outage.py"
JOBS, QUICK_JOBS = 150_000, 30_000
TASK = "bench.noop"
PREFIX = "outage"
SAMPLE_S = 0.1


def _queues(cluster: ClusterProcess) -> list[str]:
    chosen: dict[int, str] = {}
    for n in range(1000):
        slot = key_slot(f"{{{PREFIX}:q{n}}}:ready".encode())
        chosen.setdefault(cluster.node_for_slot(slot).port, f"q{n}")
    return [chosen[node.port] for node in cluster.nodes]


class Sampler:
    """Jobs run per queue, counted by the handler in this process and sampled every
    SAMPLE_S (reading Redis would stall on the queue whose master is down)."""

    def __init__(self, queues: list[str]) -> None:
        self.queues = queues
        self.counts = dict.fromkeys(queues, 0)
        self.lock = threading.Lock()
        self.samples: list[tuple[float, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def ran(self, job: redisq.Job) -> None:
        """Count a job run by the handler."""
        with self.lock:
            self.counts[job.queue] += 1

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            with self.lock:
                values = [self.counts[q] for q in self.queues]
            self.samples.append((time.perf_counter(), values))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def at(self, when: float) -> list[int]:
        """The counts of the last sample at or before `when`."""
        last = self.samples[0][1]
        for t, values in self.samples:
            if t > when:
                break
            last = values
        return last

    def longest_gap(self, start: float, end: float, indexes: list[int]) -> float:
        """The longest time within [start, end] in which the queues at `indexes` completed
        nothing (all of them)."""
        gap, since, previous = 0.0, start, None
        for t, values in self.samples:
            if t < start or t > end:
                continue
            total = sum(values[i] for i in indexes)
            if previous is not None and total > previous:
                since = t
            gap = max(gap, t - since)
            previous = total
        return gap

    def first_progress(self, start: float, index: int) -> float | None:
        """Seconds after `start` until queue `index` completed a job, or None."""
        base = self.at(start)[index]
        for t, values in self.samples:
            if t > start and values[index] > base:
                return t - start
        return None


def run(args: argparse.Namespace) -> list[Figure]:
    jobs = QUICK_JOBS if args.quick and args.jobs == JOBS else args.jobs
    options = {
        "jobs": jobs,
        "before": args.before,
        "during": args.during,
        "after": args.after,
        "concurrency": args.concurrency,
        "prefetch": args.prefetch,
    }
    command = command_line(SCRIPT, options, None)
    binary = valkey_binary() or redis_binary()
    if binary is None:
        raise SystemExit("bench: no valkey-server or redis-server binary")
    extra = ["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000"]
    extra += ["--appendonly", "yes"]
    with ClusterProcess(binary, extra_args=extra) as cluster:
        url = cluster.cluster_url
        queues = _queues(cluster)
        app = redisq.App(url, prefix=PREFIX)
        sampler = Sampler(queues)

        def noop(n: int, ctx: redisq.Context) -> None:
            sampler.ran(ctx.job)

        app.task(name=TASK, queue=queues[0])(noop)
        with step(f"enqueue {jobs:,} jobs in each of {', '.join(queues)}"):
            for queue in queues:
                for start in range(0, jobs, 1_000):
                    payloads = [
                        {"args": [n], "kwargs": {}} for n in range(start, min(jobs, start + 1_000))
                    ]
                    app.store.enqueue_many(queue, payloads, name=TASK)
        worker = redisq.Worker(
            app,
            queues=queues,
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            handle_signals=False,
        )
        sampler.start()
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            time.sleep(1.0)  # warm-up
            t_before = time.perf_counter()
            time.sleep(args.before)
            t_kill = time.perf_counter()
            cluster.nodes[1].kill()
            print("  master of", queues[1], "killed", flush=True)
            time.sleep(args.during)
            t_restart = time.perf_counter()
            cluster.nodes[1].start()
            print("  master restarted", flush=True)
            time.sleep(args.after)
            t_end = time.perf_counter()
        finally:
            worker.stop(grace=False)
            thread.join(30)
            sampler.stop()
            app.close()
    if args.timeline:
        print("  timeline (s from the kill: jobs completed per queue in that second)")
        t = t_before
        while t < t_end:
            a, b = sampler.at(t), sampler.at(t + 1)
            cells = "  ".join(f"{y - x:6d}" for x, y in zip(a, b, strict=True))
            print(f"  {t - t_kill:6.1f}  {cells}")
            t += 1
    live = [0, 2]

    def rate(start: float, end: float, indexes: list[int]) -> float:
        a, b = sampler.at(start), sampler.at(end)
        return sum(b[i] - a[i] for i in indexes) / (end - start)

    before = rate(t_before, t_kill, live)
    during = rate(t_kill, t_restart, live)
    down = rate(t_kill + 1.0, t_restart, [1])
    gap = sampler.longest_gap(t_kill, t_restart, live)
    back = sampler.first_progress(t_restart, 1)
    after = rate(t_restart, t_end, [0, 1, 2])
    live_names = f"{queues[0]} and {queues[2]}"
    return [
        Figure(
            f"jobs/s on the live masters' queues ({live_names}) before the outage",
            fmt_rate(before, "jobs/s"),
            command=command,
        ),
        Figure(
            f"jobs/s on the live masters' queues during the outage of {queues[1]}'s master"
            f" ({args.during:g} s)",
            f"{fmt_rate(during, 'jobs/s')} ({during / before:.0%} of before);"
            f" {queues[1]}: {fmt_rate(down, 'jobs/s')}",
            "> 0 (the other queues keep working)",
            during > 0,
            command,
        ),
        Figure(
            "longest time the live masters' queues completed nothing during the outage",
            f"{gap:.2f} s",
            command=command,
        ),
        Figure(
            f"after the restart: first completion on {queues[1]}; jobs/s on all three",
            ("never" if back is None else f"{back:.1f} s")
            + f"; {fmt_rate(after, 'jobs/s')} over {args.after:g} s",
            command=command,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs enqueued in each queue")
    parser.add_argument("--before", type=float, default=5.0, help="seconds before the kill")
    parser.add_argument("--during", type=float, default=10.0, help="seconds of outage")
    parser.add_argument("--after", type=float, default=20.0, help="seconds after the restart")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--timeline", action="store_true", help="print completions per second")
    return run_main(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
