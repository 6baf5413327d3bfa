"""Run every benchmark (store and worker runtime) and print one markdown table of the figures.

    python bench/run_all.py [--quick] [--url redis://...]

Each script starts its own private valkey-server (or uses --url) and can also run alone; the
"command" column gives the exact command line that reproduces each figure. Timings are printed
only, never asserted: the machine's load moves them (see the load average printed per script).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType

import bench_claim_ack
import bench_claim_flat
import bench_enqueue
import bench_enqueue_many
import bench_memory
import bench_server_cpu
import bench_worker
from _common import Figure, base_parser, print_table

SCRIPTS: tuple[ModuleType, ...] = (
    bench_enqueue,
    bench_enqueue_many,
    bench_claim_ack,
    bench_claim_flat,
    bench_memory,
    bench_worker,
    bench_server_cpu,
)


def parser() -> argparse.ArgumentParser:
    """Return run_all's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else "run_all.py")
    p.add_argument(
        "--only",
        action="append",
        choices=[m.__name__ for m in SCRIPTS],
        help="run only this script (repeatable)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the scripts in turn and print all their figures as one table."""
    args = parser().parse_args(argv)
    chosen = [m for m in SCRIPTS if not args.only or m.__name__ in args.only]
    figures: list[Figure] = []
    started = time.perf_counter()
    for module in chosen:
        script_args = ["--quick"] if args.quick else []
        if args.url is not None:
            script_args += ["--url", args.url]
        make_parser: Callable[[], argparse.ArgumentParser] = module.parser
        run: Callable[[argparse.Namespace], list[Figure]] = module.run
        figures += run(make_parser().parse_args(script_args))
        print(flush=True)
    minutes = (time.perf_counter() - started) / 60
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"## results ({minutes:.1f} min; load average now {load})\n")
    print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
