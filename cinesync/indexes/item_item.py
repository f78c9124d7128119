"""Item-item retrieval (EASE): a user's score for item i is the sum of the weights from the items of
their history into i, over the pruned neighbour lists the exporter shipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from cinesync.indexes.base import ANY, CandidateIndex, Found, best_unseen

ROWS_AT_ONCE = 256
DENSE_MAX_BYTES = 64 << 20  # item x item float32 up to 64 MB (4,096 items: both MovieLens sets)


class ItemItemIndex(CandidateIndex):
    """The pruned weights as a source x target matrix: a history's scores are the sum of its rows.
    Dense while it fits DENSE_MAX_BYTES (ML-100k: 80 us per history against 330 us sparse), else
    compressed sparse rows, O(items x neighbours) memory."""

    kind = "item_item"

    def __init__(
        self, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *, plan: Mapping[str, Any]
    ) -> None:
        del plan
        sources = np.asarray(arrays["sources"], dtype=np.int64)  # [target, neighbours]
        weights = np.asarray(arrays["weights"], dtype=np.float32)
        n_items, width = sources.shape
        matrix = sparse.csr_array(
            (weights.reshape(-1), (sources.reshape(-1), np.repeat(np.arange(n_items), width))),
            shape=(n_items, n_items),
        )
        self.rows: NDArray[np.float32] | sparse.csr_array = (
            matrix.toarray() if n_items * n_items * 4 <= DENSE_MAX_BYTES else matrix
        )
        self.item_domains = item_domains
        self.n_items = n_items

    def scores(self, history: NDArray[np.int64]) -> NDArray[np.float32]:
        """The sum of the weights from ``history``'s items into every item, ROWS_AT_ONCE rows at a
        time (a long history's rows never all copied at once)."""
        total = np.zeros(self.n_items, dtype=np.float32)
        for start in range(0, len(history), ROWS_AT_ONCE):
            total += np.asarray(self.rows[history[start : start + ROWS_AT_ONCE]].sum(axis=0)).reshape(-1)
        return total

    def search(
        self, history: NDArray[np.int64], user_vector: NDArray[np.float32] | None, n: int, *, domain: str,
        exclude: NDArray[np.int64],
    ) -> Found:
        del user_vector
        scores = self.scores(history)
        if domain != ANY:
            scores[self.item_domains != domain] = -np.inf
        return best_unseen(scores, n, exclude)
