"""The `redisq` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from redisq._version import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `redisq <command> ...`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="redisq", description="redisq: a Redis-native job queue.")
    parser.add_argument("--version", action="version", version=f"redisq {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser(
        "demo",
        help="run 20,000 jobs through a worker pool on an embedded server",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from redisq.demo import main as demo_main

        return demo_main(rest)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
