"""FAISS inner-product retrieval over a member's item embeddings, one index per domain.

On a machine where faiss sees GPUs, the indices move there; otherwise they stay on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import faiss
import numpy as np
from numpy.typing import NDArray

from control_plane.indexes.base import ANY, CandidateIndex, Found


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


class FaissIndex(CandidateIndex):
    """Top-n items by inner product of the user's vector with item vectors, within a domain."""

    kind = "faiss"

    def __init__(
        self, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *, faiss_factory: str = "Flat"
    ) -> None:
        self.user_vectors = np.ascontiguousarray(arrays["user_vectors"], dtype=np.float32)
        vectors = np.ascontiguousarray(arrays["item_vectors"], dtype=np.float32)
        self.indices: dict[str, DomainIndex] = {}
        for domain in [ANY, *sorted(set(item_domains.tolist()))]:
            ids = np.arange(len(vectors)) if domain == ANY else np.flatnonzero(item_domains == domain)
            if len(ids):
                self.indices[domain] = DomainIndex(_build(vectors[ids], faiss_factory), ids)

    def search(
        self, user: int, history: NDArray[np.int64], n: int, *, domain: str, exclude: NDArray[np.int64]
    ) -> Found:
        del history
        entry = self.indices.get(domain)
        if entry is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        wanted = min(n + len(exclude), entry.index.ntotal)
        query = self.user_vectors[user : user + 1]
        scores, rows = entry.index.search(query, wanted)
        valid = rows[0] >= 0
        items, found = entry.item_ids[rows[0][valid]], scores[0][valid]
        keep = ~np.isin(items, exclude)
        items, found = items[keep], found[keep]
        order = np.lexsort((items, -found))[:n]  # ties to the lower item index, as offline
        return items[order].astype(np.int64), found[order].astype(np.float32)
