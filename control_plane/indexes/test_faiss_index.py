"""FAISS retrieval: inner-product order, domain filter, exclusions, ties to the lower index."""

from __future__ import annotations

import numpy as np

from control_plane.indexes import index_class


def test_search_orders_by_inner_product_within_domain_and_excludes() -> None:
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]] * np.array([[1.0], [0.9], [0.8], [0.7], [0.95]])
    domains = np.array(["movie", "tv", "movie", "tv", "tv"])
    user_vectors = np.array([[1.0, 0.5, 0.2, 0.1]], dtype=np.float32)
    index = index_class("faiss")({"user_vectors": user_vectors, "item_vectors": vectors}, domains, faiss_factory="Flat")
    none = np.array([], dtype=np.int64)
    items, scores = index.search(0, none, 3, domain="any", exclude=none)
    assert items.tolist() == [0, 4, 1] and np.all(np.diff(scores) <= 0)
    items, _ = index.search(0, none, 3, domain="tv", exclude=np.array([4]))
    assert items.tolist() == [1, 3]
    items, _ = index.search(0, none, 10, domain="movie", exclude=none)
    assert items.tolist() == [0, 2]
    tied = index_class("faiss")({"user_vectors": user_vectors, "item_vectors": np.ones((4, 4), np.float32)},
                                domains[:4], faiss_factory="Flat")
    assert tied.search(0, none, 2, domain="any", exclude=np.array([0]))[0].tolist() == [1, 2]
