"""The peer benchmark's machinery: the private server, the venvs, the processes, the ledgers.

Used by run.py (see its docstring).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import redis

LOOPBACK = "127.0.0.1"
#: After SIGTERM, how long a worker may take to stop before SIGKILL.
STOP_TIMEOUT_S = 10.0


# ------------------------------------------------------------------------------- the server


@dataclass
class Server:
    """A private redis-server on a free loopback port, persistence off."""

    binary: str
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> redis.Redis:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            self.port = sock.getsockname()[1]
        args = [self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory)]
        args += ["--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=30)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"run.py: {self.binary} did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown(nosave=True)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Snapshot:
    """What INFO says at one moment: commands executed (by name) and the server's CPU time."""

    commands: dict[str, int]
    cpu_s: float

    @classmethod
    def take(cls, client: redis.Redis) -> Snapshot:
        info = client.execute_command("INFO", "cpu", "commandstats")  # type: ignore[no-untyped-call]
        commands = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_")
        }
        return cls(commands, float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))

    def since(self, before: Snapshot) -> tuple[int, float, dict[str, int]]:
        """Commands and CPU seconds since `before`, less the INFO that took `before`."""
        by_name = {
            name: calls - before.commands.get(name, 0)
            for name, calls in self.commands.items()
            if calls - before.commands.get(name, 0)
        }
        by_name["info"] = by_name.get("info", 0) - 1
        if not by_name["info"]:
            del by_name["info"]
        return sum(by_name.values()), self.cpu_s - before.cpu_s, by_name


# --------------------------------------------------------------------------------- the venvs


def _stamp(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return f"{digest} {platform.python_version()} {sys.base_prefix}"


def ensure_venv(name: str, requirements: Path, cache: Path) -> tuple[Path, float]:
    """Return the venv's python, building the venv unless its stamp matches; and build time."""
    venv = cache / name
    stamp = venv / ".bench-stamp"
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.read_text() == _stamp(requirements) and python.exists():
        return python, 0.0
    started = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    log = cache / f"{name}.build.log"
    with log.open("w") as out:
        for command in (
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
                str(requirements),
            ],
        ):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(
                    f"run.py: building the {name} venv failed ({shlex.join(command)}); see {log}"
                )
    stamp.write_text(_stamp(requirements))
    return python, time.perf_counter() - started


def build_venvs(wanted: dict[str, Path], cache: Path) -> tuple[dict[str, Path], dict[str, float]]:
    """Build (or reuse) the venvs {name: requirements file}, two at a time."""
    cache.mkdir(parents=True, exist_ok=True)
    pythons: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(ensure_venv, name, req, cache) for name, req in wanted.items()}
        for name, future in futures.items():
            pythons[name], seconds[name] = future.result()
            built = f"built in {seconds[name]:.0f} s" if seconds[name] else "reused"
            print(f"  venv {name}: {built}", flush=True)
    return pythons, seconds


# ------------------------------------------------------------------------------ processes


@dataclass
class Proc:
    """A process of a queue's venv, in its own process group, logging to a file."""

    popen: subprocess.Popen[bytes]
    log: Path
    ready_r: int = -1
    go_w: int = -1

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def peak_rss_kib(self) -> int:
        """VmHWM of the process and its descendants, in KiB (0 once it has exited)."""
        return sum(_vm_hwm(pid) for pid in _tree(self.popen.pid))

    def stop(self) -> None:
        for fd in (self.ready_r, self.go_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.ready_r = self.go_w = -1
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(STOP_TIMEOUT_S)
        # Whatever the worker left behind in its group (forked children) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_TIMEOUT_S)


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in task.read_text().split()]
    return pids


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -------------------------------------------------------------------------------- ledgers


class Ledger:
    """The records the handlers append to <folder>/<pid>.log: "<job id> <monotonic ns>"."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[str, int] = {}
        self.count = 0

    def poll(self) -> int:
        """Count the records written so far (reading only what is new)."""
        for entry in os.scandir(self.folder):
            if not entry.name.endswith(".log"):
                continue
            offset = self._offsets.get(entry.name, 0)
            if entry.stat().st_size > offset:
                with open(entry.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                end = data.rfind(b"\n") + 1
                self.count += data.count(b"\n", 0, end)
                self._offsets[entry.name] = offset + end
        return self.count

    def records(self) -> dict[str, list[tuple[int, int]]]:
        """Every record, by ledger file (one per worker process)."""
        out: dict[str, list[tuple[int, int]]] = {}
        for path in sorted(self.folder.glob("*.log")):
            rows = []
            for line in path.read_bytes().splitlines():
                job, _, stamp = line.partition(b" ")
                rows.append((int(job), int(stamp)))
            out[path.name] = rows
        return out


def exactly_once(records: dict[str, list[tuple[int, int]]], jobs: int) -> list[str]:
    """The ways the records differ from "jobs 0..jobs-1, each exactly once" (empty = none)."""
    seen = Counter(job for rows in records.values() for job, _ in rows)
    problems = []
    duplicates = sorted(job for job, n in seen.items() if n > 1)
    missing = jobs - len([job for job in seen if 0 <= job < jobs])
    strays = sorted(job for job in seen if not 0 <= job < jobs)
    if duplicates:
        count = len(duplicates)
        problems.append(
            f"{count} job{'s' * (count != 1)} ran more than once (ids {duplicates[:5]}"
            f"{', ...' * (count > 5)})"
        )
    if missing:
        problems.append(f"{missing} of {jobs} jobs never ran")
    if strays:
        problems.append(f"unknown job ids ran: {strays[:5]}")
    return problems
