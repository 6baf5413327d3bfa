"""Draw the peer benchmark's chart from its peers.json (run in the chart's venv, with matplotlib).

.bench-peers/_chart/bin/python bench/peers/chart.py docs/bench/peers.json docs/bench/peers.png
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

#: (panel title, x label, [(summary key, legend label)], log scale)
PANELS = [
    ("Enqueue", "jobs/s", [("single", "single call"), ("bulk", "bulk API")], False),
    (
        "Drain (no-op jobs)",
        "jobs/s (log scale)",
        [("drain1", "1 process"), ("drain2", "2 processes")],
        True,
    ),
    ("Pickup of an idle worker", "ms (log scale)", [("p50_ms", "p50"), ("p99_ms", "p99")], True),
    (
        "Redis server cost per job",
        "µs of server CPU / commands",
        [("server_cpu_us_per_job", "CPU µs"), ("commands_per_job", "commands")],
        False,
    ),
]


def draw(data: dict[str, Any], path: str) -> None:
    rows = data["summary"]
    meta = data["meta"]
    labels = [r["label"] + ("" if r["exactly_once"] else " (FAILED)") for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(15, 2.4 + 0.55 * len(rows)), constrained_layout=True)
    for ax, (title, unit, series, log) in zip(axes.flat, PANELS, strict=True):
        height = 0.8 / len(series)
        for n, (key, name) in enumerate(series):
            values = [r[key] or 0 for r in rows]
            ys = [i + (n - (len(series) - 1) / 2) * height for i in range(len(rows))]
            bars = ax.barh(ys, values, height=height, label=name)
            ax.bar_label(bars, labels=[_label(v) for v in values], fontsize=7, padding=2)
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(unit)
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.18)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(
        f"redisq beside its peers: {meta['jobs']:,} jobs, median of {meta['rounds']} rounds,"
        f" redis-server {meta['redis_version']}, {meta['machine'].split(';')[0]}, {meta['date']}",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)


def _label(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def main(argv: list[str]) -> int:
    source, target = argv
    with open(source) as f:
        draw(json.load(f), target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
