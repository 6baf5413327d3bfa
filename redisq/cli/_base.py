"""What every subcommand shares: the parser class, the command registry, output and errors."""

from __future__ import annotations

import argparse
import base64
import difflib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

import redis

import redisq
from redisq._connect import redact
from redisq.errors import (
    ConfigurationError,
    InvalidArgument,
    PayloadTooLarge,
    RedisqError,
)
from redisq.keys import QueueKeys, registry_key
from redisq.models import Job, JobState

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URL",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "STATES",
    "AppImportFailed",
    "CliParser",
    "Commands",
    "Context",
    "Failed",
    "Handler",
    "NoSuchQueue",
    "UsageError",
    "job_document",
    "non_negative_int",
    "plain",
    "positive_int",
    "redact",
    "short",
    "show_time",
    "table",
]

#: The command did what was asked.
EXIT_OK = 0
#: The operation failed: job not found, or redisq refused it (LeaseLost, InvalidTransition...).
EXIT_FAILED = 1
#: The command line is wrong: unknown option, bad JSON, a value out of range.
EXIT_USAGE = 2
#: The server cannot be reached (connection refused, timeout, authentication).
EXIT_UNREACHABLE = 3
#: Stopped by Ctrl-C (128 + SIGINT), except where a command documents exit 0.
EXIT_INTERRUPTED = 130

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_PREFIX = "redisq"
#: The job states, in the order the store lists them.
STATES = [state.value for state in JobState]


class UsageError(Exception):
    """Raised for a wrong command line; exit code 2."""

    def __init__(self, message: str, prog: str = "redisq", usage: str = "") -> None:
        super().__init__(message)
        self.prog = prog
        self.usage = usage


class Failed(Exception):
    """Raised when the operation cannot be done (a job is not there...); exit code 1."""


#: Known queues a NoSuchQueue message lists at most.
_LISTED = 10


class NoSuchQueue(Failed):
    """Raised when a command names a queue the prefix does not have; exit code 1.

    Attributes:
        queue: the name given.
        prefix: the key prefix looked in.
        known: the queues of the prefix's registry, sorted.
        closest: the known names closest to `queue` (at most 3).
    """

    def __init__(self, queue: str, prefix: str, known: Sequence[str], hint: str = "") -> None:
        self.queue = queue
        self.prefix = prefix
        self.known = list(known)
        self.closest = difflib.get_close_matches(queue, self.known, n=3)
        text = f"no queue named {queue!r} under prefix {prefix!r}"
        if self.closest:
            text += f" (did you mean {' or '.join(repr(q) for q in self.closest)}?)"
        if not self.known:
            text += "; the prefix has no queues yet (enqueue a job to make one)"
        else:
            listed = ", ".join(self.known[:_LISTED])
            more = f" and {len(self.known) - _LISTED} more" if len(self.known) > _LISTED else ""
            text += f"; its queues: {listed}{more}"
        super().__init__(text + hint)


class AppImportFailed(Exception):
    """Raised when importing the module of a MODULE:APP raised; exit code 2.

    Attributes:
        app: the MODULE:APP given.
        error: what the import raised.
        traceback: that error's traceback from the user's own frames on (no redisq or
            importlib frames before them), formatted.
    """

    def __init__(self, app: str, error: BaseException, traceback: str) -> None:
        module = app.partition(":")[0]
        what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        super().__init__(
            f"cannot load {app}: importing module {module!r} raised {what}; fix the module"
            " (the traceback shows where), then run the command again"
        )
        self.app = app
        self.error = error
        self.traceback = traceback


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of exiting, so main() reports it."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog, self.format_usage())


Handler = Callable[[argparse.Namespace, "Context"], int]


