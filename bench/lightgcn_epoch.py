"""Benchmark: seconds per LightGCN training epoch, ours against RecBole 1.2.1, on the same training
files of a data set's validation split, in one run (so the machine's noise is shared).

    .venv/bin/python -m bench.lightgcn_epoch --data ../shared/data/ml-1m --epochs 3 --recbole-epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.kind_quality import kind_quality
from bench.quality import ensure_recbole, recbole, write_atomic_files
from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.kinds import create
from recsys.kinds.lightgcn import LightGcn
from recsys.pipeline import catalog_of

OURS_BATCH = 8192  # our LightGCN's default batch size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--recbole-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recbole-batch", type=int, default=2048, help="RecBole's train_batch_size (its default)")
    parser.add_argument("--quality", action="store_true",
                        help="also fit ours early-stopped on validation and report its test NDCG@10")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    protocol = make_protocol(dataset)
    lightgcn = create("lightgcn", catalog_of(dataset), {"batch_sizes": str(OURS_BATCH)})
    assert isinstance(lightgcn, LightGcn)
    stamps: list[float] = []
    lightgcn.chosen = {"epochs": args.epochs, "batch_size": OURS_BATCH, "l2": lightgcn.params.l2s[0]}
    started = time.perf_counter()
    lightgcn.refit(protocol.validation.train_sequences, lambda *_: stamps.append(time.perf_counter()))
    ours = list(np.diff([started, *stamps]).round(2))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        np.savez(root / "split.npz", **protocol.test.to_arrays("test"), **protocol.validation.to_arrays("validation"))
        name = f"cinesync-{Path(args.data).name}"
        (root / "recbole" / name).mkdir(parents=True)
        write_atomic_files(root, root / "recbole" / name, name)
        theirs = recbole(ensure_recbole(), root / "recbole", name, "LightGCN",
                         {"epochs": args.recbole_epochs, "threads": args.threads,
                          "train_batch_size": args.recbole_batch})
    print(json.dumps({
        "data": args.data, "train_interactions": int(sum(len(s) for s in protocol.validation.train_sequences)),
        "ours_epoch_seconds": ours, "ours_batch_size": OURS_BATCH,
        "recbole_epoch_seconds": theirs["train_epoch_seconds"], "recbole_batch_size": args.recbole_batch,
        "median_ratio": round(statistics.median(theirs["train_epoch_seconds"]) / statistics.median(ours), 1),
        **(kind_quality(lightgcn, protocol) if args.quality else {}),
    }))


if __name__ == "__main__":
    main()
