"""Run chaos scenarios from a shell: ``python -m tests.chaos [SCENARIO...] [--seed N]``.

``make chaos`` runs this (``make chaos SCENARIOS="S2 S6" SEED=42``). Each run prints its
seed first, then its figures in the form docs/reliability.md publishes (``--markdown`` adds
the table rows). The exit status is 1 when any run violated an invariant; the failed runs'
ledgers are kept (their folder is printed) and ``--keep`` keeps every one.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

from .checker import recheck
from .figures import block, markdown_header, markdown_row
from .scenarios import SCENARIOS, run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=["S1"],
        help=f"scenarios to run (default S1): {', '.join(SCENARIOS)}, or 'all'",
    )
    parser.add_argument("--seed", type=int, help="seed of the first run (default: random)")
    parser.add_argument("--runs", type=int, default=1, help="runs per scenario (seed, seed+1...)")
    parser.add_argument(
        "--server", choices=["valkey", "redis7"], default="valkey", help="server binary"
    )
    parser.add_argument("--dir", type=Path, help="folder for the runs' ledgers (default: a temp)")
    parser.add_argument("--keep", action="store_true", help="keep every run's ledger")
    parser.add_argument("--markdown", action="store_true", help="print the table rows at the end")
    parser.add_argument(
        "--sabotage", action="append", default=[], help="run with a broken script (a proof)"
    )
    parser.add_argument(
        "--recheck", type=Path, metavar="DIR", help="check a kept run's ledger again, and exit"
    )
    args = parser.parse_args(argv)
    if args.recheck is not None:
        report = recheck(args.recheck)
        print(block(report, f"python -m tests.chaos --recheck {args.recheck}"))
        return 0 if report.ok else 1
    names = list(SCENARIOS) if args.scenarios == ["all"] else args.scenarios
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    seed = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    base = args.dir or Path(tempfile.mkdtemp(prefix="redisq-chaos-"))
    rows: list[str] = []
    failed = 0
    for name in names:
        for n in range(args.runs):
            run_seed = seed + n
            command = f"make chaos SCENARIOS={name} SEED={run_seed}"
            if args.server != "valkey":
                command += f" CHAOS_ARGS='--server {args.server}'"
            print(f"\n== {name} seed {run_seed} (replay: {command})", flush=True)
            run_dir = base / f"{name}-{run_seed}"
            report = run_scenario(
                name, run_seed, run_dir, server=args.server, sabotage=args.sabotage
            )
            print(block(report, command), flush=True)
            rows.append(markdown_row(report, command))
            if report.ok and not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                print(f"  ledger kept in {run_dir}")
                failed += not report.ok
    if args.markdown:
        print("\n" + markdown_header())
        print("\n".join(rows))
    if not args.keep and not any(base.iterdir()) and args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
