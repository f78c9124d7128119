"""Item-item retrieval (EASE): a user's score for item i is the sum of the weights from the items of
their history into i, over the pruned neighbour lists the exporter shipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from control_plane.indexes.base import ANY, CandidateIndex, Found, best_unseen


class ItemItemIndex(CandidateIndex):
    """Neighbour lists per target item, regrouped by source item for scoring a history."""

    kind = "item_item"

    def __init__(
        self, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *, plan: Mapping[str, Any]
    ) -> None:
        del plan
        sources = np.asarray(arrays["sources"], dtype=np.int64)  # [target, neighbours]
        weights = np.asarray(arrays["weights"], dtype=np.float32)
        n_items, width = sources.shape
        targets = np.repeat(np.arange(n_items), width)
        by_source = np.argsort(sources.reshape(-1), kind="stable")
        self.targets = targets[by_source]
        self.weights = weights.reshape(-1)[by_source]
        self.offsets = np.searchsorted(sources.reshape(-1)[by_source], np.arange(n_items + 1))
        self.item_domains = item_domains
        self.n_items = n_items

    def scores(self, history: NDArray[np.int64]) -> NDArray[np.float32]:
        starts, ends = self.offsets[history], self.offsets[history + 1]
        lengths = ends - starts
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return np.bincount(self.targets[rows], weights=self.weights[rows], minlength=self.n_items).astype(np.float32)

    def search(
        self, user: int, history: NDArray[np.int64], n: int, *, domain: str, exclude: NDArray[np.int64]
    ) -> Found:
        del user
        scores = self.scores(history)
        if domain != ANY:
            scores[self.item_domains != domain] = -np.inf
        return best_unseen(scores, n, exclude)
