"""`stats`: job counts per queue and state, once or as a live view with rates."""

from __future__ import annotations

import argparse
import math
import shutil
import time
from dataclasses import dataclass, field

import redisq
from redisq.cli._base import (
    EXIT_OK,
    STATES,
    Commands,
    Context,
    UsageError,
    positive_int,
    show_time,
    table,
)

__all__ = ["add_stats"]

#: The monotonic counters of `Store.totals`, whose changes give the rates.
COUNTERS = ("enqueued", "completed", "retried", "dead")

#: How the live view waits between refreshes (tests replace it to act between two reads).
_pause = time.sleep

_Counts = dict[str, dict[str, int]]
_Rates = dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class Snapshot:
    """Counts and counters of some queues, read at one moment."""

    #: time.monotonic() when the read finished.
    at: float
    #: Wall clock time (epoch ms) of the read.
    time_ms: int
    #: queue -> state -> jobs.
    counts: _Counts
    #: queue -> counter -> total since the queue began.
    totals: _Counts
    #: queue -> its rate limit (`Store.rate_limit`), for queues with a limit or a hold:
    #: limit (None: a hold only), held_until_ms (None: not held now), held (ready jobs the
    #: limit holds back now).
    limits: dict[str, dict[str, object]] = field(default_factory=dict)
    #: queue -> its concurrency limits (`Store.concurrency`), for queues with a cap, a limit
    #: per group or grouped jobs: concurrency, group_concurrency, leased, held_by_cap
    #: (ready jobs the cap holds back now), grouped_ready, groups_ready (groups that may lease
    #: now), grouped_leased, held_by_groups (grouped ready jobs whose groups are all at their
    #: limit: every one when no group may lease now, else 0).
    flow: dict[str, dict[str, object]] = field(default_factory=dict)
    #: queue -> its rate keys held back now (`Store.rate_keys`), for queues with grouped
    #: ready jobs and a held key: held (keys), keys (the first KEYS_SHOWN: key, until_ms,
    #: ready, limit), more (held keys not listed).
    keys: dict[str, dict[str, object]] = field(default_factory=dict)


#: Held rate keys listed per queue (the rest are counted: "and N more").
KEYS_SHOWN = 5


def _keys(store: redisq.Store, queue: str) -> dict[str, object] | None:
    held = store.rate_keys(queue, KEYS_SHOWN)
    if not held.held:
        return None
    return {
        "held": held.held,
        "keys": [
            {"key": k.key, "until_ms": k.until_ms, "ready": k.ready, "limit": k.limit}
            for k in held.keys
        ],
        "more": held.more,
    }


def _keys_line(queue: str, held: dict[str, object]) -> str:
    shown = []
    for k in held["keys"]:  # type: ignore[attr-defined]
        why = k["limit"] or "a RateLimited hold"
        shown.append(f"{k['key']!r} ({why}) {k['ready']:,} ready until {show_time(k['until_ms'])}")
    more = held["more"]
    tail = f", and {more:,} more" if more else ""
    return f"rate keys of {queue}: {held['held']:,} held back: " + ", ".join(shown) + tail


def _flow(store: redisq.Store, queue: str) -> dict[str, object] | None:
    f = store.concurrency(queue)
    if f.concurrency is None and f.group_concurrency is None and not f.grouped_ready:
        return None
    held = f.grouped_ready if f.grouped_ready and not f.groups_ready else 0
    return {
        "concurrency": f.concurrency,
        "group_concurrency": f.group_concurrency,
        "leased": f.leased,
        "held_by_cap": f.held_by_cap,
        "grouped_ready": f.grouped_ready,
        "groups_ready": f.groups_ready,
        "grouped_leased": f.grouped_leased,
        "held_by_groups": 0 if f.held_by_cap else held,
    }


