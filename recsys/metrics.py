"""Full-ranking evaluation over all items with seen items excluded.

Per user: NDCG@10 (ideal DCG over min(|held-out items|, K), as RecBole), Recall@10 and @20, MRR@10,
HR@10; over all users: catalog coverage@10 (share of items recommended to anyone) and novelty@10
(mean self-information -log2(share of training users who have the item) of the recommended items).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.data.splits import Split

# user indices [B] -> scores [B, n_items]
ScoreFunction = Callable[[np.ndarray], np.ndarray]
K = 10
RECALL_CUTOFFS = (10, 20)


def top_k_excluding(scores: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first, never one of that row's excluded items
    (-1 fills a row with fewer than k others); ties go to the lower index, as the control plane's
    indexes break them. A NaN score counts as excluded."""
    scores = np.array(scores, dtype=scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64)
    scores[np.isnan(scores)] = -np.inf
    for row, items in enumerate(exclude):
        scores[row, items] = -np.inf
    k = min(k, scores.shape[1])
    if not k or not len(scores):
        return np.zeros((len(scores), k), dtype=np.int64)
    # O(items) per row instead of a full sort: the k-th largest score, everything above it, then the
    # lowest-indexed items tied with it; np.nonzero keeps each row's picks in index order, so the
    # stable sort of the k picks breaks ties by index as a full stable sort would.
    kth = np.partition(scores, scores.shape[1] - k, axis=1)[:, -k][:, None]
    above = scores > kth
    tied = scores == kth
    wanted = k - above.sum(axis=1)
    picked = above | tied
    crowded = np.flatnonzero(tied.sum(axis=1) > wanted)  # rows with more ties at the k-th score than places
    picked[crowded] = above[crowded] | (tied[crowded] & (np.cumsum(tied[crowded], axis=1) <= wanted[crowded, None]))
    candidates = np.nonzero(picked)[1].reshape(len(scores), k)
    picked_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-picked_scores, axis=1, kind="stable")
    top = np.take_along_axis(candidates, order, axis=1)
    return np.where(np.isneginf(np.take_along_axis(scores, top, axis=1)), -1, top)


def per_user_metrics(ranked: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Recall@k, NDCG@k (ideal DCG over min(|relevant|, k)), MRR@k and HR@k of each row."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg, mrr = [], [], []
    for row, items in zip(ranked[:, :k], relevant, strict=True):
        hits = np.isin(row, items)
        recall.append(hits.sum() / len(items))
        ndcg.append((hits * discounts[: len(row)]).sum() / discounts[: min(len(items), k)].sum())
        first = np.flatnonzero(hits)
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
    return {f"ndcg@{k}": np.array(ndcg), f"recall@{k}": np.array(recall), f"mrr@{k}": np.array(mrr),
            f"hr@{k}": np.array(recall) > 0}


def ranking_metrics(ranked: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, float]:
    """Mean Recall@k, NDCG@k, MRR@k and HR@k over the rows."""
    return {name: float(np.mean(values)) if len(values) else 0.0
            for name, values in per_user_metrics(ranked, relevant, k).items()}


def evaluate_ranked(ranked: np.ndarray, split: Split, users: np.ndarray) -> dict[str, float]:
    """Every metric of this module for top lists ``ranked`` ([len(users), >= 20]) of ``users``."""
    relevant = [split.test_items[u] for u in users]
    metrics = ranking_metrics(ranked, relevant, K)
    for cutoff in RECALL_CUTOFFS:
        if cutoff != K:
            metrics[f"recall@{cutoff}"] = ranking_metrics(ranked, relevant, cutoff)[f"recall@{cutoff}"]
    shown = ranked[:, :K][ranked[:, :K] >= 0]  # negative entries pad lists shorter than K
    users_with_item = np.maximum(split.item_counts(), 1.0)
    metrics[f"coverage@{K}"] = float(len(np.unique(shown)) / split.n_items)
    metrics[f"novelty@{K}"] = float(np.mean(-np.log2(users_with_item[shown] / split.n_users))) if shown.size else 0.0
    metrics["users"] = float(len(users))
    return metrics


def evaluate_full_ranking(score: ScoreFunction, split: Split, *, batch_users: int = 256) -> dict[str, float]:
    """Score every item for every test user, exclude their train items, and average the metrics."""
    users = split.test_users()
    depth = max(RECALL_CUTOFFS)
    ranked_rows = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        ranked_rows.append(top_k_excluding(score(batch), [split.train_sequences[u] for u in batch], depth))
    ranked = np.concatenate(ranked_rows) if ranked_rows else np.zeros((0, depth), dtype=np.int64)
    return evaluate_ranked(ranked, split, users)
