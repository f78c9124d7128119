"""Benchmark: EASE alone on a data set's auto split, default grids, test touched once: the validation
choice, test NDCG@10 and recall@20, and the fit's seconds. Run it from another checkout (its
PYTHONPATH, its working directory) to compare two versions of the kind on one machine:

    .venv/bin/python -m bench.ease_parity --data ../shared/data/ml-1m
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.kinds import create
from recsys.kinds.ease import Ease
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import catalog_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-100k")
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = load_dataset(args.data)
    protocol = make_protocol(dataset)
    ease = create("ease", catalog_of(dataset), None, seed=0)
    assert isinstance(ease, Ease)
    started = time.monotonic()
    ease.fit(protocol.validation)
    fit_seconds = time.monotonic() - started
    metrics = evaluate_full_ranking(ease.user_scores(protocol.test), protocol.test)
    print(json.dumps({"data": args.data, "chosen": ease.chosen, "test_ndcg@10": metrics["ndcg@10"],
                      "recall@20": metrics["recall@20"], "fit_s": round(fit_seconds, 1)}))


if __name__ == "__main__":
    main()
