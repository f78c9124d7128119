"""FAISS inner-product retrieval over a member's item embeddings, built at publish time.

``prepare`` (run by the exporter) builds the index: exact (IndexFlatIP) up to ``exact_below``
items; above that an inverted file (IVF, about 4·√n lists, a power of two, trained on a sample)
of 8-bit scalar-quantized vectors whose best REFINE_FACTOR·k are re-scored exactly (SQ8 reads a
quarter of the memory of float vectors per probed list; the exact re-scoring restores the order and
the scores). Its ``nprobe`` is chosen per domain: the smallest whose recall@k against exact search, measured on
a sample of real users' vectors (``query_sample``, encoded from their histories; used at publish and
not shipped), reaches ``recall_target`` (its 97.5 % lower
confidence bound does, so unmeasured queries keep the target). A domain (movie / tv) is
searched in the same index through an ID selector with its own measured nprobe, so filtering does
not cost top-k quality. The plan (factory, nprobe and recall per domain, build time) is recorded in
the version's manifest, and the serialised index travels in the retriever's arrays; the control
plane only deserialises it. Where faiss sees GPUs, k-means training runs on them and an exact index
is moved to them at load (the refined IVF stays on the CPU: faiss has no GPU IndexRefine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from cinesync.indexes.base import ANY, CandidateIndex, Found

INDEX_ARRAY = "faiss_index"  # the serialised index among the retriever's arrays
QUERY_SAMPLE = "query_sample"  # real users' vectors the build measures recall on; not shipped
TRAIN_POINTS_PER_LIST = 64
REFINE_FACTOR = 2
MAX_K = 2048  # faiss's GPU indexes return at most this many neighbours per query


@dataclass
class IndexPlan:
    """What was built and how to search it: the manifest entry of a FAISS retriever."""

    factory: str
    nprobe: dict[str, int] = field(default_factory=dict)  # per domain; empty for exact search
    recall: dict[str, float] = field(default_factory=dict)  # lower bound of the measured recall@k per domain
    k: int = 100
    queries: int = 0
    build_seconds: float = 0.0
    gpus: int = 0


def list_count(n_items: int) -> int:
    """IVF lists for ``n_items``: about 4·√n, a power of two."""
    return int(2 ** round(math.log2(4 * math.sqrt(n_items))))


def domain_rows(item_domains: NDArray[np.str_]) -> dict[str, NDArray[np.int64]]:
    """Catalog rows of every domain, and of ANY."""
    rows = {ANY: np.arange(len(item_domains), dtype=np.int64)}
    rows.update({d: np.flatnonzero(item_domains == d) for d in sorted(set(item_domains.tolist()))})
    return rows


@dataclass(frozen=True)
class Allowed:
    """An ID selector over a bitmap of admitted rows; it reads ``bitmap``, which lives as long as it."""

    selector: faiss.IDSelector
    bitmap: NDArray[np.uint8]


def selector(rows: NDArray[np.int64], n_items: int) -> Allowed | None:
    """A selector admitting ``rows``; None when that is every row."""
    if len(rows) == n_items:
        return None
    bitmap = np.packbits(np.isin(np.arange(n_items), rows), bitorder="little")
    return Allowed(faiss.IDSelectorBitmap(n_items, faiss.swig_ptr(bitmap)), bitmap)


def search(
    index: faiss.Index, queries: NDArray[np.float32], k: int, *, nprobe: int | None, allowed: Allowed | None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k rows for each query within ``allowed``; for the refined IVF, probing ``nprobe`` lists."""
    params = faiss.SearchParameters()
    if nprobe is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
    if allowed is not None:
        params.sel = allowed.selector
    if nprobe is not None:
        refine = faiss.IndexRefineSearchParameters()
        refine.k_factor, refine.base_index_params = REFINE_FACTOR, params
        params = refine
    scores, rows = index.search(queries, k, params=params)
    return scores, rows


def recall_per_query(found: NDArray[np.int64], exact: NDArray[np.int64]) -> NDArray[np.float64]:
    """Share of each query's exact top-k rows that were found."""
    hits = [len(np.intersect1d(f[f >= 0], e)) for f, e in zip(found, exact, strict=True)]
    return np.asarray(hits, dtype=np.float64) / max(exact.shape[1], 1)


def recall_at_k(found: NDArray[np.int64], exact: NDArray[np.int64]) -> float:
    """Share of the exact top-k rows that were found, over all queries."""
    return float(recall_per_query(found, exact).mean())


def recall_lower_bound(per_query: NDArray[np.float64]) -> float:
    """The mean recall's one-sided 97.5 % lower confidence bound (normal approximation): what the
    build promises for queries it did not measure."""
    spread = float(per_query.std(ddof=1)) if len(per_query) > 1 else 0.0
    return float(per_query.mean()) - 1.96 * spread / math.sqrt(len(per_query))


def exact_top_k(
    vectors: NDArray[np.float32], queries: NDArray[np.float32], rows: NDArray[np.int64], k: int
) -> NDArray[np.int64]:
    """The exact top-k of ``rows`` for each query (unordered within the k)."""
    scores = queries @ vectors[rows].T
    k = min(k, len(rows))
    top: NDArray[np.int64] = rows[np.argpartition(-scores, k - 1, axis=1)[:, :k]]
    return top


