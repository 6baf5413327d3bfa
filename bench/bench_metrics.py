"""Cost of a worker's Prometheus metrics (docs/metrics.md): the default drain with metrics off
and on, interleaved.

One worker process with the defaults drains N no-op task jobs (bench_worker.py's drain: the
clock runs from `resume` to the last completion), once with no metrics option and once with
``metrics_port=0`` (served on loopback, not scraped during the drain), for --rounds rounds in
turn. Reported: the median rate and the worker's CPU per job of each, and the difference.

    python bench/bench_metrics.py [--jobs 20000] [--rounds 5] [--url redis://...]

Whether metrics *off* costs anything against the code before them is measured by
bench_worker.py on both checkouts (``PYTHONPATH=/path/to/other/checkout``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis
from _common import Figure, base_parser, command_line, fmt_rate, print_environment, run_main
from _server import bench_server
from _workers import describe_code
from bench_worker import JOBS, QUICK_JOBS, drain

SCRIPT = "bench_metrics.py"
SETTINGS = {"metrics off": {}, "metrics on": {"metrics_port": 0, "metrics_host": "127.0.0.1"}}


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per drain ({JOBS:,})")
    p.add_argument("--rounds", type=int, default=5, help="drains of each setting, in turn (5)")
    return p


def _median(found: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(found, key=lambda r: r["rate"])
    return ordered[(len(ordered) - 1) // 2]


def run(args: argparse.Namespace) -> list[Figure]:
    """Drain with metrics off and on, in turn; return the two figures."""
    jobs = (QUICK_JOBS if args.quick else JOBS) if args.jobs is None else args.jobs
    cmd = command_line(SCRIPT, {"jobs": jobs, "rounds": args.rounds}, args.url)
    print(f"## worker metrics: drain {jobs:,} no-op jobs, metrics off and on\n# {cmd}", flush=True)
    print(f"# {describe_code()}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SETTINGS}
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        try:
            for _ in range(args.rounds):
                for label, options in SETTINGS.items():
                    r = drain(server.url, admin, jobs, 1, dict(options))
                    runs[label].append(r)
                    print(
                        f"  {label}: {r['rate']:,.0f} jobs/s; worker {r['worker_us']:.1f} µs/job",
                        flush=True,
                    )
        finally:
            admin.close()
    figures = []
    medians = {label: _median(found) for label, found in runs.items()}
    for label, found in runs.items():
        rates = sorted(r["rate"] for r in found)
        cpu = sorted(r["worker_us"] for r in found)
        figures.append(
            Figure(
                f"1 worker process, defaults, {label}",
                f"{fmt_rate(medians[label]['rate'], 'jobs/s')} (median of {len(rates)}:"
                f" {rates[0]:,.0f}-{rates[-1]:,.0f}); worker CPU {cpu[len(cpu) // 2]:.1f} µs/job"
                f" ({cpu[0]:.1f}-{cpu[-1]:.1f})",
                command=cmd,
            )
        )
    off, on = (sorted(r["worker_us"] for r in runs[k]) for k in SETTINGS)
    figures.append(
        Figure(
            "worker CPU per job that metrics add (median on - median off)",
            f"{on[len(on) // 2] - off[len(off) // 2]:+.1f} µs/job",
            command=cmd,
        )
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the script."""
    return run_main(parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