def _flow_line(queue: str, f: dict[str, object]) -> str:
    parts = []
    if f["concurrency"] is not None:
        cap = f"cap {f['concurrency']}, {f['leased']:,} leased"
        if f["held_by_cap"]:
            cap += f": {f['held_by_cap']:,} ready held back by the cap"
        parts.append(cap)
    if f["group_concurrency"] is not None or f["grouped_ready"]:
        limit = f["group_concurrency"]
        text = f"groups: {'no limit' if limit is None else f'at most {limit} leased each'}"
        text += (
            f", {f['grouped_ready']:,} ready in groups, {f['groups_ready']:,} groups may lease"
            f" now, {f['grouped_leased']:,} leased"
        )
        if f["held_by_groups"]:
            text += f": {f['held_by_groups']:,} ready held back by group limits or rate keys"
        parts.append(text)
    return f"concurrency of {queue}: " + "; ".join(parts)


def _read(store: redisq.Store, queues: list[str]) -> Snapshot:
    names = queues or store.queues()
    counts = {q: {str(s): n for s, n in store.counts(q).items()} for q in names}
    totals = {q: store.totals(q) for q in names}
    limits: dict[str, dict[str, object]] = {}
    server_ms: int | None = None
    for q in names:
        state = store.rate_limit(q)
        if state.limit is None and state.next_at_ms is None:
            continue
        if server_ms is None:
            seconds, micros = store.redis.time()
            server_ms = int(seconds) * 1000 + int(micros) // 1000
        until = state.next_at_ms if state.next_at_ms and state.next_at_ms > server_ms else None
        held = counts[q]["ready"] if until is not None else 0
        limits[q] = {"limit": state.limit, "held_until_ms": until, "held": held}
    flow = {q: f for q in names if (f := _flow(store, q)) is not None}
    keys = {
        q: k for q, f in flow.items() if f["grouped_ready"] and (k := _keys(store, q)) is not None
    }
    return Snapshot(
        time.monotonic(), time.time_ns() // 1_000_000, counts, totals, limits, flow, keys
    )


def _rates(before: Snapshot, after: Snapshot) -> _Rates:
    """Per queue and counter, the change per second; None where it is unknown."""
    seconds = max(after.at - before.at, 1e-9)
    rates: _Rates = {}
    for queue, now in after.totals.items():
        then = before.totals.get(queue)
        rates[queue] = {
            name: None
            if then is None or now[name] < then[name]  # a queue that was deleted and remade
            else (now[name] - then[name]) / seconds
            for name in COUNTERS
        }
    return rates


def _sum(rows: _Counts, names: tuple[str, ...] | list[str]) -> dict[str, int]:
    return {name: sum(row[name] for row in rows.values()) for name in names}


def _sum_rates(rates: _Rates) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in COUNTERS:
        known = [r[name] for r in rates.values() if r[name] is not None]
        out[name] = sum(v for v in known if v is not None) if known else None
    return out


def _document(snap: Snapshot, before: Snapshot | None, watch: bool) -> dict[str, object]:
    document: dict[str, object] = {
        "time_ms": snap.time_ms,
        "queues": snap.counts,
        "total": _sum(snap.counts, STATES),
        "totals": snap.totals,
        "rate_limits": snap.limits,
        "concurrency": snap.flow,
        "rate_keys": snap.keys,
    }
    if watch:
        rates = None if before is None else _rates(before, snap)
        document["seconds"] = None if before is None else snap.at - before.at
        document["rates"] = rates
        document["total_rates"] = None if rates is None else _sum_rates(rates)
    return document


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _text(snap: Snapshot, rates: _Rates | None, watch: bool) -> str:
    if not snap.counts:
        return "no queues"
    header = ["QUEUE", *(s.upper() for s in STATES)]
    if watch:
        header += [f"{c.upper()}/S" for c in COUNTERS]
    rows = []
    for queue, counts in snap.counts.items():
        row: list[object] = [queue, *(counts[s] for s in STATES)]
        if watch:
            row += [_rate(None if rates is None else rates[queue][c]) for c in COUNTERS]
        rows.append(row)
    if len(snap.counts) > 1:
        total: list[object] = ["(total)", *_sum(snap.counts, STATES).values()]
        if watch:
            summed = None if rates is None else _sum_rates(rates)
            total += [_rate(None if summed is None else summed[c]) for c in COUNTERS]
        rows.append(total)
    text = table(header, rows, right=range(1, len(header)))
    for queue, limit in snap.limits.items():
        line = f"rate limit of {queue}: {limit['limit'] or 'none (a RateLimited hold)'}"
        if limit["held_until_ms"] is not None:
            line += f"; {limit['held']:,} ready held back until {show_time(limit['held_until_ms'])}"  # type: ignore[arg-type]
        text += "\n" + line
    for queue, flow in snap.flow.items():
        text += "\n" + _flow_line(queue, flow)
    for queue, held in snap.keys.items():
        text += "\n" + _keys_line(queue, held)
    expired = {q: t.get("expired", 0) for q, t in snap.totals.items() if t.get("expired")}
    for queue, n in expired.items():
        text += f"\n{queue}: {n:,} jobs expired (cancelled before they started) in all"
    return text


