"""FAISS retrieval: inner-product order, domain filter, exclusions."""

from __future__ import annotations

import numpy as np

from control_plane.retrieval import Retriever


def test_search_orders_by_inner_product_within_domain_and_excludes() -> None:
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]] * np.array([[1.0], [0.9], [0.8], [0.7], [0.95]])
    domains = np.array(["movie", "tv", "movie", "tv", "tv"])
    retriever = Retriever(vectors, domains)
    user = np.array([1.0, 0.5, 0.2, 0.1], dtype=np.float32)
    items, scores = retriever.search(user, 3, domain="any", exclude=np.array([], dtype=np.int64))
    assert items.tolist() == [0, 4, 1] and np.all(np.diff(scores) <= 0)
    items, _ = retriever.search(user, 3, domain="tv", exclude=np.array([4]))
    assert items.tolist() == [1, 3]
    items, _ = retriever.search(user, 10, domain="movie", exclude=np.array([], dtype=np.int64))
    assert items.tolist() == [0, 2]
