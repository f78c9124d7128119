"""Draws docs/scale.png from docs/bench/scale.json (bench/scale.py): per step, wall time and peak
memory against the number of users (titles grow with them), the serving roles' memory and sizes on
disk, and Recommend p50/p99 at the benchmark's rate. Needs only matplotlib:

    python bench/plot_scale.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

DOCS = Path(__file__).resolve().parent.parent / "docs"
STEPS = ("generate", "train", "evaluate", "export", "serve")
MIB = 2**20


def main() -> None:
    report = json.loads((DOCS / "bench" / "scale.json").read_text())
    points = [p for p in report["points"] if "refused" not in p]
    users = [p["users"] for p in points]
    labels = [f"{p['users'] / 1000:g}k x {p['items'] / 1000:g}k" for p in points]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    time_ax, memory_ax, serving_ax, latency_ax = axes
    for step in STEPS:
        time_ax.plot(users, [p[step]["seconds"] for p in points], marker="o", label=step)
        memory_ax.plot(users, [p[step]["peak_rss_bytes"] / MIB for p in points], marker="o", label=step)
    time_ax.set(title="wall time per step", ylabel="seconds")
    memory_ax.set(title="peak RSS per step (own process)", ylabel="MiB")
    serving = {
        "control plane RSS": [p["serve"]["rss_bytes"]["control_plane"] for p in points],
        "Triton RSS (with stubs)": [p["serve"]["rss_bytes"]["triton"] for p in points],
        "model repository": [p["serve"]["repository_bytes"] for p in points],
        "serving bundle": [p["serve"]["bundle_bytes"] for p in points],
    }
    for name, values in serving.items():
        serving_ax.plot(users, [v / MIB for v in values], marker="o", label=name)
    serving_ax.set(title="serving memory and sizes", ylabel="MiB")
    for key, style in (("p50_ms", "o-"), ("p99_ms", "s-")):
        latency_ax.plot(users, [p["serve"]["recommend"][key] for p in points], style, label=key.replace("_ms", ""))
    latency_ax.plot(users, [p["serve"]["recommend_while_seeding"]["p99_ms"] for p in points], "s--",
                    label="p99 while seeding Redis")
    for point in points:
        if "before the pause" in point.get("measured", ""):  # a point measured before seeding paused
            latency_ax.annotate("seeding not yet paused", (point["users"], point["serve"]["recommend_while_seeding"]["p99_ms"]),
                                textcoords="offset points", xytext=(-110, -4), fontsize=7)
    latency_ax.set(title=f"Recommend at {report['rate_per_s']:.0f}/s (cache misses)", ylabel="ms", ylim=(0, None))
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(users, labels, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("users x titles")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"How each cost grows: {report['machine']}, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(DOCS / "scale.png", dpi=110)


if __name__ == "__main__":
    main()
