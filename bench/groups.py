"""Benchmark: group recommendation on seeded synthetic groups (2-5 test users each): the group hit
rate@10 (a hit: an item held out for any member) of the aggregated list (cinesync.groups, at the tilt
the training pipeline chose on validation groups, as served) against the average of the members'
individual lists, all from the same trained run's served cascade. Every other tilt's test figure is
printed beside it for reference only: nothing is chosen on test.

    .venv/bin/python bench/groups.py --data ../shared/data/ml-100k [--groups 1000] [--run RUN_DIR]

Results go to docs/bench/groups-<data set>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cinesync.groups import TILTS
from recsys.groups import GroupRanker, K, draw_groups, group_hit_rate
from recsys.pipeline import PipelineSpec, train
from recsys.run import load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--run", type=Path, help="a finished run of --data (default: train one)")
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        run = load_run(args.run or train(args.data, Path(scratch), PipelineSpec()))
        split = run.protocol.test
        groups = draw_groups(split.test_users(), count=args.groups)
        ranker = GroupRanker.of_run(run, split)
        scored = [ranker.group(g) for g in groups]  # candidates and every member's scores, once per group
        chosen = run.manifest["groups"]
        rates = {"average of individual lists": group_hit_rate(
            [group.average_of_individual_lists(K) for group in scored], groups, split)}
        for tilt in TILTS:
            label = f"aggregated, tilt {tilt:g}" + (" (chosen on validation: served)" if tilt == chosen["tilt"] else "")
            rates[label] = group_hit_rate([group.aggregated(K, tilt=tilt) for group in scored], groups, split)
    sizes = np.bincount([len(g) for g in groups]).tolist()
    report = {"data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "split": run.manifest["split"]["test"], "groups": args.groups, "members_per_group_counts": sizes,
              f"group_hit_rate@{K}": {k: round(v, 4) for k, v in rates.items()}, "validation": chosen,
              "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"groups-{Path(args.data).name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
