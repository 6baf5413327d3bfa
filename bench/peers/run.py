"""redisq beside the Python Redis queues people would otherwise pick, in one interleaved run.

    make bench-peers                                       # the full run: 20,000 jobs, 5 rounds
    make bench-peers BENCH_PEERS_ARGS="--jobs 5000 --rounds 3"
    python bench/peers/run.py --smoke --queues redisq,huey  # 500 jobs, 1 round (the test's run)

Every queue runs from its own venv (.bench-peers/<queue>/, built from the pinned
bench/peers/<queue>/requirements.txt and reused while that file is unchanged; redisq runs from
this checkout) against one private redis-server on a free loopback port, flushed between runs.
Each round runs every queue once, in a shuffled order; the table gives medians over rounds.

Per queue and round (N jobs, one no-op task whose handler records its id and start time):
  A. enqueue N jobs one call at a time (timed), then drain them with 1 worker process;
  B. enqueue N jobs through the bulk API (timed), then drain them with 2 worker processes;
  C. pickup: one idle worker, jobs enqueued one at a time, each timed from the enqueue call
     to its handler's start; then the idle worker's Redis commands over --idle-seconds.
Workers are started, built and connected, then released together through a pipe, so their
start-up is not timed; a drain's rate is measured from its first handler start to its last.
Every job must run exactly once (the handlers' ledgers are checked: N records, no duplicate,
none missing); a queue that fails this is reported as failing. Redis commands and server CPU
per job cover A (enqueue and drain), from INFO commandstats and INFO cpu.

Results: <out>/peers.md (the table), <out>/peers.json (every round), <out>/peers.png (chart,
drawn by chart.py in its own venv with matplotlib). Exit status 1 when a queue failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from harness import Ledger, Proc, Server, Snapshot, build_venvs, exactly_once
from report import machine, markdown, summarize, versions

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERLIB = HERE / "peerlib.py"
CHART = HERE / "chart.py"
CHART_REQUIREMENTS = HERE / "chart-requirements.txt"

#: The peers: (key = folder under bench/peers, label in the table).
PEERS = [
    ("dramatiq", "dramatiq"),
    ("huey", "huey"),
    ("taskiq", "taskiq-redis (streams)"),
    ("saq", "saq"),
    ("celery", "celery (Redis broker)"),
    ("rq", "rq"),
    ("arq", "arq"),
    ("streaq", "streaq"),
    ("bullmq", "bullmq (Python)"),
]
TUNED = "4:500"
JOBS, SMOKE_JOBS = 20_000, 500
ROUNDS, SMOKE_ROUNDS = 5, 1
PICKUPS, SMOKE_PICKUPS = 200, 20
IDLE_S, SMOKE_IDLE_S = 10.0, 1.0
#: A drain that records nothing for this long is stuck (that queue's round fails).
STALL_S = 30.0
#: How long a worker may take to build itself and say "ready".
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class QueueSpec:
    """One row of the table: the queue's folder (adapter.py), its settings, its label, and
    the venv it runs in ("" = this interpreter, for redisq from this checkout)."""

    key: str
    dir: Path
    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    venv: str = ""


class PhaseError(Exception):
    """A phase of one queue's round failed; the message says how (and the log tail)."""


@dataclass
class Context:
    """What every phase needs: the server, the run's folder, the venvs, the options."""

    server: Server
    admin: redis.Redis
    workdir: Path
    pythons: dict[str, Path]
    args: argparse.Namespace
    counter: int = 0

    def fresh(self, name: str) -> Path:
        self.counter += 1
        path = self.workdir / f"{self.counter:04d}-{name}"
        path.mkdir()
        return path

    def python(self, spec: QueueSpec) -> Path:
        return self.pythons[spec.venv] if spec.venv else Path(sys.executable)

    def spawn(
        self,
        spec: QueueSpec,
        role: str,
        folder: Path,
        extra: list[str],
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> Proc:
        log = folder / f"{role}-{self.counter}-{len(list(folder.iterdir()))}.log"
        command = [
            str(self.python(spec)),
            str(PEERLIB),
            str(spec.dir),
            role,
            "--url",
            self.server.url,
            "--settings",
            json.dumps(spec.settings),
            *extra,
        ]
        environment = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        environment.update(env or {})
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment,
                pass_fds=pass_fds,
                start_new_session=True,
                cwd=folder,
            )
        return Proc(popen, log)

    def flush(self) -> None:
        self.admin.flushall()


