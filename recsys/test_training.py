"""Training: the models learn more than popularity, and a run reloads from disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recsys.pipeline import METRICS_FILE
from recsys.run import load_run


def test_two_tower_beats_popularity_and_metrics_are_saved(small_run: Path) -> None:
    metrics = json.loads((small_run / METRICS_FILE).read_text())
    assert set(metrics) >= {"popularity", "two_tower", "ranker", "two_tower@200+ranker"}
    assert metrics["two_tower"]["ndcg@10"] > metrics["popularity"]["ndcg@10"]
    for values in metrics.values():
        assert 0.0 <= values["recall@10"] <= 1.0 and values["users"] > 0


def test_reloaded_run_gives_normalised_embeddings(small_run: Path) -> None:
    run = load_run(small_run)
    users = run.user_embeddings(np.arange(5))
    items = run.item_embeddings()
    assert users.shape == (5, run.manifest["two_tower"]["dim"]) and items.shape[0] == run.split.n_items
    assert np.allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
