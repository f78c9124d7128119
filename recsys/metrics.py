"""Full-ranking evaluation over all items with seen items excluded, for accuracy and beyond it.

Accuracy per user at 5, 10 and 20: HR, Recall, NDCG (ideal DCG over min(|held-out items|, k), as
RecBole), MRR and MAP. Beyond accuracy, over everyone's top 10: catalog coverage (share of items
shown to anyone), novelty (mean self-information -log2(share of training users who have the item)),
popularity (mean share of training users who have a shown item: popularity bias), Gini of exposure
(0: every item shown equally often, 1: one item takes all) and, with item genres, intra-list
diversity (mean cosine distance of genre vectors over the pairs of a list whose items have genres).
``report`` breaks all of them down by the held-out items' domain and for users with short histories.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.data.catalog import Domain
from recsys.data.splits import Split
from recsys.features import ItemFeatures

# user indices [B] -> scores [B, n_items]
ScoreFunction = Callable[[np.ndarray], np.ndarray]
K = 10  # the cut-off of the headline metric and of the beyond-accuracy ones
CUTOFFS = (5, 10, 20)
DEPTH = max(CUTOFFS)  # how deep a ranked list must be for every metric
SHORT_HISTORY = 5  # users with at most this many training items are reported apart
ALL_USERS = "all"


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
    """Recall@k, NDCG@k (ideal DCG over min(|relevant|, k)), MRR@k, MAP@k and HR@k of each row."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg, mrr, average_precision = [], [], [], []
    for row, items in zip(ranked[:, :k], relevant, strict=True):
        hits = np.isin(row, items)
        ideal = min(len(items), k)
        recall.append(hits.sum() / len(items))
        ndcg.append((hits * discounts[: len(row)]).sum() / discounts[:ideal].sum())
        first = np.flatnonzero(hits)
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
        average_precision.append(float(np.sum(np.cumsum(hits)[first] / (first + 1))) / ideal)
    return {f"ndcg@{k}": np.array(ndcg), f"recall@{k}": np.array(recall), f"mrr@{k}": np.array(mrr),
            f"map@{k}": np.array(average_precision), f"hr@{k}": np.array(recall) > 0}


def ranking_metrics(ranked: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, float]:
    """Mean Recall@k, NDCG@k, MRR@k, MAP@k and HR@k over the rows."""
    return {name: float(np.mean(values)) if len(values) else 0.0
            for name, values in per_user_metrics(ranked, relevant, k).items()}


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, towards 1 when one has all."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    total, n = ordered.sum(), len(ordered)
    if not n or total <= 0:
        return 0.0
    return float(2.0 * np.sum(np.arange(1, n + 1) * ordered) / (n * total) - (n + 1) / n)


def intra_list_diversity(shown: np.ndarray, genres: np.ndarray) -> float:
    """Mean over lists of the mean cosine distance of genre vectors over pairs of genre-bearing items
    (``shown``: [lists, K], -1 pads); lists with fewer than two such items are left out."""
    norms = np.linalg.norm(genres, axis=1)
    unit = np.vstack([genres / np.maximum(norms, 1e-12)[:, None], np.zeros((1, genres.shape[1]))])
    has = np.append(norms > 0, False)
    rows = np.where(shown >= 0, shown, len(genres))  # pads point at the zero row
    vectors, valid = unit[rows], has[rows].astype(np.float64)  # [L, K, G], [L, K]
    similarity = np.einsum("lkg,ljg->lkj", vectors, vectors)
    pairs = valid[:, :, None] * valid[:, None, :] * (1.0 - np.eye(shown.shape[1]))[None]
    counts = pairs.sum(axis=(1, 2))
    usable = counts > 0
    if not usable.any():
        return 0.0
    distance = ((1.0 - similarity) * pairs).sum(axis=(1, 2))
    return float(np.mean(distance[usable] / counts[usable]))


