"""How a run's figures are printed: a block per run, and a Markdown row for docs/reliability.md."""

from __future__ import annotations

from typing import Any

from .checker import Report

__all__ = ["block", "markdown_header", "markdown_row"]


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _causes(causes: dict[str, int] | None) -> str:
    if not causes:
        return ""
    return (
        " (" + ", ".join(f"{k} {v}" for k, v in sorted(causes.items(), key=lambda i: -i[1])) + ")"
    )


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def block(report: Report, command: str) -> str:
    """The figures of one run, several lines, in the form docs/reliability.md quotes."""
    f = report.figures
    verdict = "PASS" if report.ok else "FAIL " + ", ".join(report.failed())
    lines = [f"{f.get('scenario')} seed {f.get('seed')}: {verdict}"]
    ledger = "leases" in f  # S10 runs its worker without a ledger
    if ledger:
        lines.append(
            f"  jobs {_n(f['jobs'])}: completed {_n(f.get('completed'))}, dead {_n(f.get('dead'))}"
            f" (poison {_n(f.get('dead_poison'))}, other {_n(f.get('dead_other'))}); lost"
            f" {_n(f.get('lost'))}"
        )
    elif "jobs" in f:
        lines.append(f"  jobs {_n(f['jobs'])}")
    if ledger:
        lines.extend(_ledger_lines(f))
    for name, value in (f.get("scenario_figures") or {}).items():
        lines.append(f"  {name}: {_n(value)}")
    lines.append(f"  drained in {_n(f.get('drained_s'))} s; wall {_n(f.get('wall_s'))} s")
    lines.append(f"  command: {command}")
    if not report.ok:
        lines.append("  violations:")
        lines.extend("    " + line for line in report.describe().splitlines())
    return "\n".join(lines)


def _ledger_lines(f: dict[str, Any]) -> list[str]:
    lines = []
    lines.append(
        f"  duplicates {_n(f.get('duplicates'))}{_causes(f.get('duplicate_causes'))}; re-runs"
        f" {_n(f.get('reruns'))}{_causes(f.get('rerun_causes'))}"
    )
    lines.append(
        f"  overlapping valid leases {_n(f.get('overlapping_leases'))}; stale acks accepted"
        f" {_n(f.get('stale_acks_accepted'))} (other stale transitions"
        f" {_n(f.get('stale_other_accepted'))})"
    )
    refusals = ", ".join(f"{k} {v}" for k, v in (f.get("refusals") or {}).items()) or "none"
    lines.append(
        f"  refusals: {refusals}; SIGSTOPs past a lease {_n(f.get('stops_over_a_lease'))},"
        f" followed by a refusal {_n(f.get('stops_followed_by_refusal'))}"
    )
    lines.append(
        f"  recovery p50 {_ms(f.get('recovery_p50_ms'))}, max {_ms(f.get('recovery_max_ms'))}"
        f" ({_n(f.get('recoveries'))} expired leases granted again)"
    )
    faults = ", ".join(f"{k} {v}" for k, v in (f.get("faults") or {}).items()) or "none"
    lines.append(f"  faults: {faults}")
    extra = []
    if f.get("claim_replies_after_deadline"):
        extra.append(
            "claim replies handled after their lease's deadline (worker stopped in between, or"
            f" a re-sent claim) {f['claim_replies_after_deadline']}"
        )
    if f.get("acks_unconfirmed"):
        extra.append(f"acks whose reply died with its worker {f['acks_unconfirmed']}")
    if f.get("torn_lines"):
        extra.append(f"torn ledger lines {f['torn_lines']}")
    if extra:
        lines.append("  " + "; ".join(extra))
    return lines


def markdown_header() -> str:
    """The header of the runs table."""
    return (
        "| scenario | seed | command | jobs | lost | duplicates (causes) | overlapping valid"
        " leases | stale acks accepted | recovery p50 / max | wall | result |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )


def markdown_row(report: Report, command: str) -> str:
    """One run as a row of the runs table."""
    f = report.figures
    duplicates = f"{_n(f.get('duplicates'))}{_causes(f.get('duplicate_causes'))}"
    recovery = f"{_ms(f.get('recovery_p50_ms'))} / {_ms(f.get('recovery_max_ms'))}"
    result = "pass" if report.ok else "FAIL " + ", ".join(report.failed())
    return (
        f"| {f.get('scenario')} | {f.get('seed')} | `{command}` | {_n(f.get('jobs'))} |"
        f" {_n(f.get('lost'))} | {duplicates} | {_n(f.get('overlapping_leases'))} |"
        f" {_n(f.get('stale_acks_accepted'))} | {recovery} | {_n(f.get('wall_s'))} s | {result} |"
    )
