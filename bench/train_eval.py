"""Benchmark: train on a data set with TrainConfig overrides and print full-ranking metrics and times.

    .venv/bin/python bench/train_eval.py --data ../shared/data/ml-100k --set popularity_negative_share=0.5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch

from recsys.pipeline import evaluate, train
from recsys.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    types = {f.name: f.type for f in fields(TrainConfig)}
    overrides: dict[str, float | int] = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        if key not in types:
            parser.error(f"unknown TrainConfig field {key!r}; one of {', '.join(types)}")
        overrides[key] = float(value) if types[key] == "float" else int(value)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        folder = train(args.data, Path(runs), TrainConfig(**overrides), lambda *_: None)  # type: ignore[arg-type]
        trained = time.perf_counter()
        metrics = evaluate(folder)
        print(json.dumps({"data": args.data, "overrides": overrides, "train_s": round(trained - started, 1),
                          "evaluate_s": round(time.perf_counter() - trained, 1), "metrics": metrics}, indent=2))


if __name__ == "__main__":
    main()
