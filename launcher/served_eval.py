"""Served equals evaluated: ask the running control plane for every test user of a run and compute
the offline metrics on its answers. Reads the run folder with numpy and json (no torch)."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import channel as client_channel
from launcher.client import label
from recsys.data.splits import Split
from recsys.metrics import DEPTH, evaluate_ranked


@dataclass
class ServedEvaluation:
    metrics: dict[str, float]
    ranked_by: dict[str, int]  # how many answers each ranking path gave
    versions: list[str]


def evaluate_served(
    address: str, run_dir: Path, *, workers: int = 4, timeout: float = 10.0, send_histories: bool = False
) -> ServedEvaluation:
    """Recommend (k = the deepest cut-off, seen items excluded, in the target domain of a cross-domain
    split, else all domains) for every test user of the run at ``run_dir``, then the test metrics of
    those answers. With ``send_histories`` each
    request carries the user's training history (item ids, oldest first), as a client that keeps it
    on the device would, instead of the control plane reading its own."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    catalog = json.loads((run_dir / "catalog.json").read_text())
    item_ids = [row["item_id"] for row in catalog["items"]]
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    with np.load(run_dir / "split.npz") as arrays:
        split = Split.from_arrays(arrays, "test", n_items=len(item_index), kind=manifest["split"]["test"])
    users = split.test_users()
    depth = DEPTH
    target = manifest["split"].get("target_domain")
    domain = f"DOMAIN_{(target or 'any').upper()}"
    with client_channel(address) as channel:
        call = pb_grpc.RecommendationServiceStub(channel).Recommend

        def ask(user: int) -> pb.RecommendResponse:
            history = [item_ids[i] for i in split.train_sequences[user]] if send_histories else []
            request = pb.RecommendRequest(user_id=catalog["user_ids"][user], k=depth, exclude_seen=True,
                                          history=history, domain=domain)
            response: pb.RecommendResponse = call(request, timeout=timeout)
            return response

        with ThreadPoolExecutor(workers) as pool:
            answers = list(pool.map(ask, users.tolist()))
    ranked = np.full((len(users), depth), -1, dtype=np.int64)
    for row, answer in enumerate(answers):
        indices = [item_index[item.item_id] for item in answer.items[:depth]]
        ranked[row, : len(indices)] = indices
    paths = Counter(label(pb.RankedBy.Name(answer.ranked_by), "RANKED_BY_") for answer in answers)
    return ServedEvaluation(
        metrics=evaluate_ranked(ranked, split, users),
        ranked_by=dict(paths),
        versions=sorted({answer.model_version for answer in answers}),
    )
