"""Draws docs/latency.png from the open-loop results in docs/bench: for each pipeline (split), p99 by
offered rate for main (the ``-main`` file) and this change, each with a cold and a warm encoder cache
where measured so, with the in-process floors and the 25 ms and 50 ms lines. Needs only matplotlib:

    python bench/plot_latency.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

DOCS = Path(__file__).resolve().parent.parent / "docs"
SPLITS = {"auto": "default pipeline", "loo-time": "loo-time pipeline (SASRec, SLIST)"}


def main() -> None:
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(11, 4.2))
    for ax, (split, title) in zip(axes, SPLITS.items(), strict=True):
        path = DOCS / "bench" / f"open-loop-ml-100k-{split}.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text())
        curves = {f"{mode} cache": run["open_loop"] for mode, run in report["runs"].items()}
        before = DOCS / "bench" / f"open-loop-ml-100k-{split}-main.json"
        if before.is_file():
            old = json.loads(before.read_text())
            mains = ({f"main, {mode} cache": run["open_loop"] for mode, run in old["runs"].items()} if "runs" in old
                     else {"main (before)": old["open_loop"]})  # main's open loop had no cache modes
            curves = {**mains, **curves}
            ax.axvline(old["in_process_floor_per_s"], color="gray", linestyle="--", linewidth=0.8,
                       label=f"main's floor ({old['in_process_floor_per_s']:.0f}/s)")
        for label, rows in curves.items():
            served = [r for r in rows if not r["failures"]]
            ax.plot([r["offered_per_s"] for r in served], [r["p99_ms"] for r in served], "o-", label=f"{label} p99")
        ax.axvline(report["in_process_floor_per_s"], color="black", linestyle=":",
                   label=f"floor ({report['in_process_floor_per_s']:.0f}/s)")
        for limit in (25, 50):
            ax.axhline(limit, color="red", linewidth=0.6, alpha=0.6)
        ax.set_yscale("log")
        ax.set_title(f"ML-100k, {title}", fontsize=10)
        ax.set_xlabel("offered requests / s (open loop, loopback, 2 cores; failed rates left out)")
        ax.set_ylabel("p99 from scheduled send (ms)")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOCS / "latency.png", dpi=110)


if __name__ == "__main__":
    main()
