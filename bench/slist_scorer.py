"""Benchmark: what SLIST's exported scorer costs per request, as the ranker runs it in Triton.

The scorer module of an SLIST fitted on the seeded generator at a catalog size (default ML-100k's
1,682 titles) is exported to ONNX as the exporter does, then ONNX Runtime (one thread, batch 1, as a
python-backend stub runs it) scores --width candidates for a full --length history, --runs times;
the median and the 99th percentile in milliseconds are printed. Run it in another checkout (its
PYTHONPATH) to compare scorers on one machine in one sitting:

    .venv/bin/python -m bench.slist_scorer [--items 1682]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from exporters.export_report import FP32, Tensor
from exporters.onnx_export import export_module, ort_session, tensors_of
from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.features import history_matrix
from recsys.kinds import create
from recsys.kinds.slist import Slist
from recsys.pipeline import catalog_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--width", type=int, default=300)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = load_dataset(f"synthetic:n_users=2000,n_items={args.items},mean_interactions=40,seed=5")
    slist = create("slist", catalog_of(dataset, history_length=args.length),
                   {"l2_grid": "100", "decay_grid": "4", "transition_weight_grid": "0.5"})
    assert isinstance(slist, Slist)
    slist.fit(make_protocol(dataset).validation)
    rng = np.random.default_rng(0)
    histories = [rng.choice(args.items, args.length, replace=False) for _ in range(4)]
    items = rng.integers(0, args.items, (4, args.width))
    history, candidates = history_matrix(histories, args.length), items + 1
    inputs = list(tensors_of(args.length).values())
    with tempfile.TemporaryDirectory() as folder:
        export_module(slist.scorer_module(), name="score_slist", inputs=inputs, output=Tensor("score", FP32, [-1]),
                      example={inputs[0].name: history[:2], inputs[1].name: candidates[:2, :5]},
                      check={inputs[0].name: history, inputs[1].name: candidates},
                      expected=slist.score_lists(histories, items), folder=Path(folder))
        session = ort_session(Path(folder) / "score_slist.onnx", threads=1)
        feeds = {inputs[0].name: history[:1], inputs[1].name: candidates[:1]}
        for _ in range(20):
            session.run(None, feeds)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"items": args.items, "length": args.length, "width": args.width,
                      "median_ms": round(float(np.median(times)), 3),
                      "p99_ms": round(float(np.percentile(times, 99)), 3)}))


if __name__ == "__main__":
    main()
