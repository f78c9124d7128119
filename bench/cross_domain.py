"""Benchmark: cross-domain movie <-> TV on anime. For each direction, the pipeline trained on that
split (recsys.data.splits.cross_domain_protocol: a seeded 20 % of the users with >= 5 items in both
domains keep only their source-domain items; their target-domain items are the test), and every kind
and the served cascade evaluated on test, ranking target-domain items only. Ratios are against the
joint EASE (one EASE on both domains, validation-tuned) and target-domain popularity, from the same run.

    .venv/bin/python -m bench.cross_domain --data ../shared/data/anime [--runs-dir DIR] [--set two_tower.epochs=4]

Results go to docs/bench/cross-domain-<data set>.json; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.machine import machine
from bench.pipeline_arguments import add_pipeline_arguments, kind_options
from cinesync.splits import CROSS_DOMAIN
from recsys.pipeline import CASCADE, PipelineSpec, evaluate, train

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
SHOWN = ("ndcg@10", "recall@10", "hr@10", "ndcg@20", "recall@20", "coverage@10")


def say(stage: str, step: int, steps: int, value: float, measure: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {stage} {step}/{steps} {measure} {value:.5f}", file=sys.stderr, flush=True)


def direction(data: str, split: str, runs_dir: Path, options: dict[str, dict[str, object]]) -> dict[str, object]:
    started = time.perf_counter()
    folder = train(data, runs_dir, PipelineSpec(split=split, options=options), say)
    metrics = evaluate(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    joint, popular = metrics["ease"]["ndcg@10"], metrics["popularity"]["ndcg@10"]
    return {
        "run_dir": str(folder), "split": manifest["split"], "seconds": round(time.perf_counter() - started, 1),
        "chosen": {kind["kind"]: kind["chosen"] for kind in manifest["kinds"]},
        "metrics": {kind: {k: round(v[k], 4) for k in (*SHOWN, "users")} for kind, v in metrics.items()},
        "served_over_joint_ease": round(metrics[CASCADE]["ndcg@10"] / joint, 3),
        "served_over_popularity": round(metrics[CASCADE]["ndcg@10"] / popular, 3),
        "transfer_over_joint_ease": round(metrics["ease_transfer"]["ndcg@10"] / joint, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a data set with movies and TV (anime)")
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "cinesync-cross-domain",
                        help="where the two runs are kept (for `cinesync evaluate` or a served evaluation)")
    add_pipeline_arguments(parser)
    args = parser.parse_args()
    options = kind_options(args)
    report = {
        "data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": f"{machine()}, "
        f"{torch.get_num_threads()} threads", "options": options,
        "directions": {split: direction(args.data, split, args.runs_dir, options) for split in CROSS_DOMAIN},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cross-domain-{Path(args.data).name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
