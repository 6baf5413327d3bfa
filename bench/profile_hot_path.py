"""Where the time of the hot operations goes: Python side piece by piece, and server side.

Not a benchmark with goals: a breakdown for whoever optimises redisq. For single enqueue,
enqueue_many (1,000 jobs) and claim(count=100) + ack_many it prints, per call:

* Python side, without I/O: the whole operation on a store whose transport replays a reply
  recorded from the real server, then that time split by function (cProfile own time, scaled
  to the unprofiled total): validation, msgpack, argument binding, building the Jobs.
* the transport: redis-py's pooled-connection path (the lean EVALSHA path) against a raw socket
  sending the same bytes, for a trivial script, to isolate redis-py's per-call overhead.
* server side: INFO commandstats for each script alone: its time per call, the time of the
  commands it ran (redis.call) and the rest (Lua and the redis.call bridge), plus the server's
  CPU time per call (INFO cpu; immune to waiting for a core on a busy machine).

    python bench/profile_hot_path.py [--calls 3000] [--url redis://...]

Each timing is the best of 3 repeats, in microseconds.
"""

from __future__ import annotations

import cProfile
import pstats
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from _common import base_parser, delete_prefix, new_prefix, print_environment
from _server import bench_server
from bench_claim_ack import WORKER, fill

import redisq
from redisq._core.ops import Call
from redisq._core.scripts import ScriptSpec
from redisq._sync.transport import SyncTransport

CALLS = 3_000
REPEATS = 3
#: Functions listed per Python-side breakdown.
TOP = 12


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    """Best of REPEATS runs of `calls` calls of fn, in microseconds per call."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append(time.perf_counter() - start)
    return 1e6 * min(times) / calls


def _reply_key(call: Call[Any]) -> str:
    """Name a call for the recorded replies: its script, or its command (e.g. "TYPE")."""
    return call.spec.name if call.spec is not None else str(call.args[0]).upper()


class Recorder(SyncTransport):
    """The real transport, remembering the last raw reply of each script and command."""

    def __init__(self, inner: SyncTransport) -> None:
        super().__init__(inner.client, check_server=False)
        self.replies: dict[str, Any] = {}

    def run(self, call: Call[Any]) -> Any:
        """Run the call, keeping its raw reply."""
        raw: list[Any] = []

        def keep(reply: Any) -> Any:
            raw.append(reply)
            return call.parse(reply)

        result = super().run(Call(call.spec, call.keys, call.args, keep))
        self.replies[_reply_key(call)] = raw[0]
        return result

    def pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        """Run the calls in one round trip, keeping each raw reply."""
        wrapped = []
        for call in calls:

            def keep(reply: Any, call: Call[Any] = call) -> Any:
                self.replies[_reply_key(call)] = reply
                return call.parse(reply)

            wrapped.append(Call(call.spec, call.keys, call.args, keep, call.blocking))
        return super().pipeline(wrapped)


class Replay(SyncTransport):
    """A transport without I/O: every call gets the recorded reply of its script or command.

    Record a steady-state call (not the one that created the queue), so that replaying it
    takes the same path as the calls being timed.
    """

    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = replies
        #: The latest call run, for packing it by hand.
        self.last: Call[Any] | None = None

    def run(self, call: Call[Any]) -> Any:
        """Parse the recorded reply, as if the server had sent it."""
        self.last = call
        return call.parse(self.replies[_reply_key(call)])

    def pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        """Parse each call's recorded reply."""
        return [self.run(call) for call in calls]

    def close(self) -> None:
        """Nothing to close."""


def section(title: str) -> None:
    """Print a section heading."""
    print(f"\n### {title}\n", flush=True)


def row(label: str, us: float, note: str = "") -> None:
    """Print one line of a breakdown."""
    print(f"| {label} | {us:,.1f} | {note} |", flush=True)


def header(unit: str) -> None:
    """Print the header of a breakdown table."""
    print(f"| piece | µs per {unit} | note |\n|---|---|---|", flush=True)


def server_breakdown(
    admin: redis.Redis, label: str, work: Callable[[], object], calls: int
) -> None:
    """Run `work` (making `calls` script calls) and print what commandstats says."""
    cpu0 = _server_cpu(admin)
    admin.config_resetstat()
    work()
    stats: dict[str, Any] = admin.info("commandstats")
    cpu = _server_cpu(admin) - cpu0
    script = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    inner = {
        k.removeprefix("cmdstat_"): v
        for k, v in stats.items()
        if k not in ("cmdstat_evalsha", "cmdstat_info") and not k.startswith("cmdstat_config")
    }
    inner_usec = sum(int(v["usec"]) for v in inner.values())
    n = int(script["calls"]) or 1
    if n != calls:
        print(f"(expected {calls} script calls, commandstats counted {n})")
    total = int(script["usec"]) / n
    row(f"server: {label} script, wall time in the server", total, "commandstats usec_per_call")
    row("server: commands run by the script (redis.call)", inner_usec / n, _top(inner, n))
    row("server: Lua and the redis.call bridge (the rest)", total - inner_usec / n)
    row("server: CPU time per call", 1e6 * cpu / n, "INFO cpu, includes INFO/CONFIG calls")


