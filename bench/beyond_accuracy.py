"""Benchmark: accuracy and beyond (coverage, novelty, diversity, Gini of exposure, popularity bias;
per domain and for short histories) of every kind and the served cascade of a run, as `cinesync
evaluate` computes them; trains the default pipeline first unless --run names a finished one.

    .venv/bin/python bench/beyond_accuracy.py --data ../shared/data/anime [--run RUN_DIR] [--name anime]

Results go to docs/bench/beyond-accuracy-<name>.json; bench/plot_beyond_accuracy.py draws them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from recsys.pipeline import PipelineSpec, beyond_accuracy_report, evaluate, train
from recsys.run import load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"


def say(stage: str, step: int, steps: int, value: float, measure: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {stage} {step}/{steps} {measure} {value:.5f}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--run", type=Path, help="a finished run of --data (default: train the default pipeline)")
    parser.add_argument("--name", help="the report's name (default: the data folder's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.run
        if folder is None:
            folder = train(args.data, Path(scratch), PipelineSpec(), say)
            evaluate(folder)
        kinds = beyond_accuracy_report(folder)
        manifest = load_run(folder).manifest
    report = {"data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "split": manifest["split"]["test"], "members": manifest["pipeline"]["members"],
              "seconds": round(time.perf_counter() - started, 1), "kinds": kinds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"beyond-accuracy-{args.name or Path(args.data).name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
