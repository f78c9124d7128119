"""Draws docs/next-watch.png from docs/bench/next-watch-ml-1m.json: test NDCG@10 and HR@10 of every
member and the served cascade on ML-1M users 1-2999, leave-one-out by time, with RecBole's SASRec
from the issue's reference run (cut, on another machine) drawn hatched.

    .venv-recbole/bin/python bench/plot_next_watch.py   (any Python with matplotlib)
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> None:
    report = json.loads((DOCS / "bench" / "next-watch-ml-1m.json").read_text())
    names = ["popularity", "ease", "two_tower", "slist", "sasrec", "cascade"]
    labels = ["popularity", "EASE", "two-tower", "SLIST", "SASRec", "served"]
    reference = report["reference"]["recbole_sasrec_h200_cut_14_epochs"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("ndcg@10", "hr@10"), strict=True):
        values = [report["test"][name][metric] for name in names]
        bars = ax.bar(labels, values, color=["#bbb", "#9ab", "#9ab", "#58a", "#58a", "#c63"])
        ax.bar(["RecBole\nSASRec (cut)"], [reference[metric]], color="white", edgecolor="#58a", hatch="//")
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_title(f"test {metric}", fontsize=10)
        ax.tick_params(axis="x", labelsize=8, rotation=30)
    figure.suptitle("ML-1M users 1-2999, leave-one-out by time (RecBole: the issue's H200 run, cut at 14 epochs)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(DOCS / "next-watch.png", dpi=110)


if __name__ == "__main__":
    main()