def _screen_lines(text: str) -> int:
    """How many terminal lines `text` takes (long lines wrap)."""
    columns = max(shutil.get_terminal_size().columns, 1)
    return sum(max(1, math.ceil(len(line) / columns)) for line in text.split("\n"))


def _watch(args: argparse.Namespace, ctx: Context, queues: list[str]) -> int:
    store = ctx.store()
    live = ctx.out.isatty() and not ctx.json
    previous: Snapshot | None = None
    drawn = 0  # terminal lines of the block on screen, to redraw it in place
    shown = 0
    try:
        while True:
            snap = _read(store, queues)
            rates = None if previous is None else _rates(previous, snap)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.time_ms / 1000))
            title = f"{stamp}  prefix {ctx.prefix}  every {args.watch:g} s"
            text = title + "\n" + _text(snap, rates, watch=True)
            if ctx.json:
                ctx.emit(_document(snap, previous, watch=True), "")
            elif live:
                # Cursor up to the first line of the previous block, clear to the end, redraw.
                erase = f"\x1b[{drawn}F\x1b[J" if drawn else ""
                ctx.out.write(erase + text + "\n")
                ctx.out.flush()
                drawn = _screen_lines(text)
            else:
                ctx.out.write(("\n" if shown else "") + text + "\n")
                ctx.out.flush()
            shown += 1
            if args.count is not None and shown >= args.count:
                return EXIT_OK
            previous = snap
            _pause(max(0.0, snap.at + args.watch - time.monotonic()))
    except KeyboardInterrupt:  # Ctrl-C is how a live view ends: not an error
        return EXIT_OK


def _stats(args: argparse.Namespace, ctx: Context) -> int:
    if args.count is not None and args.watch is None:
        raise UsageError("--count N goes with --watch SECONDS")
    queues = list(dict.fromkeys(args.queues))
    ctx.require_queues(queues)
    if args.watch is not None:
        return _watch(args, ctx, queues)
    snap = _read(ctx.store(), queues)
    ctx.emit(_document(snap, None, watch=False), _text(snap, None, watch=False))
    return EXIT_OK


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, 86400]; got {text}")
    return value


def add_stats(commands: Commands) -> None:
    """Add `redisq stats`."""
    parser = commands.add(
        "stats",
        _stats,
        help="count jobs per queue and state, once or live",
        description=(
            "Count the jobs of each queue (default: every queue) in each state.\n\n"
            "With --watch SECONDS the table refreshes in place on a terminal (one block after\n"
            "another otherwise) and adds rates per second from the change between refreshes:\n"
            "jobs enqueued, completed, retried and dead-lettered. Ctrl-C ends it (exit 0).\n"
            "With --json and --watch, each refresh is one JSON document on its own line."
        ),
    )
    parser.add_argument("queues", metavar="QUEUE", nargs="*", help="queues (default: all)")
    parser.add_argument(
        "--watch", type=_seconds, metavar="SECONDS", help="refresh every SECONDS, with rates"
    )
    parser.add_argument(
        "--count", type=positive_int, metavar="N", help="with --watch: stop after N refreshes"
    )
