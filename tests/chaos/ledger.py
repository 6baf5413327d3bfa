"""The ledger: what producers, handlers, stores and the chaos schedule saw, kept outside Redis.

Each process appends JSON lines to its own file in the run's folder (``O_APPEND``, one
``write`` per line, so every line is on disk as soon as it is written and a ``kill -9`` can
tear at most the last line of that process's file). The checker reads every file of the
folder; a torn last line is skipped and counted, a bad line anywhere else is an error.

A line is one event::

    {"ev": "CLAIM", "t": 1733320000123.456, "pid": 4242, "src": "w2", "q": "q", "id": ...}

``t`` is the writer's wall clock in ms (the harness runs on one host, so it is the clock that
Redis' TIME reads too; the checker prefers the Redis times that replies carry and uses ``t``
only as a bound where a reply gives none). ``mono`` is the writer's monotonic clock in ms
(CLOCK_MONOTONIC: one clock for every process of the host, never stepped), which orders
events of different processes where a wall clock step could not (S16's parent/child order).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Event", "Ledger", "LedgerData", "read_ledger"]

#: One ledger line, parsed.
Event = dict[str, Any]


class Ledger:
    """Append-only JSON-lines writer for one process (thread-safe).

    Args:
        directory: the run's ledger folder (created if missing).
        source: who writes (``producer``, ``w3``, ``chaos``...): part of the file name and of
            every line.
    """

    def __init__(self, directory: Path, source: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.pid = os.getpid()
        self.path = directory / f"{source}-{self.pid}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def write(self, ev: str, **fields: Any) -> None:
        """Append one event line, stamped with the wall clock, pid and source."""
        record: Event = {"ev": ev, "t": round(time.time() * 1000, 3), "pid": self.pid}
        record["mono"] = round(time.monotonic() * 1000, 3)
        record["src"] = self.source
        record.update(fields)
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@dataclass
class LedgerData:
    """Every event of a run's ledger folder, in wall-clock order (stable per file)."""

    events: list[Event] = field(default_factory=list)
    #: The torn last lines skipped, as (file name, text).
    torn: list[tuple[str, str]] = field(default_factory=list)

    def of(self, *kinds: str) -> list[Event]:
        """The events of the given kinds, in order."""
        wanted = set(kinds)
        return [e for e in self.events if e["ev"] in wanted]


def read_ledger(directory: Path) -> LedgerData:
    """Read every ``*.jsonl`` file of `directory`.

    Raises:
        ValueError: a line other than the last of its file does not parse (a harness bug:
            only a kill during the last write may tear a line).
    """
    data = LedgerData()
    for path in sorted(directory.glob("*.jsonl")):
        text = path.read_bytes().decode("utf-8", errors="replace")
        lines = text.split("\n")
        last = len(lines) - 1  # after the final newline comes '' (or the torn line)
        for number, line in enumerate(lines):
            if not line:
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict) or "ev" not in event:
                    raise ValueError("not an event object")
            except ValueError as exc:
                if number == last:
                    data.torn.append((path.name, line))
                    continue
                raise ValueError(f"{path.name}:{number + 1}: bad ledger line {line!r}") from exc
            data.events.append(event)
    data.events.sort(key=lambda e: float(e["t"]))
    return data
