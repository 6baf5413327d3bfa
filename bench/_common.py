"""What the benchmark scripts share: figures, the markdown table, command stats, clean-up.

Every script measures through one client on one server (a private valkey-server unless --url
is given) and returns `Figure` rows; run_all.py gathers them into one table. Timings are only
printed, never asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import redis

import redisq

__all__ = [
    "CommandCount",
    "CountingConnection",
    "Figure",
    "Meter",
    "ScriptStats",
    "base_parser",
    "best",
    "command_line",
    "command_stats",
    "count_commands",
    "delete_prefix",
    "fmt_int",
    "fmt_rate",
    "new_prefix",
    "print_environment",
    "print_table",
    "reset_stats",
    "run_main",
    "step",
]

#: Commands the benchmark itself sends around a measurement; not counted as redisq's.
_OWN_COMMANDS = ("config", "info", "dbsize", "scan", "memory", "slowlog", "ping", "client")


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the results table. `met` is None for reference figures without a goal."""

    figure: str
    value: str
    goal: str = ""
    met: bool | None = None
    command: str = ""


@dataclass(frozen=True, slots=True)
class ScriptStats:
    """What INFO commandstats says about one scenario (after CONFIG RESETSTAT).

    Commandstats counts the commands that scripts run (redis.call) as well, so
    `server_commands` is everything the server executed, not what the client sent; the
    client's own commands are counted by `CountingConnection`.
    """

    script_calls: int
    script_usec: int
    server_commands: int
    by_command: dict[str, int]

    @property
    def usec_per_script_call(self) -> float:
        """Server time per EVALSHA/EVAL call, in microseconds."""
        return self.script_usec / self.script_calls if self.script_calls else 0.0


class CountingConnection(redis.Connection):
    """A redis-py connection that counts the commands it sends (for the commands-per-job pass).

    Only used in a separate, untimed pass, so the timed client stays redis-py's own.
    """

    sent: ClassVar[int] = 0
    #: Set when the command being sent was counted already (send_command, pack_commands).
    _counted = False

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        """Count one command, then send it."""
        CountingConnection.sent += 1
        self._counted = True
        super().send_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def pack_commands(self, commands: Any) -> Any:
        """Count a pipeline's commands, then pack them."""
        commands = list(commands)
        CountingConnection.sent += len(commands)
        self._counted = True
        return super().pack_commands(commands)  # type: ignore[no-untyped-call]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Count a command that arrives packed already (redisq's lean path), then send it."""
        if self._counted:
            self._counted = False
        else:
            CountingConnection.sent += 1  # the lean path sends one packed command per call
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class CommandCount:
    """Commands per job of one scenario: script calls, client commands, server commands."""

    jobs: int
    stats: ScriptStats
    client_commands: int

    def per_job(self) -> str:
        """Format the three ratios for the table."""
        return (
            f"{self.stats.script_calls / self.jobs:.4g} script calls,"
            f" {self.client_commands / self.jobs:.4g} commands sent"
            f" ({self.stats.script_calls:,} and {self.client_commands:,} for"
            f" {self.jobs:,} jobs); {self.stats.server_commands / self.jobs:.3g} commands"
            " executed by the server incl. inside scripts"
        )

    def met(self, script_calls: int) -> bool:
        """True when the scenario sent exactly `script_calls` scripts and nothing else."""
        return self.stats.script_calls == script_calls and self.client_commands == script_calls


def count_commands(
    url: str,
    admin: redis.Redis,
    prefix: str,
    jobs: int,
    setup: Callable[[redisq.Store], object],
    work: Callable[[redisq.Store], object],
) -> CommandCount:
    """Run `setup`, then count what `work` (covering `jobs` jobs) sends and executes.

    Uses a fresh store on a `CountingConnection` (plain TCP URLs; other schemes are counted
    from commandstats only, with client commands reported as the script calls).
    """
    countable = urlsplit(url).scheme == "redis"
    options: dict[str, Any] = {"connection_class": CountingConnection} if countable else {}
    store = redisq.connect(url, prefix=prefix, **options)
    try:
        setup(store)
        reset_stats(admin)
        before = CountingConnection.sent
        work(store)
        sent = CountingConnection.sent - before
        stats = command_stats(admin)
    finally:
        store.close()
    return CommandCount(jobs, stats, sent if countable else stats.script_calls)


