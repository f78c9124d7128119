"""Benchmark: one member kind alone on a data set: fit early-stopped on validation, refit on the test
split's training part with the chosen epochs / λ, then test metrics, time to the best and peak RSS.

    .venv/bin/python -m bench.kind_quality --data ../shared/data/ml-1m --kind bpr [--set learning_rate=0.001]
    .venv/bin/python -m bench.kind_quality --data ../shared/data/ml-1m --split loo-time --kind sasrec

Each epoch's progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from cinesync.splits import SPLITS
from recsys.data import load_dataset
from recsys.data.splits import Protocol, make_protocol
from recsys.kinds import MemberKind, create
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import catalog_of


def say(stage: str, step: int, steps: int, value: float, measure: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {stage} {step}/{steps} {measure} {value:.5f}", file=sys.stderr, flush=True)


def kind_quality(member: MemberKind, protocol: Protocol) -> dict[str, object]:
    """Fit on validation, refit on the test split's training part, and the test metrics."""
    started = time.perf_counter()
    member.fit(protocol.validation, say)
    fitted = time.perf_counter()
    member.refit(protocol.test.train_sequences, say)
    metrics = evaluate_full_ranking(member.user_scores(protocol.test), protocol.test)
    return {"chosen": member.chosen, "seconds_to_best": round(fitted - started, 1),
            "test": {k: round(v, 4) for k, v in metrics.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--split", choices=SPLITS, default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE", help="hyper-parameter")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data, timestamped=args.split == "loo-time")
    options = dict(assignment.partition("=")[::2] for assignment in args.set)
    member = create(args.kind, catalog_of(dataset), options)
    assert isinstance(member, MemberKind), f"{args.kind} is not a member kind"
    result = kind_quality(member, make_protocol(dataset, split=args.split))
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"data": args.data, "kind": args.kind, "options": options, **result, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