def _top(inner: dict[str, Any], n: int) -> str:
    ranked = sorted(inner.items(), key=lambda kv: -int(kv[1]["usec"]))[:5]
    return ", ".join(
        f"{name} {int(v['calls']) / n:g}x {int(v['usec']) / n:,.1f}" for name, v in ranked
    )


def _server_cpu(admin: redis.Redis) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _resp(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def raw_enqueue_us(url: str, store: redisq.Store, replies: dict[str, Any], calls: int) -> float:
    """Time enqueue's EVALSHA (fresh job ids) over a raw socket, every command packed first."""
    capture = Replay(replies)
    offline = redisq.Store(capture, store.settings)
    offline.enqueue("q", {"n": -1})  # first use: the queue registry check
    conn = store.redis.connection_pool.get_connection()
    try:
        packed = []
        for i in range(calls * REPEATS):
            offline.enqueue("q", {"n": i})
            call = capture.last
            assert call is not None
            assert call.spec is not None
            args = ("EVALSHA", call.spec.sha, len(call.keys), *call.keys, *call.args)
            packed.append(b"".join(conn._command_packer.pack(*args)))
    finally:
        store.redis.connection_pool.release(conn)
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.password:
        auth = [parts.username, parts.password] if parts.username else [parts.password]
        raw.sendall(_resp("AUTH", *auth))
        raw.recv(64)
    times = []
    for r in range(REPEATS):
        start = time.perf_counter()
        for command in packed[r * calls : (r + 1) * calls]:
            raw.sendall(command)
            raw.recv(4096)  # the reply (status, now, [0]) is a few dozen bytes: one segment
        times.append(time.perf_counter() - start)
    raw.close()
    return 1e6 * min(times) / calls


def transport_overhead(url: str, calls: int) -> None:
    """Compare the lean redis-py path with a raw socket, both running `return 1`."""
    section("transport: one EVALSHA of `return 1` (1 round trip)")
    header("call")
    client = redis.Redis.from_url(url)
    transport = SyncTransport(client, check_server=False)
    spec = ScriptSpec("trivial", "return 1", "", (), (), ())
    sha = str(client.script_load(spec.source))
    spec = ScriptSpec("trivial", spec.source, sha, (), (), ())
    call: Call[Any] = Call(spec, [], [], lambda reply: reply)
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.password:
        raw.sendall(
            b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(parts.password), parts.password.encode())
        )
        raw.recv(64)
    packed = b"*3\r\n$7\r\nEVALSHA\r\n$40\r\n" + sha.encode() + b"\r\n$1\r\n0\r\n"

    def raw_call() -> None:
        raw.sendall(packed)
        raw.recv(64)

    raw_us = per_call_us(raw_call, calls)
    lean_us = per_call_us(lambda: transport.run(call), calls)
    evalsha_us = per_call_us(lambda: client.evalsha(sha, 0), calls)
    conn = client.connection_pool.get_connection()
    pack_us = per_call_us(lambda: conn._command_packer.pack("EVALSHA", sha, 0), calls)
    client.connection_pool.release(conn)
    pool = client.connection_pool

    def get_release() -> None:
        pool.release(pool.get_connection())

    pool_us = per_call_us(get_release, calls)
    row("raw socket: sendall + recv of the packed bytes", raw_us, "the floor: loopback + server")
    row("SyncTransport.run (the lean path)", lean_us, f"+{lean_us - raw_us:,.1f} over raw")
    row("redis.Redis.evalsha (execute_command)", evalsha_us, f"+{evalsha_us - raw_us:,.1f}")
    row("  of which pool get_connection + release", pool_us, "no I/O")
    row("  of which command packing (hiredis pack)", pack_us, "no I/O")
    raw.close()
    client.close()


