"""Candidate lists: per user a padded list of candidate items with their features, and how ranking
them by some score is evaluated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.splits import Split
from recsys.metrics import DEPTH, K, evaluate_ranked, per_user_metrics

PAD = -1


@dataclass
class CandidateLists:
    """Per user, a padded candidate list with its features and, where known, its held-out items."""

    users: np.ndarray  # [L]
    items: np.ndarray  # [L, W], PAD where empty
    features: np.ndarray  # [L, W, F]: each member's score, then the dense ranking features
    relevant: list[np.ndarray]  # per list, the user's held-out items (empty when unknown)

    @property
    def mask(self) -> np.ndarray:
        return self.items != PAD

    @property
    def labels(self) -> np.ndarray:
        return np.stack([np.isin(row, rel) for row, rel in zip(self.items, self.relevant, strict=True)]).astype(
            np.float32
        ) * self.mask

    def take(self, rows: np.ndarray) -> CandidateLists:
        return CandidateLists(self.users[rows], self.items[rows], self.features[rows], [self.relevant[r] for r in rows])


def rank_lists(items: np.ndarray, scores: np.ndarray, depth: int = DEPTH) -> np.ndarray:
    """Each list's items by descending score (pads last): ``[L, depth]``."""
    scores = np.where(items == PAD, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    ranked = np.take_along_axis(items, order, axis=1)
    if ranked.shape[1] < depth:
        ranked = np.pad(ranked, [(0, 0), (0, depth - ranked.shape[1])], constant_values=PAD)
    return ranked


def evaluate_lists(lists: CandidateLists, scores: np.ndarray, split: Split) -> dict[str, float]:
    """The metrics of recsys.metrics for candidate lists ranked by ``scores`` ([L, W])."""
    return evaluate_ranked(rank_lists(lists.items, scores), split, lists.users)


def ndcg_per_list(lists: CandidateLists, scores: np.ndarray, split: Split) -> np.ndarray:
    """NDCG@K of each candidate list ranked by ``scores`` ([L, W]), for paired comparisons."""
    relevant = [split.test_items[u] for u in lists.users]
    return per_user_metrics(rank_lists(lists.items, scores), relevant, K)[f"ndcg@{K}"]
