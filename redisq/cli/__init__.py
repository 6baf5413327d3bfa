"""The `redisq` command line: manage queues and jobs, run workers and a development server.

Each subcommand is added by one function that takes the `Commands` registry (see COMMANDS);
adding a subcommand is writing one such function and listing it there.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from redisq._version import __version__
from redisq.cli._admin import (
    add_migrate,
    add_pause,
    add_purge,
    add_reap,
    add_resume,
    add_retry_dead,
)
from redisq.cli._base import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliParser,
    Commands,
    Context,
    UsageError,
)
from redisq.cli._dashboard import add_dashboard
from redisq.cli._events import add_events
from redisq.cli._jobs import add_enqueue, add_ls, add_show
from redisq.cli._metrics import add_metrics
from redisq.cli._schedules import add_schedule, add_scheduler, add_schedules
from redisq.cli._server import add_server
from redisq.cli._stats import add_stats
from redisq.cli._worker import add_worker
from redisq.cli._workers import add_workers

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Commands",
    "Context",
    "build_parser",
    "main",
]

EPILOG = f"""\
Every command that talks to a server takes --url (default: $REDISQ_URL, else
redis://localhost:6379/0), --prefix (default: $REDISQ_PREFIX, else redisq) and --json
(one JSON document on stdout; errors as {{"error": ...}} on stderr). `redisq COMMAND --help`
describes each command.

exit codes:
  {EXIT_OK:>3}  success
  {EXIT_FAILED:>3}  the operation failed: no such job or queue, or redisq refused it (LeaseLost,
       InvalidTransition, SchemaVersionError, ...)
  {EXIT_USAGE:>3}  usage error: unknown option, bad JSON, a value out of range (the message names
       the field and the limit), purge without --yes, a URL or prefix that cannot work, a
       worker's module that raises on import
  {EXIT_UNREACHABLE:>3}  cannot reach the server (connection refused, timeout, authentication)
  {EXIT_INTERRUPTED:>3}  interrupted by Ctrl-C (`stats --watch` and `server` exit 0 instead)
"""


def _demo(args: argparse.Namespace, ctx: Context) -> int:
    from redisq.demo import main as demo_main

    return demo_main(ctx.rest)


def add_demo(commands: Commands) -> None:
    """Add `redisq demo` (its options are the demo's own: see `redisq demo --help`)."""
    commands.add(
        "demo",
        _demo,
        help="run 20,000 jobs through a worker pool on an embedded server",
        passthrough=True,
    )


#: The subcommands, in the order `redisq --help` lists them: one function each.
COMMANDS: list[Callable[[Commands], None]] = [
    add_enqueue,
    add_ls,
    add_show,
    add_stats,
    add_metrics,
    add_retry_dead,
    add_purge,
    add_pause,
    add_resume,
    add_reap,
    add_migrate,
    add_schedules,
    add_schedule,
    add_worker,
    add_workers,
    add_events,
    add_scheduler,
    add_server,
    add_dashboard,
    add_demo,
]


def build_parser() -> CliParser:
    """Build the parser of `redisq` with every subcommand of COMMANDS."""
    parser = CliParser(
        prog="redisq",
        description="redisq: a Redis-native job queue.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"redisq {__version__}")
    commands = Commands(parser)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `redisq <command> ...` and return the exit code (see EPILOG)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ctx = Context(out=sys.stdout, err=sys.stderr, json="--json" in arguments)
    prog = parser.prog

    def show_warning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        # One line on the command's stderr (ctx as it is then), not Python's two lines with
        # the source line of the caller (`sys.exit(main())` for a script).
        ctx.warning(message, category)

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # shown (once per place), never turned into errors
        warnings.showwarning = show_warning
        try:
            args, rest = parser.parse_known_args(arguments)
            if args.command is None:
                parser.print_help(sys.stderr)
                return EXIT_USAGE
            prog = f"{parser.prog} {args.command}"
            if rest and not args.passthrough:
                raise UsageError(f"unrecognized arguments: {' '.join(rest)}", prog)
            ctx = Context.from_args(args, rest)
            code: int = args.handler(args, ctx)
            return code
        except UsageError as exc:
            if not exc.usage:  # raised by a handler: name the command
                exc.prog = prog
            return ctx.report(exc)
        except SystemExit as exit:  # --help, --version, and the demo's own parser
            code = exit.code if isinstance(exit.code, int) else EXIT_USAGE if exit.code else 0
            return code
        except KeyboardInterrupt:
            ctx.err.write("redisq: interrupted\n")
            return EXIT_INTERRUPTED
        except Exception as exc:
            return ctx.report(exc)
        finally:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