@dataclass(slots=True)
class Meter:
    """Wall time, this process's CPU time and the server's CPU time of one timed section.

    On a busy machine wall time includes waiting for a core; CPU time does not. With one
    client, the client and the server take turns, so jobs / (client CPU + server CPU) bounds
    the rate that an idle machine with two free cores could reach (less wake-up latency).
    """

    admin: redis.Redis
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    _marks: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _server_cpu(self) -> float:
        info = self.admin.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def __enter__(self) -> Meter:
        self._marks = (time.perf_counter(), time.process_time(), self._server_cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, server = self._marks
        self.wall += time.perf_counter() - wall
        self.client_cpu += time.process_time() - cpu
        self.server_cpu += self._server_cpu() - server

    def cpu_line(self, jobs: int, unit: str = "job") -> str:
        """Format CPU per job and the CPU-bound rate."""
        client = 1e6 * self.client_cpu / jobs
        server = 1e6 * self.server_cpu / jobs
        return (
            f"client {client:,.1f} µs + server {server:,.1f} µs CPU per {unit}"
            f" -> CPU-bound {fmt_rate(1e6 / (client + server), f'{unit}s/s')}"
        )


def claim_and_ack_all(
    store: redisq.Store, queue: str, jobs: int, count: int, worker: str
) -> tuple[float, float, int]:
    """Claim `count` at a time and ack them until `jobs` are done: seconds in claim, in ack,
    and the number of rounds."""
    done = rounds = 0
    in_claim = in_ack = 0.0
    clock = time.perf_counter
    while done < jobs:
        t0 = clock()
        claimed = store.claim(queue, worker=worker, count=count)
        t1 = clock()
        if not claimed:
            raise RuntimeError(f"queue {queue!r} ran dry after {done:,} of {jobs:,} jobs")
        if len(claimed) == 1:
            store.ack(claimed[0])
        else:
            store.ack_many(claimed)
        t2 = clock()
        in_claim += t1 - t0
        in_ack += t2 - t1
        done += len(claimed)
        rounds += 1
    return in_claim, in_ack, rounds


def fmt_int(value: float) -> str:
    """Format a count with thousands separators."""
    return f"{round(value):,}"


def fmt_rate(value: float, unit: str = "/s") -> str:
    """Format a rate such as jobs per second."""
    return f"{round(value):,} {unit}".rstrip()


def best(values: Sequence[float]) -> float:
    """The best (highest) of several rounds: the figure least disturbed by other load."""
    return max(values)


def new_prefix(name: str) -> str:
    """Return a fresh key prefix, so runs against a shared server (--url) never collide."""
    return f"bench-{name}-{os.urandom(4).hex()}"


def base_parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with the options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url",
        default=None,
        help="benchmark this server (its keys under a fresh prefix; runs CONFIG RESETSTAT)"
        " instead of a private valkey-server",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    return parser


def command_line(script: str, options: dict[str, Any], url: str | None) -> str:
    """Return the shell command that reproduces a figure: the script with its options."""
    parts = ["python", f"bench/{script}"]
    for name, value in options.items():
        parts += [f"--{name.replace('_', '-')}", str(value)]
    if url is not None:
        parts += ["--url", url]
    return shlex.join(parts)


def reset_stats(client: redis.Redis) -> None:
    """Zero the server's command statistics (CONFIG RESETSTAT)."""
    client.config_resetstat()


def command_stats(client: redis.Redis) -> ScriptStats:
    """Read INFO commandstats: script calls, their server time, and every command's calls."""
    raw: dict[str, Any] = client.info("commandstats")
    by_command: dict[str, int] = {}
    script_calls = script_usec = 0
    for key, stats in raw.items():
        name = key.removeprefix("cmdstat_").lower()
        if name.split("|")[0] in _OWN_COMMANDS:
            continue
        calls = int(stats["calls"])
        by_command[name] = calls
        if name in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"):
            script_calls += calls
            script_usec += int(stats["usec"])
    return ScriptStats(script_calls, script_usec, sum(by_command.values()), by_command)


def delete_prefix(client: redis.Redis, prefix: str, private: bool) -> None:
    """Remove a run's keys: FLUSHALL on a private server, else SCAN + UNLINK of the prefix."""
    if private:
        client.flushall()
        return
    for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def print_environment(client: redis.Redis) -> None:
    """Print what the figures depend on: server, Python, CPU count and load."""
    info = client.info("server")
    server = f"valkey {info['valkey_version']}" if "valkey_version" in info else "redis"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"# server {server} (redis_version {info.get('redis_version')}), Python"
        f" {platform.python_version()}, redis-py {redis.__version__}, {os.cpu_count()} CPUs,"
        f" load average {load}",
        flush=True,
    )


def print_table(figures: Sequence[Figure]) -> None:
    """Print figures as a markdown table."""
    print("| figure | value | goal | met | command |")
    print("|---|---|---|---|---|")
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "**NO**")
        command = f"`{f.command}`" if f.command else ""
        print(f"| {f.figure} | {f.value} | {f.goal} | {met} | {command} |")


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    """Print how long an untimed setup step took (progress for the long runs)."""
    start = time.perf_counter()
    yield
    print(f"  ({label}: {time.perf_counter() - start:.1f} s)", flush=True)


def run_main(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], list[Figure]],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the arguments, run one benchmark script and print its table."""
    args = parser.parse_args(argv)
    figures = run(args)
    print()
    print_table(figures)
    return 0


@dataclass(frozen=True, slots=True)
class Config:
    """One worker setting: its label and the Worker options it passes."""

    label: str
    options: dict[str, int]


def parse_configs(text: str, tuned: dict[str, int] | None = None) -> list[Config]:
    """Parse ``"default,4:500,-:0"`` into Configs: ``default`` is the Worker with no options,
    ``C:P`` sets concurrency C and prefetch P (a "-" leaves that one at the Worker's default),
    plus the `tuned` options on every setting but ``default``."""
    configs = []
    for item in text.split(","):
        item = item.strip()
        if item == "default":
            configs.append(Config("defaults", {}))
            continue
        concurrency, _, prefetch = item.partition(":")
        options = dict(tuned or {})
        if concurrency != "-":
            options["concurrency"] = int(concurrency)
        if prefetch != "-":
            options["prefetch"] = int(prefetch or 0)
        configs.append(Config(f"concurrency {concurrency}, prefetch {prefetch or 0}", options))
    return configs
