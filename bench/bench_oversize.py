"""Oversized payloads: how long `enqueue` takes to refuse a 100 MB payload (PayloadTooLarge).

The payload limit is 512 KiB; a refusal should cost about what encoding the limit costs, not
what encoding the whole value would. Shapes: one big str and bytes (checked by length), and
containers of many items (checked by a bounded walk before msgpack runs).

    python bench/bench_oversize.py [--mb 100]

Runs on memory:// (nothing reaches a server: the refusal comes first). Timings are the best
of 3 refusals each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from _common import Figure, base_parser, command_line, run_main

import redisq

SCRIPT = "bench_oversize.py"


def parser() -> argparse.ArgumentParser:
    """Return this script's argument parser."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else SCRIPT)
    p.add_argument("--mb", type=int, default=100, help="payload size in MB (100)")
    return p


def shapes(mb: int) -> dict[str, Callable[[], Any]]:
    """Payloads of about `mb` MB, by shape."""
    n = mb * 1_000_000
    return {
        "one str": lambda: "x" * n,
        "one bytes": lambda: b"x" * n,
        "list of 1 MB bytes": lambda: [b"x" * 1_000_000 for _ in range(mb)],
        "list of 100-char str": lambda: ["x" * 100] * (n // 100),
        "list of small ints": lambda: list(range(n // 5)),
        "dict of 100-byte values": lambda: {str(i): b"v" * 100 for i in range(n // 110)},
        "nested lists of str": lambda: [["y" * 1_000] * 1_000 for _ in range(mb)],
    }


def run(args: argparse.Namespace) -> list[Figure]:
    """Time the refusal of each shape."""
    cmd = command_line(SCRIPT, {"mb": args.mb}, None)
    print(f"## refusing {args.mb} MB payloads\n# {cmd}", flush=True)
    store = redisq.connect("memory://bench-oversize")
    figures: list[Figure] = []
    try:
        for name, make in shapes(args.mb).items():
            payload = make()
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                try:
                    store.enqueue("q", payload)
                except redisq.PayloadTooLarge:
                    pass
                else:
                    raise SystemExit(f"{name}: the payload was accepted")
                best = min(best, time.perf_counter() - start)
            del payload
            print(f"{name:<26} refused in {1000 * best:9.2f} ms", flush=True)
            figures.append(
                Figure(f"refuse {args.mb} MB: {name}", f"{1000 * best:.2f} ms", "", None, cmd)
            )
    finally:
        store.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the shapes and print the table."""
    return run_main(parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
