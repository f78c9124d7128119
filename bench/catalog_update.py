"""Benchmark: catalog updates (new titles without interactions, no retraining) on the cold-items
protocol. The pipeline is trained on the cold-items split (20 % of the titles held out with all
their interactions, half validation, half test); the cold test titles are then added again as new
titles (same metadata, new ids) through recsys.catalog_update.add_titles, as `cinesync add-titles`
does, and each kind ranks the cold test titles for the test users by its scores of those copies.
Beside each kind's figure: the same kind's own scores of the untouched cold titles (what it had
without the update) and the content kNN and genre-matched popularity baselines, all in one run on
the same split; and the update's wall time (content embeddings included).

    .venv/bin/python -m bench.catalog_update --data ../shared/data/anime [--members popularity,ease,...]

Results go to docs/bench/catalog-update-<data set>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.cold_start import K, baselines, say
from bench.machine import machine
from bench.pipeline_arguments import add_pipeline_arguments, kind_options
from recsys.catalog_update import COLUMNS, add_titles
from recsys.content import content_embeddings
from recsys.data.splits import COLD_ITEMS, Split
from recsys.features import recent
from recsys.kinds import MemberKind
from recsys.metrics import ScoreFunction, evaluate_ranked, rank_full
from recsys.pipeline import PipelineSpec, train
from recsys.run import TrainedRun, load_run

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "bench"
MEMBERS = "popularity,ease,ease_content,two_tower,bpr"


def write_copies(run: TrainedRun, items: np.ndarray, path: Path) -> None:
    """A titles file re-adding ``items`` under new ids."""
    rows = ["\t".join(COLUMNS)]
    for index in items:
        item = run.items[index]
        rows.append("\t".join([f"copy-{item.item_id}", item.title, "|".join(item.genres), str(item.year or ""),
                               item.domain.value]))
    path.write_text("\n".join(rows) + "\n")


def measured(score: ScoreFunction, split: Split) -> dict[str, float]:
    ranked, users = rank_full(score, split)
    metrics = evaluate_ranked(ranked, split, users)
    return {m: round(metrics[m], 4) for m in (f"ndcg@{K}", f"recall@{K}", "users")}


def through_copies(member: MemberKind, split: Split, cold: np.ndarray, history_length: int) -> ScoreFunction:
    """Scores over the original catalog with each cold title's column taken from its copy's."""
    known = split.n_items

    def score(users: np.ndarray) -> np.ndarray:
        scores = member.score(recent([split.train_sequences[u] for u in users], history_length))
        original = scores[:, :known].copy()
        original[:, cold] = scores[:, known:]
        return original

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--members", default=MEMBERS, help="comma-separated member kinds")
    add_pipeline_arguments(parser)
    args = parser.parse_args()
    spec = PipelineSpec(split=COLD_ITEMS, members=args.members.split(","), options=kind_options(args))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = train(args.data, Path(scratch), spec, say)
        trained = time.perf_counter()
        run = load_run(folder)
        cold_split = run.protocol.views()["cold"]
        cold = np.sort(np.asarray(run.protocol.cold_items))
        titles = Path(scratch) / "titles.tsv"
        write_copies(run, cold, titles)
        update_started = time.perf_counter()
        grown = load_run(add_titles(folder, titles, Path(scratch) / "grown", say))
        update_seconds = time.perf_counter() - update_started
        length = run.spec.history_length
        kinds = {member.name: {"without the update": measured(member.user_scores(cold_split), cold_split),
                               "through the update": measured(through_copies(updated, cold_split, cold, length),
                                                              cold_split)}
                 for member, updated in zip(run.members, grown.members, strict=True)}
        reference = baselines(cold_split, content_embeddings(run.items), run.catalog.item_features.genres)
    best_baseline = max(entry[f"ndcg@{K}"] for entry in reference.values())
    report = {
        "data": args.data, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "split": run.manifest["split"], "members": spec.members, "train_s": round(trained - started, 1),
        "titles_added": len(cold), "update_s": round(update_seconds, 1),
        f"cold_ndcg@{K}": kinds, "baselines": {name: {m: round(v, 4) for m, v in entry.items()}
                                               for name, entry in reference.items()},
        "over_best_baseline": {name: round(entry["through the update"][f"ndcg@{K}"] / best_baseline, 3)
                               for name, entry in kinds.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"catalog-update-{Path(args.data).name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