def smallest_nprobe(
    index: faiss.Index, probe: NDArray[np.float32], exact: NDArray[np.int64], allowed: Allowed | None,
    *, lists: int, target: float,
) -> tuple[int, float]:
    """The smallest nprobe whose recall's lower confidence bound reaches ``target`` (doubling, then
    bisecting), and that bound."""
    def recall(nprobe: int) -> float:
        found = search(index, probe, exact.shape[1], nprobe=nprobe, allowed=allowed)[1]
        return recall_lower_bound(recall_per_query(found, exact))

    low, high = 0, 1  # recall(low) < target unless low == 0
    while (value := recall(high)) < target and high < lists:
        low, high = high, min(high * 2, lists)
    while high - low > 1:
        middle = (low + high) // 2
        if (middle_value := recall(middle)) >= target:
            high, value = middle, middle_value
        else:
            low = middle
    return high, value


def build(
    item_vectors: NDArray[np.float32], user_vectors: NDArray[np.float32], item_domains: NDArray[np.str_], *,
    exact_below: int, recall_target: float, k: int = 100, queries: int = 256, seed: int = 0,
) -> tuple[faiss.Index, IndexPlan]:
    """The index over ``item_vectors`` (inner product) and the plan that says how to search it."""
    started = time.perf_counter()
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n <= exact_below:
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        return flat, IndexPlan("Flat", k=k, build_seconds=round(time.perf_counter() - started, 2))
    rng = np.random.default_rng(seed)
    lists, gpus = list_count(n), faiss.get_num_gpus()
    factory = f"IVF{lists},SQ8,RFlat"
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    sample = vectors[rng.choice(n, min(n, lists * TRAIN_POINTS_PER_LIST), replace=False)]
    if gpus:  # k-means on the GPUs (a clustering index), centroids into the CPU index
        ivf = faiss.extract_index_ivf(index)
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))
    index.train(sample)
    index.add(vectors)
    users = np.ascontiguousarray(user_vectors, dtype=np.float32)
    probe = users[rng.choice(len(users), min(len(users), queries), replace=False)]
    plan = IndexPlan(factory, k=k, queries=len(probe), gpus=gpus)
    for domain, rows in domain_rows(item_domains).items():
        exact = exact_top_k(vectors, probe, rows, k)
        nprobe, recall = smallest_nprobe(index, probe, exact, selector(rows, n), lists=lists, target=recall_target)
        plan.nprobe[domain], plan.recall[domain] = nprobe, round(recall, 4)
    plan.build_seconds = round(time.perf_counter() - started, 2)
    return index, plan


def on_gpus(index: faiss.Index, gpus: int) -> bool:
    """Whether to serve ``index`` from the GPUs: exact indexes, where there are GPUs."""
    return gpus > 0 and isinstance(index, faiss.IndexFlat)


class FaissIndex(CandidateIndex):
    """Top-n items by inner product of the user's vector (encoded from their history) with item
    vectors, within a domain."""

    kind = "faiss"

    @classmethod
    def prepare(
        cls, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *,
        exact_below: int, recall_target: float,
    ) -> tuple[dict[str, NDArray[np.generic]], dict[str, Any]]:
        index, plan = build(
            np.asarray(arrays["item_vectors"], dtype=np.float32), np.asarray(arrays[QUERY_SAMPLE], np.float32),
            item_domains, exact_below=exact_below, recall_target=recall_target,
        )
        shipped = {name: value for name, value in arrays.items() if name != QUERY_SAMPLE}
        return {**shipped, INDEX_ARRAY: faiss.serialize_index(index)}, asdict(plan)

    def __init__(
        self, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *, plan: Mapping[str, Any]
    ) -> None:
        index = faiss.deserialize_index(np.asarray(arrays[INDEX_ARRAY]))
        self.index = faiss.index_cpu_to_all_gpus(index) if on_gpus(index, faiss.get_num_gpus()) else index
        self.nprobe: Mapping[str, int] = plan.get("nprobe", {})
        rows = domain_rows(item_domains)
        self.domains = {domain: (selector(r, len(item_domains)), len(r)) for domain, r in rows.items() if len(r)}

    def search(
        self, history: NDArray[np.int64], user_vector: NDArray[np.float32] | None, n: int, *, domain: str,
        exclude: NDArray[np.int64],
    ) -> Found:
        del history
        if domain not in self.domains or user_vector is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        allowed, size = self.domains[domain]
        # Enough to leave n after the exclusions, within what a GPU index can return at once (a sent
        # history may exclude thousands of items; beyond the cap fewer than n may remain).
        wanted = min(n + len(exclude), size, MAX_K)
        query = np.ascontiguousarray(user_vector, dtype=np.float32).reshape(1, -1)
        scores, rows = search(self.index, query, wanted, nprobe=self.nprobe.get(domain), allowed=allowed)
        valid = rows[0] >= 0
        items, found = rows[0][valid], scores[0][valid]
        keep = ~np.isin(items, exclude)
        items, found = items[keep], found[keep]
        order = np.lexsort((items, -found))[:n]  # ties to the lower item index, as offline
        return items[order].astype(np.int64), found[order].astype(np.float32)
