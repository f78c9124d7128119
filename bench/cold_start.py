"""Benchmark: content cold start for new titles (the ColdRec protocol: a seeded 20 % of the items
with all their interactions held out, half for validation, half for test). The pipeline trained on
the cold-items split, then Recall@20 / NDCG@20 of every kind and the served cascade on cold test
items (ranked among themselves), warm items and all items; beside them, computed on the same split in
the same run, the two baselines for cold items: content k-nearest-neighbours (the mean cosine of an
item's MiniLM embedding to the user's history's) and genre-matched popularity (the user's share of
history in each of the item's genres, the genre's training popularity breaking ties).

    .venv/bin/python -m bench.cold_start --data ../shared/data/ml-1m [--runs-dir DIR] [--without-content] [--set K.P=V]

--without-content trains the same pipeline without ease_content, for the warm-item comparison.
Results go to docs/bench/cold-start-<data set>[-without-content].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import machine
from bench.pipeline_arguments import add_pipeline_arguments, kind_options
from recsys.content import content_embeddings
from recsys.data.splits import COLD_ITEMS, Split
from recsys.kinds.ease import history_matrix
from recsys.metrics import evaluate_ranked, rank_full
from recsys.pipeline import PipelineSpec, train, views_report
from recsys.run import load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
K = 20


def say(stage: str, step: int, steps: int, value: float, measure: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {stage} {step}/{steps} {measure} {value:.5f}", file=sys.stderr, flush=True)


def baselines(split: Split, embeddings: np.ndarray, genres: np.ndarray) -> dict[str, dict[str, float]]:
    """Content kNN and genre-matched popularity on ``split`` (the cold view)."""
    counts = split.item_counts()
    genre_popularity = counts @ genres

    def knn(users: np.ndarray) -> np.ndarray:
        profile = history_matrix([split.train_sequences[u] for u in users], split.n_items)
        profile /= np.maximum(profile.sum(axis=1, keepdims=True), 1.0)
        return (profile @ embeddings) @ embeddings.T

    def genre_popular(users: np.ndarray) -> np.ndarray:
        profile = history_matrix([split.train_sequences[u] for u in users], split.n_items)
        shares = (profile @ genres) / np.maximum(profile.sum(axis=1, keepdims=True), 1.0)
        per_item = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0)
        tie_break = 1e-6 * (genres @ genre_popularity) / max(genre_popularity.max(), 1.0)
        return shares @ per_item.T + tie_break[None, :]

    out = {}
    for name, score in (("content kNN", knn), ("genre-matched popularity", genre_popular)):
        ranked, users = rank_full(score, split)
        metrics = evaluate_ranked(ranked, split, users)
        out[name] = {m: metrics[m] for m in (f"ndcg@{K}", f"recall@{K}", f"hr@{K}", "users")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--without-content", action="store_true", help="the pipeline without ease_content")
    add_pipeline_arguments(parser)
    args = parser.parse_args()
    options = kind_options(args)
    spec = PipelineSpec(split=COLD_ITEMS, options=options)
    if args.without_content:
        spec = PipelineSpec(split=COLD_ITEMS, members=[m for m in spec.members if m != "ease_content"],
                            retrievers=[r for r in spec.retrievers if r != "ease_content"], options=options)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = train(args.data, args.runs_dir or Path(scratch), spec, say)
        trained = time.perf_counter()
        views = views_report(folder, k=K)
        run = load_run(folder)
        embedding_started = time.perf_counter()
        embeddings = content_embeddings(run.items)
        embedding_seconds = time.perf_counter() - embedding_started
        views["cold"].update(baselines(run.protocol.views()["cold"], embeddings, run.catalog.item_features.genres))
    cold = views["cold"]
    best_baseline = max(cold["content kNN"][f"ndcg@{K}"], cold["genre-matched popularity"][f"ndcg@{K}"])
    report = {
        "data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "split": run.manifest["split"], "options": options, "members": spec.members, "retrievers": spec.retrievers,
        "train_s": round(trained - started, 1), "content_embeddings_s": round(embedding_seconds, 1),
        "chosen": {kind["kind"]: kind["chosen"] for kind in run.manifest["kinds"]},
        "views": {view: {kind: {m: round(v, 4) for m, v in metrics.items()} for kind, metrics in by_kind.items()}
                  for view, by_kind in views.items()},
    }
    if "ease_content" in cold:
        report["cold_content_over_best_baseline"] = round(cold["ease_content"][f"ndcg@{K}"] / best_baseline, 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-without-content" if args.without_content else ""
    (RESULTS / f"cold-start-{Path(args.data).name}{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
