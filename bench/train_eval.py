"""Benchmark: train the pipeline on a data set, evaluate every kind and the served cascade on test,
and print the metrics with wall times and peak memory as JSON.

    .venv/bin/python bench/train_eval.py --data ../shared/data/ml-100k [--split loo-time] [--set two_tower.epochs=5]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from cinesync.splits import SPLITS
from launcher.cli import pipeline_options
from recsys.pipeline import PipelineSpec, evaluate, train
from recsys.run import MANIFEST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--split", choices=SPLITS, default="auto",
                        help="auto: the data set's fixed split, else leave-one-out by time; loo-time: leave-one-out "
                             "by time (the next-watch pipeline)")
    parser.add_argument("--set", action="append", default=[], metavar="KIND.PARAM=VALUE",
                        help="a kind's hyper-parameter (repeatable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs-dir", default=None, help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    options = pipeline_options(args.set).get("options", {})
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        folder = train(args.data, Path(args.runs_dir or scratch), PipelineSpec(options=options, split=args.split))
        trained = time.perf_counter()
        metrics = evaluate(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        print(json.dumps({  # one line: bench/quality.py reads it
            "data": args.data, "run_dir": str(folder), "split": manifest["split"],
            "pipeline_split": args.split, "options": options,
            "train_s": round(trained - started, 1), "evaluate_s": round(time.perf_counter() - trained, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "chosen": {kind["kind"]: kind["chosen"] for kind in manifest["kinds"]},
            "metrics": metrics,
        }))


if __name__ == "__main__":
    main()
