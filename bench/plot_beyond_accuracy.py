"""Draws docs/beyond-accuracy.png from docs/bench/beyond-accuracy-<data set>.json (`cinesync evaluate
RUN_DIR --json` of a run on that data set): per data set, NDCG@10 against popularity bias (mean
share of users who have a recommended item) for every kind and the served cascade, each point sized
by its intra-list genre diversity and labelled with its catalog coverage.

    .venv-recbole/bin/python bench/plot_beyond_accuracy.py ml-1m anime   (any Python with matplotlib)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="data set names with a docs/bench/beyond-accuracy-<name>.json")
    args = parser.parse_args()
    figure, axes = plt.subplots(1, len(args.data), figsize=(5.2 * len(args.data), 4.2), squeeze=False)
    for ax, data in zip(axes[0], args.data, strict=True):
        report = json.loads((DOCS / "bench" / f"beyond-accuracy-{data}.json").read_text())
        points: dict[tuple[float, float], list[str]] = {}
        for kind, groups in report["kinds"].items():  # kinds with the same list share a point
            metrics = groups["all"]
            points.setdefault((metrics["popularity@10"], metrics["ndcg@10"]), []).append(
                "served" if kind == "cascade" else kind)
        for (bias, ndcg), kinds in points.items():
            metrics = report["kinds"]["cascade" if "served" in kinds else kinds[0]]["all"]
            served = "served" in kinds
            ax.scatter(bias, ndcg, s=60 + 900 * metrics.get("diversity@10", 0) ** 2,
                       color="#c63" if served else "#58a", alpha=0.8, edgecolor="black" if served else "none")
            ax.annotate(f"{' = '.join(kinds)}\ncov {metrics['coverage@10']:.2f}", (bias, ndcg), fontsize=7,
                        xytext=(6, 4), textcoords="offset points")
        ax.set_title(f"{data}: {report['split'].split(':')[0]}", fontsize=9)
        ax.margins(0.15)
        ax.set_xlabel("popularity bias: mean share of users who have a recommended item")
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
    figure.suptitle("Accuracy against popularity bias; point size: intra-list genre diversity@10", fontsize=10)
    figure.tight_layout()
    figure.savefig(DOCS / "beyond-accuracy.png", dpi=120)


if __name__ == "__main__":
    main()
