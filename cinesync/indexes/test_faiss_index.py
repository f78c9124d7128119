"""FAISS retrieval: built at publish time (exact for small catalogs, IVF tuned to a measured recall
above), loaded by the control plane; inner-product order, domain filter, exclusions, ties."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from cinesync.indexes import index_class
from cinesync.indexes.faiss_index import (
    exact_top_k,
    list_count,
    on_gpus,
    recall_at_k,
    recall_lower_bound,
    recall_per_query,
    search,
    selector,
    smallest_nprobe,
)

NONE = np.array([], dtype=np.int64)


def _loaded(arrays: dict[str, Any], domains: NDArray[np.str_], **build: Any) -> Any:
    options = {"exact_below": 50_000, "recall_target": 0.98, **build}
    shipped, plan = index_class("faiss").prepare(arrays, domains, **options)
    return index_class("faiss")(shipped, domains, plan=plan), plan


def test_search_orders_by_inner_product_within_domain_and_excludes() -> None:
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]] * np.array([[1.0], [0.9], [0.8], [0.7], [0.95]])
    domains = np.array(["movie", "tv", "movie", "tv", "tv"])
    user_vectors = np.array([[1.0, 0.5, 0.2, 0.1]], dtype=np.float32)
    index, plan = _loaded({"query_sample": user_vectors, "item_vectors": vectors}, domains)
    assert plan["factory"] == "Flat"
    user = user_vectors[0]
    items, scores = index.search(NONE, user, 3, domain="any", exclude=NONE)
    assert items.tolist() == [0, 4, 1] and np.all(np.diff(scores) <= 0)
    items, _ = index.search(NONE, user, 3, domain="tv", exclude=np.array([4]))
    assert items.tolist() == [1, 3]
    items, _ = index.search(NONE, user, 10, domain="movie", exclude=NONE)
    assert items.tolist() == [0, 2]
    assert index.search(NONE, None, 3, domain="any", exclude=NONE)[0].tolist() == []  # no vector: no candidates
    tied, _ = _loaded({"query_sample": user_vectors, "item_vectors": np.ones((4, 4), np.float32)}, domains[:4])
    assert tied.search(NONE, user, 2, domain="any", exclude=np.array([0]))[0].tolist() == [1, 2]


def test_the_query_sample_tunes_the_build_and_is_not_shipped() -> None:
    arrays = {"query_sample": np.ones((3, 4), np.float32), "item_vectors": np.eye(4, dtype=np.float32)}
    shipped, _ = index_class("faiss").prepare(arrays, np.array(["movie"] * 4), exact_below=10, recall_target=0.9)
    assert "query_sample" not in shipped and "item_vectors" in shipped


def low_rank(n: int, dim: int, rank: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Clustered vectors in a low-rank subspace plus noise, like learned embeddings."""
    basis = rng.normal(size=(rank, dim))
    centres = rng.normal(size=(64, rank))
    latent = centres[rng.integers(0, 64, n)] + 0.5 * rng.normal(size=(n, rank))
    vectors: NDArray[np.float32] = (latent @ basis + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)
    return vectors


def test_large_catalog_gets_an_ivf_whose_nprobe_is_the_smallest_reaching_the_recall_target() -> None:
    rng = np.random.default_rng(0)
    items, users = low_rank(20_000, 16, 6, rng), low_rank(600, 16, 6, rng)
    domains = np.where(rng.random(20_000) < 0.3, "tv", "movie")
    index, plan = _loaded({"query_sample": users, "item_vectors": items}, domains, exact_below=5_000,
                          recall_target=0.95)
    assert plan["factory"] == f"IVF{list_count(20_000)},SQ8,RFlat" and set(plan["nprobe"]) == {"any", "movie", "tv"}
    assert min(plan["recall"].values()) >= 0.95
    # The chosen nprobe is the smallest whose recall's lower confidence bound reaches the target.
    probe = users[:256]
    for domain in ("any", "tv"):
        rows = np.arange(20_000) if domain == "any" else np.flatnonzero(domains == domain)
        exact, allowed = exact_top_k(items, probe, rows, 100), selector(rows, 20_000)
        nprobe, recall = smallest_nprobe(index.index, probe, exact, allowed, lists=list_count(20_000), target=0.95)
        assert recall >= 0.95 and 1 < nprobe < list_count(20_000)
        fewer = search(index.index, probe, 100, nprobe=nprobe - 1, allowed=allowed)[1]
        assert recall_lower_bound(recall_per_query(fewer, exact)) < 0.95
    # Served searches on users the build never measured keep the recall, within their domain.
    for domain in ("any", "tv"):
        rows = np.arange(20_000) if domain == "any" else np.flatnonzero(domains == "tv")
        unseen = users[-40:]
        served = np.stack([index.search(NONE, users[580 + u], 100, domain=domain, exclude=NONE)[0] for u in range(20)])
        assert recall_at_k(served, exact_top_k(items, unseen[-20:], rows, 100)) >= 0.9
        assert set(domains[served.reshape(-1)]) <= ({"tv"} if domain == "tv" else {"tv", "movie"})


def test_list_count_is_a_power_of_two_near_four_root_n() -> None:
    assert list_count(1_000_000) == 4096 and list_count(20_000) == 512


def test_only_exact_indexes_move_to_gpus() -> None:
    flat, refined = faiss.IndexFlatIP(8), faiss.index_factory(8, "IVF4,SQ8,RFlat", faiss.METRIC_INNER_PRODUCT)
    assert on_gpus(flat, 1) and not on_gpus(flat, 0) and not on_gpus(refined, 2)
