"""Benchmark: the publish-time FAISS index on a synthetic catalog with low-rank, clustered structure
like learned embeddings (random vectors give misleading recall): build time, recall@100 against
exact search per domain on queries the build never saw, and single-query throughput against exact.

    .venv/bin/python bench/faiss_index.py --items 1000000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable

import faiss
import numpy as np

from cinesync.indexes.faiss_index import FaissIndex, exact_top_k, recall_at_k


def embeddings(n: int, dim: int, rank: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Points in a rank-``rank`` subspace (Gaussian, or around ``clusters`` centres when > 0) plus
    isotropic noise, L2-normalised as a tower's."""
    basis = rng.normal(size=(rank, dim))
    latent = rng.normal(size=(n, rank))
    if clusters:
        latent = rng.normal(size=(clusters, rank))[rng.integers(0, clusters, n)] + 0.6 * latent
    vectors = latent @ basis + 0.2 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def per_second(search_one: Callable[[int], object], queries: int) -> float:
    started = time.perf_counter()
    for q in range(queries):
        search_one(q)
    return queries / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=0, help="0: one Gaussian latent, no clusters")
    parser.add_argument("--queries", type=int, default=200, help="held-out users for recall and throughput")
    parser.add_argument("--recall-target", type=float, default=0.98)
    parser.add_argument("--tv-share", type=float, default=0.3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = embeddings(args.items + 10_000 + args.queries, args.dim, args.rank, args.clusters, rng)
    items, users = vectors[: args.items], vectors[args.items :]
    build_users, held_out = users[:10_000], users[10_000:]
    domains = np.where(rng.random(args.items) < args.tv_share, "tv", "movie")
    started = time.perf_counter()
    arrays, plan = FaissIndex.prepare({"item_vectors": items, "query_sample": build_users}, domains,
                                      exact_below=50_000, recall_target=args.recall_target)
    build_seconds = time.perf_counter() - started
    index = FaissIndex(arrays, domains, plan=plan)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(items)
    none = np.zeros(0, dtype=np.int64)
    results: dict[str, object] = {}
    for domain in ("any", "tv"):
        rows = np.arange(args.items) if domain == "any" else np.flatnonzero(domains == "tv")
        exact = exact_top_k(items, held_out, rows, 100)
        found = np.stack([index.search(none, held_out[q], 100, domain=domain, exclude=none)[0] for q in range(args.queries)])
        results[domain] = {"recall@100": round(recall_at_k(found, exact), 4), "nprobe": plan["nprobe"].get(domain)}
    runs = []
    for _ in range(3):  # alternate, medians: the machine is noisy
        exact_qps = per_second(lambda q: flat.search(held_out[q : q + 1], 100), min(args.queries, 50))
        ivf_qps = per_second(lambda q: index.search(none, held_out[q], 100, domain="any", exclude=none), args.queries)
        tv_qps = per_second(lambda q: index.search(none, held_out[q], 100, domain="tv", exclude=none), args.queries)
        runs.append((exact_qps, ivf_qps, tv_qps))
    exact_qps, ivf_qps, tv_qps = (statistics.median(r[i] for r in runs) for i in range(3))
    print(json.dumps({
        "items": args.items, "dim": args.dim, "rank": args.rank, "clusters": args.clusters,
        "plan": plan, "build_seconds": round(build_seconds, 1), "domains": results,
        "single_query_per_s": {"exact": round(exact_qps, 1), "index": round(ivf_qps, 1),
                               "ratio": round(ivf_qps / exact_qps, 1), "index_tv": round(tv_qps, 1),
                               "ratio_tv": round(tv_qps / exact_qps, 1)},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, {faiss.omp_get_max_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
    }))


if __name__ == "__main__":
    main()
