"""Draws docs/latency.png (p50 and p99 by offered rate, with issue 7's targets) from the open-loop
results in docs/bench/open-loop-*.json. Needs only matplotlib:

    python bench/plot_latency.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

DOCS = Path(__file__).resolve().parent.parent / "docs"
TARGETS_MS = {200: 10.0, 400: 25.0}  # p99 targets of issue 7


def main() -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for path in sorted((DOCS / "bench").glob("open-loop-*.json")):
        report = json.loads(path.read_text())
        rows = report["open_loop"]
        rates = [r["offered_per_s"] for r in rows]
        name = Path(report["data"]).name
        ax.plot(rates, [r["p50_ms"] for r in rows], "o-", label=f"{name} p50")
        ax.plot(rates, [r["p99_ms"] for r in rows], "s-", label=f"{name} p99")
        ax.axvline(report["in_process_floor_per_s"], color="gray", linestyle=":",
                   label=f"{name} in-process floor ({report['in_process_floor_per_s']:.0f}/s)")
    ax.scatter(list(TARGETS_MS), list(TARGETS_MS.values()), marker="*", s=150, color="red", zorder=3,
               label="p99 targets")
    ax.set_yscale("log")
    ax.set_xlabel("offered requests / s (open loop, loopback, 2 cores)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOCS / "latency.png", dpi=110)


if __name__ == "__main__":
    main()