def run_to_end(
    ctx: Context,
    spec: QueueSpec,
    role: str,
    folder: Path,
    extra: list[str],
    timeout_s: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a producer role to its end and return the JSON it wrote."""
    out = folder / f"{role}.json"
    proc = ctx.spawn(spec, role, folder, [*extra, "--out", str(out)], env)
    try:
        code = proc.popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.stop()
        raise PhaseError(f"{role} did not finish within {timeout_s:.0f} s\n{proc.tail()}") from None
    if code != 0 or not out.exists():
        raise PhaseError(f"{role} exited with {code}\n{proc.tail()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def start_workers(
    ctx: Context, spec: QueueSpec, folder: Path, count: int, env: dict[str, str]
) -> list[Proc]:
    """Start `count` worker processes and wait until each is built and blocked on the barrier."""
    workers: list[Proc] = []
    try:
        for _ in range(count):
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            proc = ctx.spawn(
                spec,
                "work",
                folder,
                ["--ready-fd", str(ready_w), "--go-fd", str(go_r)],
                env,
                pass_fds=(ready_w, go_r),
            )
            os.close(ready_w)
            os.close(go_r)
            proc.ready_r, proc.go_w = ready_r, go_w
            workers.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for proc in workers:
            ready, _, _ = select.select([proc.ready_r], [], [], max(0, deadline - time.monotonic()))
            if not ready or not os.read(proc.ready_r, 16).startswith(b"ready"):
                raise PhaseError(f"a worker did not get ready\n{proc.tail()}")
        return workers
    except BaseException:
        for proc in workers:
            proc.stop()
        raise


def release(workers: list[Proc]) -> int:
    """Let the workers run, all at once; return the release time (CLOCK_MONOTONIC, ns)."""
    released = time.monotonic_ns()
    for proc in workers:
        os.write(proc.go_w, b"go\n")
    return released


# --------------------------------------------------------------------------------- phases


def fill(ctx: Context, spec: QueueSpec, mode: str, jobs: int) -> dict[str, Any]:
    """Enqueue `jobs` jobs (single or bulk) into the flushed server; time, commands, CPU."""
    ctx.flush()
    folder = ctx.fresh(f"{spec.key}-fill-{mode}")
    before = Snapshot.take(ctx.admin)
    result = run_to_end(
        ctx, spec, "fill", folder, ["--mode", mode, "--jobs", str(jobs)], timeout_s=60 + jobs / 50
    )
    commands, cpu_s, by_name = Snapshot.take(ctx.admin).since(before)
    return {
        "rate": jobs / result["seconds"],
        "seconds": result["seconds"],
        "commands": commands,
        "cpu_s": cpu_s,
        "by_command": by_name,
    }


def drain(ctx: Context, spec: QueueSpec, jobs: int, processes: int) -> dict[str, Any]:
    """Release `processes` workers on the filled queue; time the drain, check every job."""
    folder = ctx.fresh(f"{spec.key}-drain-{processes}")
    ledger_dir = folder / "ledger"
    ledger_dir.mkdir()
    env = {"BENCH_LEDGER_DIR": str(ledger_dir)}
    workers = start_workers(ctx, spec, folder, processes, env)
    ledger = Ledger(ledger_dir)
    try:
        before = Snapshot.take(ctx.admin)
        released = release(workers)
        progressed, done = time.monotonic(), 0
        while done < jobs:
            time.sleep(0.02)
            was, done = done, ledger.poll()
            if done > was:
                progressed = time.monotonic()
            elif time.monotonic() - progressed > ctx.args.stall_seconds:
                dead = [p for p in workers if p.popen.poll() is not None]
                tail = dead[0].tail() if dead else workers[0].tail()
                raise PhaseError(
                    f"drain stalled at {done:,} of {jobs:,} jobs"
                    f" ({len(dead)} of {processes} workers exited)\n{tail}"
                )
        time.sleep(0.2)  # the last jobs' acks
        commands, cpu_s, by_name = Snapshot.take(ctx.admin).since(before)
        rss_kib = max(p.peak_rss_kib() for p in workers)
    finally:
        for proc in workers:
            proc.stop()
    records = ledger.records()
    problems = exactly_once(records, jobs)
    stamps = sorted(t for rows in records.values() for _, t in rows)
    firsts = [min(t for _, t in rows) for rows in records.values() if rows]
    span_ns = max(1, stamps[-1] - stamps[0])
    return {
        "rate": (len(stamps) - 1) / span_ns * 1e9,
        "rate_from_release": jobs / max(1, stamps[-1] - released) * 1e9,
        "start_skew_ms": (max(firsts) - min(firsts)) / 1e6 if len(firsts) > 1 else 0.0,
        "per_process": [len(rows) for rows in records.values()],
        "commands": commands,
        "cpu_s": cpu_s,
        "by_command": by_name,
        "peak_rss_mib": rss_kib / 1024,
        "problems": problems,
    }


def pickup_and_idle(ctx: Context, spec: QueueSpec, count: int) -> dict[str, Any]:
    """Time pickups into one idle worker, then count what it sends while idle."""
    ctx.flush()
    folder = ctx.fresh(f"{spec.key}-pickup")
    ledger_dir = folder / "ledger"
    ledger_dir.mkdir()
    sock = folder / "pickup.sock"
    env = {"BENCH_LEDGER_DIR": str(ledger_dir), "BENCH_PICKUP_SOCKET": str(sock)}
    workers = start_workers(ctx, spec, folder, 1, env)
    try:
        release(workers)
        extra = [
            "--count",
            str(count),
            "--gap-ms",
            str(ctx.args.pickup_gap_ms),
            "--socket",
            str(sock),
        ]
        result = run_to_end(ctx, spec, "pickup", folder, extra, timeout_s=180 + count * 2.0)
        time.sleep(1.0)  # past the last job: the worker settles into waiting
        before = Snapshot.take(ctx.admin)
        time.sleep(ctx.args.idle_seconds)
        commands, _, by_name = Snapshot.take(ctx.admin).since(before)
        rss_kib = workers[0].peak_rss_kib()
    finally:
        workers[0].stop()
    total = count + 3  # peerlib.PICKUP_WARMUPS
    problems = exactly_once(Ledger(ledger_dir).records(), total)
    latencies = sorted(result["latencies_ms"])
    return {
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "enqueue_p50_ms": percentile(sorted(result["enqueue_ms"]), 0.50),
        "idle_commands_per_s": commands / ctx.args.idle_seconds,
        "idle_by_command": by_name,
        "peak_rss_mib": rss_kib / 1024,
        "problems": problems + [f"stray records: {result['strays'][:5]}"] * bool(result["strays"]),
    }


def percentile(ordered: list[float], q: float) -> float:
    """The `q` quantile of sorted values, by nearest rank."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_round(ctx: Context, spec: QueueSpec) -> dict[str, Any]:
    """One round of one queue: phases A, B and C. A failed phase is recorded, not raised."""
    jobs = ctx.args.jobs
    out: dict[str, Any] = {"errors": [], "problems": []}

    def phase(name: str, fn: Any) -> dict[str, Any] | None:
        try:
            return fn()  # type: ignore[no-any-return]
        except PhaseError as exc:
            out["errors"].append(f"{name}: {exc}")
            print(f"    {spec.key} {name} FAILED: {str(exc).splitlines()[0]}", flush=True)
            return None

    single = phase("single enqueue", lambda: fill(ctx, spec, "single", jobs))
    if single:
        out["single"] = single
        one = phase("drain, 1 process", lambda: drain(ctx, spec, jobs, 1))
        if one:
            out["drain1"] = one
            out["problems"] += [f"drain, 1 process: {p}" for p in one["problems"]]
    bulk = phase("bulk enqueue", lambda: fill(ctx, spec, "bulk", jobs))
    if bulk:
        out["bulk"] = bulk
        two = phase("drain, 2 processes", lambda: drain(ctx, spec, jobs, 2))
        if two:
            out["drain2"] = two
            out["problems"] += [f"drain, 2 processes: {p}" for p in two["problems"]]
    pickup = phase("pickup", lambda: pickup_and_idle(ctx, spec, ctx.args.pickups))
    if pickup:
        out["pickup"] = pickup
        out["problems"] += [f"pickup: {p}" for p in pickup["problems"]]
    return out


# ------------------------------------------------------------------------------------- main


def parse_tuned(text: str) -> dict[str, int] | None:
    if not text:
        return None
    concurrency, _, prefetch = text.partition(":")
    return {"concurrency": int(concurrency), "prefetch": int(prefetch or 0)}


def queue_specs(args: argparse.Namespace) -> list[QueueSpec]:
    """The queues of the run, in the order given: --queues, redisq's tuned row, --adapter."""
    known = {key: label for key, label in PEERS}
    tuned = parse_tuned(args.tuned)
    settings: dict[str, dict[str, Any]] = {}
    for item in args.set:
        name, _, text = item.partition("=")
        settings[name] = json.loads(text)
    specs = []
    for name in [n.strip() for n in args.queues.split(",") if n.strip()]:
        if name == "redisq":
            specs.append(QueueSpec("redisq", HERE / "redisq", "redisq, defaults"))
            if tuned is not None:
                label = f"redisq, concurrency {tuned['concurrency']}, prefetch {tuned['prefetch']}"
                specs.append(QueueSpec("redisq-tuned", HERE / "redisq", label, tuned))
        elif name in known:
            label = known[name] + (" " + json.dumps(settings[name]) if name in settings else "")
            specs.append(QueueSpec(name, HERE / name, label, settings.get(name, {}), venv=name))
        else:
            choices = ", ".join(["redisq", *known])
            raise SystemExit(f"run.py: unknown queue {name!r}: choose from {choices}")
    for item in args.adapter:
        name, _, folder = item.partition("=")
        path = Path(folder).resolve()
        if not (path / "adapter.py").exists():
            raise SystemExit(f"run.py: --adapter {item}: no adapter.py in {path}")
        venv = name if (path / "requirements.txt").exists() else ""
        specs.append(QueueSpec(name, path, name, settings.get(name, {}), venv=venv))
    return specs


def shown_command(given: list[str]) -> str:
    """The make command that reproduces a run (its --note, shown on a line of its own, left out)."""
    kept: list[str] = []
    skip = False
    for arg in given:
        if skip or arg.startswith("--note="):
            skip = False
            continue
        if arg == "--note":
            skip = True
            continue
        kept.append(arg)
    return (
        f"make bench-peers BENCH_PEERS_ARGS={shlex.quote(shlex.join(kept))}"
        if kept
        else ("make bench-peers")
    )


def draw_chart(python: Path, out_dir: Path) -> bool:
    """Draw peers.png from peers.json in the chart's venv; False (and a message) if it fails."""
    done = subprocess.run(
        [str(python), str(CHART), str(out_dir / "peers.json"), str(out_dir / "peers.png")]
    )
    if done.returncode:
        print("run.py: the chart failed (see above)", file=sys.stderr)
    return done.returncode == 0


def render(path: Path, cache: Path, chart: bool) -> int:
    """Write peers.md (and peers.png) again from a run's peers.json, beside it."""
    data = json.loads(path.read_text())
    meta, rows = data["meta"], data["summary"]
    if "argv" not in meta:  # a run from before "argv" was kept: recover it from the command
        words = shlex.split(meta["command"])
        meta["argv"] = shlex.split(words[-1].partition("=")[2]) if len(words) > 2 else []
    meta["command"] = shown_command(meta["argv"])
    path.write_text(json.dumps(data, indent=1) + "\n")
    (path.parent / "peers.md").write_text(markdown(meta, rows))
    if chart:
        pythons, _ = build_venvs({"_chart": CHART_REQUIREMENTS}, cache)
        if not draw_chart(pythons["_chart"], path.parent):
            return 1
    return 0 if all(r["exactly_once"] for r in rows) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = ",".join(["redisq", *(key for key, _ in PEERS)])
    p.add_argument("--queues", default=names, help=f"comma-separated ({names})")
    p.add_argument(
        "--tuned",
        default=TUNED,
        help=f"redisq's tuned row, concurrency:prefetch ({TUNED}; '' for none)",
    )
    p.add_argument("--jobs", type=int, help=f"jobs per drain ({JOBS:,}; smoke {SMOKE_JOBS})")
    p.add_argument(
        "--rounds", type=int, help=f"interleaved rounds ({ROUNDS}; smoke {SMOKE_ROUNDS})"
    )
    p.add_argument("--pickups", type=int, help=f"timed pickups ({PICKUPS}; smoke {SMOKE_PICKUPS})")
    p.add_argument(
        "--pickup-gap-ms",
        type=float,
        default=20.0,
        help="pause before each pickup, so the worker is idle (20)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        help=f"idle window counted ({IDLE_S:g}; smoke {SMOKE_IDLE_S:g})",
    )
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=STALL_S,
        help=f"a drain that records nothing this long fails ({STALL_S:g})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="QUEUE=JSON",
        help="override a queue's settings (repeatable), e.g. huey='{\"workers\": 4}'",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="add a queue: a folder with adapter.py (and requirements.txt for its own venv;"
        " without one it runs in this interpreter)",
    )
    p.add_argument(
        "--render", metavar="JSON", help="redraw peers.md and peers.png from a run's json"
    )
    p.add_argument("--smoke", action="store_true", help="the small sizes above, for the test")
    p.add_argument("--seed", type=int, help="seed of the round order (random)")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench"), help="docs/bench")
    p.add_argument("--cache", default=str(ROOT / ".bench-peers"), help="venv cache (.bench-peers)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib venv)")
    p.add_argument("--redis-server", default="redis-server", help="the server binary")
    p.add_argument("--note", default="", help="a line for the table's header")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.render:
        return render(Path(args.render), Path(args.cache), chart=not args.no_chart)
    args.jobs = args.jobs or (SMOKE_JOBS if args.smoke else JOBS)
    args.rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else ROUNDS)
    args.pickups = args.pickups or (SMOKE_PICKUPS if args.smoke else PICKUPS)
    args.idle_seconds = args.idle_seconds or (SMOKE_IDLE_S if args.smoke else IDLE_S)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    specs = queue_specs(args)
    if not specs:
        raise SystemExit("run.py: no queue to run (--queues, --adapter)")
    binary = shutil.which(args.redis_server)
    if binary is None:
        raise SystemExit(f"run.py: {args.redis_server} not found: apt-get install redis-server")
    given = list(argv if argv is not None else sys.argv[1:])
    command = shown_command(given)
    started = time.perf_counter()
    print(f"# {command}  (= python bench/peers/run.py {shlex.join(given)})", flush=True)
    wanted = {s.venv: s.dir / "requirements.txt" for s in specs if s.venv}
    if not args.no_chart:
        wanted["_chart"] = CHART_REQUIREMENTS
    pythons, build_s = build_venvs(wanted, Path(args.cache))
    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {s.key: [] for s in specs}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        server = Server(binary, Path(tmp))
        admin = server.start()
        try:
            redis_version = admin.info("server")["redis_version"]
            ctx = Context(server, admin, Path(tmp), pythons, args)
            rng = random.Random(seed)
            for round_no in range(1, args.rounds + 1):
                order = specs[:]
                rng.shuffle(order)
                print(
                    f"round {round_no}/{args.rounds}: {', '.join(s.key for s in order)}", flush=True
                )
                for spec in order:
                    began = time.perf_counter()
                    r = run_round(ctx, spec)
                    results[spec.key].append(r)
                    print(
                        f"  {spec.key}: {_brief(r)} ({time.perf_counter() - began:.0f} s)",
                        flush=True,
                    )
        finally:
            server.stop()
    rows = [summarize(spec, results[spec.key], args.jobs) for spec in specs]
    meta = {
        "machine": machine(),
        "python": platform.python_version(),
        "redis_version": redis_version,
        "command": command,
        "argv": given,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "jobs": args.jobs,
        "rounds": args.rounds,
        "pickups": args.pickups,
        "idle_seconds": args.idle_seconds,
        "seed": seed,
        "load_start": load_start,
        "load_end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "note": args.note,
        "versions": versions(specs),
        "venv_build_seconds": build_s,
        "run_seconds": time.perf_counter() - started,
    }
    (out_dir / "peers.json").write_text(
        json.dumps({"meta": meta, "summary": rows, "rounds": results}, indent=1) + "\n"
    )
    table = markdown(meta, rows)
    (out_dir / "peers.md").write_text(table)
    if not args.no_chart and not draw_chart(pythons["_chart"], out_dir):
        return 1
    print()
    print(table)
    print(f"({meta['run_seconds']:.0f} s in all; results in {out_dir})")
    return 0 if all(r["exactly_once"] for r in rows) else 1


def _brief(r: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("single", "single"),
        ("bulk", "bulk"),
        ("drain1", "drain1"),
        ("drain2", "drain2"),
    ):
        if key in r:
            parts.append(f"{label} {r[key]['rate']:,.0f}/s")
    if "pickup" in r:
        parts.append(f"pickup p50 {r['pickup']['p50_ms']:.2f} ms")
    if r["errors"] or r["problems"]:
        parts.append(f"{len(r['errors']) + len(r['problems'])} FAILURES")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
