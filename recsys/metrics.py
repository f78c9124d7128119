"""Full-ranking evaluation over all items with seen items excluded: Recall@K, NDCG@K, MRR@K."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.data.splits import Split

# user indices [B] -> scores [B, n_items]
ScoreFunction = Callable[[np.ndarray], np.ndarray]


def top_k_excluding(scores: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first, never one of that row's excluded items."""
    scores = scores.astype(np.float64, copy=True)
    for row, items in enumerate(exclude):
        scores[row, items] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def ranking_metrics(ranked: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, float]:
    """Mean Recall@k, NDCG@k (ideal DCG over min(|relevant|, k)) and MRR@k over the rows."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg, mrr = [], [], []
    for row, items in zip(ranked[:, :k], relevant, strict=True):
        hits = np.isin(row, items)
        recall.append(hits.sum() / len(items))
        ndcg.append((hits * discounts[: len(row)]).sum() / discounts[: min(len(items), k)].sum())
        first = np.flatnonzero(hits)
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
    return {f"recall@{k}": float(np.mean(recall)), f"ndcg@{k}": float(np.mean(ndcg)), f"mrr@{k}": float(np.mean(mrr))}


def evaluate_full_ranking(score: ScoreFunction, split: Split, *, k: int = 10, batch_users: int = 256) -> dict[str, float]:
    """Score every item for every test user, exclude their train items, and average the metrics."""
    users = split.test_users()
    ranked_rows = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        ranked_rows.append(top_k_excluding(score(batch), [split.train_sequences[u] for u in batch], k))
    ranked = np.concatenate(ranked_rows) if ranked_rows else np.zeros((0, k), dtype=np.int64)
    metrics = ranking_metrics(ranked, [split.test_items[u] for u in users], k)
    metrics["users"] = float(len(users))
    return metrics
