"""FAISS inner-product retrieval over item-tower embeddings, one index per domain.

On a machine where faiss sees GPUs, the indices move there; otherwise they stay on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
from numpy.typing import NDArray

ANY = "any"


@dataclass
class DomainIndex:
    index: faiss.Index
    item_ids: NDArray[np.int64]  # row in the index -> catalog item index


def _build(vectors: NDArray[np.float32], factory: str) -> faiss.Index:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    if faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


class Retriever:
    """Top-n items by inner product with a user vector, within a domain, leaving out given items."""

    def __init__(
        self, item_embeddings: NDArray[np.float32], item_domains: NDArray[np.str_], *, factory: str = "Flat"
    ) -> None:
        vectors = np.ascontiguousarray(item_embeddings, dtype=np.float32)
        self.indices: dict[str, DomainIndex] = {}
        for domain in [ANY, *sorted(set(item_domains.tolist()))]:
            ids = np.arange(len(vectors)) if domain == ANY else np.flatnonzero(item_domains == domain)
            if len(ids):
                self.indices[domain] = DomainIndex(_build(vectors[ids], factory), ids)

    def search(
        self, user_vector: NDArray[np.float32], n: int, *, domain: str, exclude: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(catalog item indices, inner products), best first, at most n."""
        entry = self.indices.get(domain)
        if entry is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        wanted = min(n + len(exclude), entry.index.ntotal)
        scores, rows = entry.index.search(np.ascontiguousarray(user_vector[None, :], dtype=np.float32), wanted)
        valid = rows[0] >= 0
        items, scores_row = entry.item_ids[rows[0][valid]], scores[0][valid]
        keep = ~np.isin(items, exclude)
        return items[keep][:n], scores_row[keep][:n]