def python_breakdown(label: str, unit: str, fn: Callable[[], object], calls: int) -> None:
    """Time `fn` on a replaying store, then split that time by function with cProfile.

    cProfile slows every Python call down, so its figures are scaled to the unprofiled time:
    each function gets its share of the profiled total (own time, tottime).
    """
    section(f"{label}: Python side without I/O (replayed reply)")
    header(unit)
    whole = per_call_us(fn, calls)
    row(f"{label}, all Python", whole, "unprofiled")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    entries = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(e[2] for e in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda kv: -kv[1][2])[:TOP]
    for (path, line, name), (_, ncalls, tottime, _cum, _callers) in ranked:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else path
        row(
            f"  {name} ({where})",
            whole * tottime / total,
            f"{tottime / total:.0%}, {ncalls / calls:g} calls per {unit}",
        )


def main(argv: list[str] | None = None) -> int:
    """Print the breakdowns."""
    p = base_parser(__doc__.splitlines()[0] if __doc__ else "profile_hot_path.py")
    p.add_argument("--calls", type=int, default=CALLS, help=f"calls per timing ({CALLS:,})")
    args = p.parse_args(argv)
    calls = max(30, args.calls // 10) if args.quick else args.calls
    few = max(3, calls // 100)
    with bench_server(args.url) as server:
        admin = redis.Redis.from_url(server.url)
        print_environment(admin)
        prefix = new_prefix("profile")
        store = redisq.connect(server.url, prefix=prefix)
        recorder = Recorder(store._transport)
        recording = redisq.Store(recorder, store.settings)
        try:
            recording.enqueue("q", {"n": -2})  # creates the queue
            recording.enqueue("q", {"n": -1})  # the steady-state reply to replay
            transport_overhead(server.url, calls)

            section("single enqueue: end to end, and server side")
            header("call")
            n = [0]

            def one() -> redisq.Job:
                n[0] += 1
                return store.enqueue("q", {"n": n[0]})

            row("Store.enqueue, real server (wall)", per_call_us(one, calls))
            row(
                "the same EVALSHA from a raw socket, packed beforehand (wall)",
                raw_enqueue_us(server.url, store, dict(recorder.replies), calls),
                "no client work: the ceiling for any Python client",
            )
            server_breakdown(admin, "enqueue", lambda: [one() for _ in range(calls)], calls)
            offline = redisq.Store(Replay(dict(recorder.replies)), store.settings)
            python_breakdown("Store.enqueue", "call", lambda: offline.enqueue("q", {"n": 1}), calls)

            payloads = [{"n": i} for i in range(1_000)]
            recording.enqueue_many("q", payloads)
            section("enqueue_many(1,000 jobs): end to end, and server side")
            header("call of 1,000 jobs")
            row(
                "Store.enqueue_many, real server (wall)",
                per_call_us(lambda: store.enqueue_many("q", payloads), few),
            )
            server_breakdown(
                admin,
                "enqueue",
                lambda: [store.enqueue_many("q", payloads) for _ in range(few)],
                few,
            )
            offline = redisq.Store(Replay(dict(recorder.replies)), store.settings)
            python_breakdown(
                "Store.enqueue_many(1,000)",
                "call of 1,000 jobs",
                lambda: offline.enqueue_many("q", payloads),
                few,
            )

            rounds = max(10, calls // 50)
            fill(store, "work", 100 * (rounds + 2))
            jobs = recording.claim("work", worker=WORKER, count=100)
            recording.ack_many(jobs)
            section("claim(count=100) and ack_many(100): end to end, and server side")
            header("call of 100 jobs")
            held: list[list[redisq.Job]] = []
            start = time.perf_counter()
            held += [store.claim("work", worker=WORKER, count=100) for _ in range(rounds)]
            row(
                "Store.claim(count=100), real server (wall)",
                1e6 * (time.perf_counter() - start) / rounds,
            )
            start = time.perf_counter()
            for batch in held:
                store.ack_many(batch)
            row(
                "Store.ack_many(100), real server (wall)",
                1e6 * (time.perf_counter() - start) / rounds,
            )
            fill(store, "work", 100 * rounds)
            held = []
            server_breakdown(
                admin,
                "claim",
                lambda: held.extend(
                    store.claim("work", worker=WORKER, count=100) for _ in range(rounds)
                ),
                rounds,
            )
            server_breakdown(admin, "ack", lambda: [store.ack_many(b) for b in held], rounds)
            offline = redisq.Store(Replay(dict(recorder.replies)), store.settings)
            offline_jobs = offline.claim("q", worker=WORKER, count=100)
            python_breakdown(
                "Store.claim(count=100)",
                "call of 100 jobs",
                lambda: offline.claim("q", worker=WORKER, count=100),
                rounds,
            )
            python_breakdown(
                "Store.ack_many(100)",
                "call of 100 jobs",
                lambda: offline.ack_many(offline_jobs),
                rounds,
            )
        finally:
            store.close()
            delete_prefix(admin, prefix, server.private)
            admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