class Commands:
    """The subcommand registry: `add` makes one subcommand with the shared options."""

    def __init__(self, parser: CliParser) -> None:
        self._sub = parser.add_subparsers(dest="command", metavar="command", parser_class=CliParser)
        self._connection = CliParser(add_help=False)
        group = self._connection.add_argument_group("connection")
        group.add_argument(
            "--url",
            help=f"server URL (default: $REDISQ_URL, else {DEFAULT_URL})",
        )
        group.add_argument(
            "--prefix", help=f"key prefix (default: $REDISQ_PREFIX, else {DEFAULT_PREFIX})"
        )
        self._output = CliParser(add_help=False)
        self._output.add_argument(
            "--json",
            action="store_true",
            help='print one JSON document on stdout (errors as {"error": ...} on stderr)',
        )

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        help: str,
        description: str | None = None,
        connects: bool = True,
        passthrough: bool = False,
    ) -> CliParser:
        """Add the subcommand `name`, run by `handler(args, context)`; return its parser.

        Args:
            name: the subcommand.
            handler: returns the exit code; raises UsageError, Failed, redisq or redis errors.
            help: one line for `redisq --help`.
            description: the text of `redisq NAME --help` (default: `help`).
            connects: give it --url and --prefix (a command that talks to a server).
            passthrough: hand unknown arguments to the handler (`context.rest`) unparsed.
        """
        parents = [self._connection, self._output] if connects else [self._output]
        parser: CliParser = self._sub.add_parser(
            name,
            help=help,
            description=description or help,
            parents=[] if passthrough else parents,
            add_help=not passthrough,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(handler=handler, passthrough=passthrough)
        return parser


@dataclass
class Context:
    """What a handler gets besides its arguments: streams, output mode and the store."""

    out: TextIO
    err: TextIO
    json: bool = False
    url: str = DEFAULT_URL
    prefix: str = DEFAULT_PREFIX
    rest: list[str] = field(default_factory=list)
    _store: redisq.Store | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, rest: Sequence[str]) -> Context:
        """Resolve the shared options: the command line first, then the environment."""
        url = getattr(args, "url", None) or os.environ.get("REDISQ_URL") or DEFAULT_URL
        prefix = getattr(args, "prefix", None) or os.environ.get("REDISQ_PREFIX") or DEFAULT_PREFIX
        return cls(
            out=sys.stdout,
            err=sys.stderr,
            json=bool(getattr(args, "json", False)),
            url=url,
            prefix=prefix,
            rest=list(rest),
        )

    def store(self) -> redisq.Store:
        """The store at --url under --prefix, connected on first use."""
        if self._store is None:
            self._store = redisq.connect(self.url, prefix=self.prefix)
        return self._store

    def require_queues(self, names: Iterable[str], hint: str = "") -> None:
        """Check that each queue exists under the prefix, before anything is written.

        A queue exists when the prefix's registry lists it or its meta hash is there (a
        queue paused before its first job).

        Raises:
            NoSuchQueue: a queue does not exist; its message lists the known ones (+ `hint`).
        """
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return
        client = self.store().redis
        known = sorted(
            n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
            for n in client.smembers(registry_key(self.prefix))
        )
        for name in wanted:
            if name in known:
                continue
            meta = QueueKeys.build(self.prefix, name).meta  # (validates the name)
            found = client.type(meta)
            if (found.decode() if isinstance(found, bytes) else found) != "none":
                continue
            raise NoSuchQueue(name, self.prefix, known, hint)

    def warning(self, message: Warning | str, category: type[Warning]) -> None:
        """Print a warning as one line on stderr (a JSON document with --json)."""
        text = " ".join(str(message).split())
        if self.json:
            document = {"warning": text, "type": category.__name__}
            self.err.write(json.dumps(document, ensure_ascii=False) + "\n")
        else:
            self.err.write(f"redisq: warning: {text}\n")
        self.err.flush()

    def close(self) -> None:
        """Close the store if one was opened."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def emit(self, document: Any, text: str) -> None:
        """Print `document` as JSON with --json, else `text` (a newline is added)."""
        line = json.dumps(plain(document), ensure_ascii=False) if self.json else text
        self.out.write(line + "\n")
        self.out.flush()

    def report(self, exc: BaseException) -> int:
        """Print an error on stderr (text, or JSON with --json); return its exit code."""
        code, message, extra = describe(exc, self.url)
        if self.json:
            document = {"error": message, "type": type(exc).__name__, "exit_code": code, **extra}
            self.err.write(json.dumps(plain(document), ensure_ascii=False) + "\n")
        else:
            if isinstance(exc, AppImportFailed):
                self.err.write(exc.traceback)
            if isinstance(exc, UsageError):
                self.err.write(exc.usage)
                self.err.write(f"{exc.prog}: error: {message}\n")
            else:
                self.err.write(f"redisq: {message}\n")
        self.err.flush()
        return code


def describe(exc: BaseException, url: str) -> tuple[int, str, dict[str, Any]]:
    """Map an exception to (exit code, message, extra JSON fields)."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE, str(exc), {}
    if isinstance(exc, AppImportFailed):
        return EXIT_USAGE, str(exc), {"app": exc.app, "traceback": exc.traceback}
    if isinstance(exc, NoSuchQueue):
        extra = {"queue": exc.queue, "prefix": exc.prefix, "known": exc.known}
        return EXIT_FAILED, str(exc), {**extra, "closest": exc.closest}
    if isinstance(exc, InvalidArgument):
        return EXIT_USAGE, str(exc), {"field": exc.field, "limit": exc.limit}
    if isinstance(exc, PayloadTooLarge):
        return EXIT_USAGE, str(exc), {"field": exc.field, "size": exc.size, "limit": exc.limit}
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE, str(exc), {}
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        shown = redact(url)
        message = f"cannot reach the server at {shown}: {exc}"
        if url == DEFAULT_URL:
            message += " (set --url or REDISQ_URL, or start one with `redisq server`)"
        return EXIT_UNREACHABLE, message, {"url": shown}
    if isinstance(exc, Failed | RedisqError):
        return EXIT_FAILED, str(exc), {}
    if isinstance(exc, redis.RedisError):
        return EXIT_FAILED, f"the server refused: {exc}", {}
    raise exc  # not ours to explain: a bug, keep the traceback


# ------------------------------------------------------------------------------------ output


def plain(value: Any) -> Any:
    """Turn a value into JSON-ready data: bytes become {"base64": ...}, keys become str."""
    if isinstance(value, dict):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def _key(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return key if isinstance(key, str) else json.dumps(plain(key))


def job_document(job: Job) -> dict[str, Any]:
    """Every field of a job, as JSON-ready data."""
    return {f.name: plain(getattr(job, f.name)) for f in fields(job)}


def show_time(ms: int | None) -> str:
    """Render a Redis time in ms with its UTC date, or '-'."""
    if ms is None:
        return "-"
    at = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return f"{ms} ({at.replace('+00:00', 'Z')})"


def short(text: str | None, width: int) -> str:
    """The first line of `text`, cut to `width` characters."""
    lines = (text or "").strip().splitlines()
    if not lines:
        return ""
    if len(lines[0]) > width or len(lines) > 1:
        return lines[0][: width - 3] + "..."
    return lines[0]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Lay out rows in columns; the columns listed in `right` are right-aligned."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """An argparse type: an int of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an int of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more; got {value}")
    return value
