"""The training job's steps on a data set: train both models, then evaluate them by full ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from recsys.data import load_dataset
from recsys.data.splits import default_split
from recsys.feature_assembly import assemble_dense
from recsys.features import build_feature_tables, build_item_features
from recsys.metrics import evaluate_full_ranking, top_k_excluding
from recsys.run import TrainedRun, load_run, new_run_id, save_run
from recsys.training import Progress, TrainConfig, train_ranker, train_two_tower

METRICS_FILE = "metrics.json"


def train(data_spec: str, runs_dir: Path, config: TrainConfig, progress: Progress) -> Path:
    """Load the data set, split it, train the two-tower and the ranker; returns the run folder."""
    dataset = load_dataset(data_spec)
    split = default_split(dataset)
    item_features = build_item_features(dataset.items)
    user_tower, item_tower, two_tower_config = train_two_tower(
        split, item_features, dataset.user_features, dataset.user_feature_cardinalities, config, progress
    )
    ranker, ranker_config = train_ranker(split, build_feature_tables(split, item_features), config, progress)
    folder = Path(runs_dir) / new_run_id()
    save_run(
        folder,
        dataset=dataset,
        data_spec=data_spec,
        split=split,
        train_config=config,
        user_tower=user_tower,
        item_tower=item_tower,
        two_tower_config=two_tower_config,
        ranker=ranker,
        ranker_config=ranker_config,
    )
    return folder


@torch.no_grad()
def _ranker_scores(run: TrainedRun, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Ranker logits [len(users), len(items)] for every (user, item) pair."""
    pair_users = np.repeat(users, len(items))
    pair_items = np.tile(items, len(users))
    logits = run.ranker(
        torch.from_numpy(pair_users[:, None]),
        torch.from_numpy(pair_items[:, None]),
        torch.from_numpy(assemble_dense(run.tables, pair_users, pair_items)),
    )
    return logits.numpy().reshape(len(users), len(items))


def evaluate(run_folder: Path, *, k: int = 10, candidates: int = 200) -> dict[str, dict[str, float]]:
    """Recall/NDCG/MRR@k of popularity, the two-tower, the ranker alone and retrieval→ranking; saved with the run."""
    run = load_run(run_folder)
    split = run.split
    all_items = np.arange(split.n_items)
    user_vectors, item_vectors = run.user_embeddings(), run.item_embeddings()
    popularity = split.item_counts()

    def retrieval(users: np.ndarray) -> np.ndarray:
        return user_vectors[users] @ item_vectors.T

    def pipeline(users: np.ndarray) -> np.ndarray:
        retrieved = top_k_excluding(retrieval(users), [split.train_sequences[u] for u in users], candidates)
        scores = np.full((len(users), split.n_items), -np.inf)
        for row, user in enumerate(users):
            scores[row, retrieved[row]] = _ranker_scores(run, user[None], retrieved[row])[0]
        return scores

    metrics = {
        "popularity": evaluate_full_ranking(lambda users: np.tile(popularity, (len(users), 1)), split, k=k),
        "two_tower": evaluate_full_ranking(retrieval, split, k=k),
        "ranker": evaluate_full_ranking(lambda users: _ranker_scores(run, users, all_items), split, k=k, batch_users=32),
        f"two_tower@{candidates}+ranker": evaluate_full_ranking(pipeline, split, k=k, batch_users=64),
    }
    (Path(run_folder) / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics
