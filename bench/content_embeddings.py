"""Benchmark: content embeddings (recsys.content, all-MiniLM-L6-v2 from the packaged weights) of every
title of the given data sets, timed, with a progress bar per data set on stderr.

    .venv/bin/python bench/content_embeddings.py ../shared/data/ml-1m ../shared/data/anime
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from tqdm import tqdm

from recsys.content import content_embeddings
from recsys.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timings = {}
    started = time.perf_counter()
    for data in args.data:
        items = load_dataset(data).items
        began = time.perf_counter()
        with tqdm(total=len(items), desc=data, unit="title") as bar:
            def advance(stage: str, step: int, steps: int, done: float, measure: str) -> None:
                bar.update(int(done) - bar.n)

            vectors = content_embeddings(items, progress=advance)
        timings[data] = {"titles": len(items), "seconds": round(time.perf_counter() - began, 1),
                         "dimension": int(vectors.shape[1])}
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                      "threads": torch.get_num_threads(), "data": timings,
                      "total_seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
