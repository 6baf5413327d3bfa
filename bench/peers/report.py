"""The peer benchmark's results: medians over rounds, the Markdown table, the machine.

Used by run.py (see its docstring for what each figure measures).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(spec: Any, rounds: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    """Medians over the rounds, and whether every job of every round ran exactly once."""

    def values(path: str, key: str) -> list[float]:
        return [r[path][key] for r in rounds if path in r]

    lifecycle_cmds = [
        (r["single"]["commands"] + r["drain1"]["commands"]) / jobs
        for r in rounds
        if "single" in r and "drain1" in r
    ]
    lifecycle_cpu = [
        1e6 * (r["single"]["cpu_s"] + r["drain1"]["cpu_s"]) / jobs
        for r in rounds
        if "single" in r and "drain1" in r
    ]
    rss = [
        max(r[p]["peak_rss_mib"] for p in ("drain1", "drain2", "pickup") if p in r)
        for r in rounds
        if any(p in r for p in ("drain1", "drain2", "pickup"))
    ]
    failures = [e for r in rounds for e in r["errors"] + r["problems"]]
    return {
        "key": spec.key,
        "label": spec.label,
        "settings": spec.settings,
        "single": _median(values("single", "rate")),
        "bulk": _median(values("bulk", "rate")),
        "drain1": _median(values("drain1", "rate")),
        "drain2": _median(values("drain2", "rate")),
        "p50_ms": _median(values("pickup", "p50_ms")),
        "p99_ms": _median(values("pickup", "p99_ms")),
        "commands_per_job": _median(lifecycle_cmds),
        "server_cpu_us_per_job": _median(lifecycle_cpu),
        "idle_commands_per_s": _median(values("pickup", "idle_commands_per_s")),
        "peak_rss_mib": _median(rss),
        "exactly_once": not failures,
        "failures": failures,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {model}; {platform.system()} {platform.release()}"


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The results table with its header: machine, command, date, what each column means."""
    lines = [
        "# redisq beside its peers",
        "",
        f"- Machine: {meta['machine']}; Python {meta['python']}; redis-server"
        f" {meta['redis_version']} (private, loopback, persistence off)",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}; {meta['jobs']:,} no-op jobs per drain, {meta['rounds']}"
        f" interleaved round{'s' * (meta['rounds'] != 1)} (order shuffled, seed {meta['seed']}),"
        " medians; load average"
        f" {meta['load_start']} at the start, {meta['load_end']} at the end",
    ]
    if meta.get("note"):
        lines.append(f"- Note: {meta['note']}")
    lines += [
        "",
        "| queue | single enqueue /s | bulk enqueue /s | drain, 1 process /s |"
        " drain, 2 processes /s | pickup p50 / p99 ms | Redis commands per job |"
        " Redis CPU µs per job | idle commands /s | peak worker RSS MiB | every job once |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        once = "yes" if r["exactly_once"] else "**NO**"
        lines.append(
            f"| {r['label']} | {_fmt(r['single'], ',.0f')} | {_fmt(r['bulk'], ',.0f')} |"
            f" {_fmt(r['drain1'], ',.0f')} | {_fmt(r['drain2'], ',.0f')} |"
            f" {_fmt(r['p50_ms'], '.2f')} / {_fmt(r['p99_ms'], '.2f')} |"
            f" {_fmt(r['commands_per_job'], '.1f')} | {_fmt(r['server_cpu_us_per_job'], '.1f')} |"
            f" {_fmt(r['idle_commands_per_s'], '.2f')} | {_fmt(r['peak_rss_mib'], '.0f')} |"
            f" {once} |"
        )
    failing = [r for r in rows if not r["exactly_once"]]
    if failing:
        lines += ["", "Failures:", ""]
        for r in failing:
            for failure in r["failures"][:5]:
                first = failure.splitlines()[0]
                lines.append(f"- {r['label']}: {first}")
    lines += [
        "",
        "Single enqueue: one job per call, the call a web request makes. Bulk: the queue's own"
        " bulk API, 1,000 jobs per call (see each queue's README for what that is). Drains:"
        " the queue filled first, the worker processes built and connected, then released"
        " together; the rate runs from the first handler start to the last. Pickup: one idle"
        " worker, from the enqueue call to the handler's start (one monotonic clock). Redis"
        " commands and CPU per job: INFO commandstats (commands run inside scripts count) and"
        " used_cpu_user + used_cpu_sys over one job's life (single enqueue, then the 1-process"
        " drain). Idle: commands per second the server ran for one idle worker. RSS: VmHWM of"
        " the largest worker process. Every job once: each handler records its job id; every"
        " drain and pickup had each id exactly once.",
        "",
        "Settings per queue (see bench/peers/<queue>/README.md):",
        "",
    ]
    lines += [f"- {r['label']}: {meta['versions'].get(r['key'], '')}" for r in rows]
    return "\n".join(lines) + "\n"


def versions(specs: list[Any]) -> dict[str, str]:
    """Each queue's version and settings, from the "Settings:" line of its README.md."""
    out = {}
    for spec in specs:
        if spec.dir.name == "redisq":
            settings = ", ".join(f"{k}={v}" for k, v in spec.settings.items()) or "defaults"
            out[spec.key] = f"this checkout, Worker({settings})"
            continue
        readme = spec.dir / "README.md"
        lines = readme.read_text().splitlines() if readme.exists() else []
        summary = next(
            (x.removeprefix("Settings:").strip() for x in lines if x.startswith("Settings:")), ""
        )
        if spec.settings:
            summary += f" (overridden here: {json.dumps(spec.settings)})"
        out[spec.key] = summary
    return out