def beyond_accuracy(ranked: np.ndarray, split: Split, genres: np.ndarray | None = None) -> dict[str, float]:
    """Coverage, novelty, popularity and Gini of exposure of the top K of ``ranked`` (and intra-list
    diversity where ``genres`` is given)."""
    top = ranked[:, :K]
    shown = top[top >= 0]  # negative entries pad lists shorter than K
    users_with_item = split.item_counts()
    share = users_with_item / max(split.n_users, 1)
    metrics = {
        f"coverage@{K}": float(len(np.unique(shown)) / split.n_items),
        f"novelty@{K}": float(np.mean(-np.log2(np.maximum(users_with_item[shown], 1.0) / split.n_users)))
        if shown.size else 0.0,
        f"popularity@{K}": float(np.mean(share[shown])) if shown.size else 0.0,
        f"gini@{K}": gini(np.bincount(shown, minlength=split.n_items)),
    }
    if genres is not None and genres.any():
        metrics[f"diversity@{K}"] = intra_list_diversity(top, genres)
    return metrics


def evaluate_ranked(
    ranked: np.ndarray, split: Split, users: np.ndarray, *, genres: np.ndarray | None = None,
    relevant: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Every metric of this module for top lists ``ranked`` ([len(users), >= DEPTH]) of ``users``,
    against their held-out items in ``split`` or, where given, ``relevant`` (one array per row)."""
    if relevant is None:
        relevant = [split.test_items[u] for u in users]
    metrics: dict[str, float] = {}
    for cutoff in CUTOFFS:
        metrics.update(ranking_metrics(ranked, relevant, cutoff))
    metrics.update(beyond_accuracy(ranked, split, genres))
    metrics["users"] = float(len(users))
    return metrics


def report(
    ranked: np.ndarray, split: Split, users: np.ndarray, items: ItemFeatures
) -> dict[str, dict[str, float]]:
    """``evaluate_ranked`` for every user ("all"); per domain of the held-out items where they span
    more than one (each user's list against their held-out items of that domain); and for users with
    at most SHORT_HISTORY training items. Groups without users are left out."""
    groups = {ALL_USERS: evaluate_ranked(ranked, split, users, genres=items.genres)}
    by_domain = {}
    for code, domain in enumerate(Domain):
        held = [split.test_items[u][items.domain[split.test_items[u]] == code] for u in users]
        rows = np.array([r for r, items in enumerate(held) if len(items)], dtype=np.int64)
        if len(rows):
            by_domain[f"domain {domain.value}"] = (rows, [held[r] for r in rows])
    if len(by_domain) > 1:
        for name, (rows, held) in by_domain.items():
            groups[name] = evaluate_ranked(ranked[rows], split, users[rows], genres=items.genres, relevant=held)
    short = np.array([r for r, u in enumerate(users) if len(split.train_sequences[u]) <= SHORT_HISTORY],
                     dtype=np.int64)
    if len(short):
        groups[f"history <= {SHORT_HISTORY}"] = evaluate_ranked(ranked[short], split, users[short],
                                                                 genres=items.genres)
    return groups


def rank_full(score: ScoreFunction, split: Split, *, batch_users: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The test users of ``split`` and their top DEPTH items by ``score``, what the split excludes
    (their train items; items outside its target) left out."""
    users = split.test_users()
    ranked_rows = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        ranked_rows.append(top_k_excluding(score(batch), split.excluded(batch), DEPTH))
    ranked = np.concatenate(ranked_rows) if ranked_rows else np.zeros((0, DEPTH), dtype=np.int64)
    return ranked, users


def evaluate_full_ranking(score: ScoreFunction, split: Split, *, batch_users: int = 256) -> dict[str, float]:
    """Score every item for every test user, exclude their train items, and average the metrics."""
    ranked, users = rank_full(score, split, batch_users=batch_users)
    return evaluate_ranked(ranked, split, users)
