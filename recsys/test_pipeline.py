"""The pipeline: every kind and the cascade evaluated on test, the manifest records each kind and
what validation chose, and bad settings fail before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cinesync.settings import Settings
from recsys.kinds import UnknownOption
from recsys.pipeline import CASCADE, METRICS_FILE, PipelineSpec, train
from recsys.run import MANIFEST, load_run


def test_metrics_cover_every_kind_and_the_cascade(small_run: Path) -> None:
    metrics = json.loads((small_run / METRICS_FILE).read_text())
    assert set(metrics) == {"popularity", "ease", "two_tower", CASCADE}
    for values in metrics.values():
        assert set(values) >= {"ndcg@10", "recall@10", "recall@20", "mrr@10", "hr@10", "coverage@10", "novelty@10"}
    assert metrics["ease"]["ndcg@10"] > metrics["popularity"]["ndcg@10"]
    assert metrics[CASCADE]["ndcg@10"] >= metrics["popularity"]["ndcg@10"]


def test_manifest_records_kinds_hyper_parameters_and_validation_choices(small_run: Path) -> None:
    manifest = json.loads((small_run / MANIFEST).read_text())
    kinds = {entry["kind"]: entry for entry in manifest["kinds"]}
    assert set(kinds) == {"popularity", "ease", "two_tower", "dcn_fusion"}
    assert kinds["ease"]["chosen"]["l2"] > 0 and kinds["two_tower"]["chosen"]["epochs"] >= 1
    assert kinds["two_tower"]["params"]["epochs"] == 3 and "retriever" in kinds["ease"]["roles"]
    assert manifest["split"]["test"].startswith("leave-one-out") and manifest["split"]["validation_users"] > 0
    run = load_run(small_run)
    assert [m.name for m in run.members] == ["popularity", "ease", "two_tower"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (PipelineSpec(members=["ease", "gru4rec"]), "unknown model kind 'gru4rec'; valid: "),
        (PipelineSpec(options={"ease": {"lambda": 1}}), r"unknown hyper-parameter\(s\) lambda; valid: l2_grid"),
        (PipelineSpec(retrievers=["popularity"]), "retriever 'popularity' must be one of the members"),
        (PipelineSpec(fusion="ease"), "'ease' is not a fusion kind"),
        (PipelineSpec(options={"two_tower": {"epochs": "2.5"}}), "two_tower: epochs='2.5' is not a valid int"),
        (PipelineSpec(options={"ease": {"l2_grid": "abc"}}), "ease: l2_grid must list positive numbers"),
        (PipelineSpec(options={"ease": {"emphasis_grid": "0,-1"}}), "ease: emphasis_grid must list non-negative"),
        (PipelineSpec(options={"dcn_fusion": {"folds": 1}}), "dcn_fusion: folds must be at least 2"),
        (PipelineSpec(options={"lightgcn": {"epochs": 5}}), "options for 'lightgcn', which is not in the pipeline"),
        (PipelineSpec(members=["ease", "ease"], retrievers=["ease"]), "each member kind may appear once"),
    ],
)
def test_bad_pipeline_fails_before_loading_data(spec: PipelineSpec, message: str, tmp_path: Path) -> None:
    with pytest.raises(UnknownOption, match=message):
        train(str(tmp_path / "no-such-data-set"), tmp_path, spec)


def test_refit_on_everything_keeps_choices_and_learns_the_held_out_items(small_run: Path, tmp_path: Path) -> None:
    from exporters.onnx_export import export_run
    from exporters.publish import publish
    from recsys.kinds.ease import Ease, ease_weights, gram_of, history_matrix, prune, tilted
    from recsys.pipeline import refit_on_everything

    refit_on_everything(small_run)
    evaluated, everything = load_run(small_run), load_run(small_run, fitted_on="all")
    user = int(evaluated.protocol.test.test_users()[0])
    held_out = int(evaluated.protocol.test.test_items[user][0])
    assert held_out not in evaluated.history.train_sequences[user]
    assert held_out in everything.history.train_sequences[user]
    ease_before, ease_after = (next(m for m in r.members if isinstance(m, Ease)) for r in (evaluated, everything))
    # The refit is the closed form on every interaction with the λ, c and β validation chose, pruned alike.
    chosen = ease_before.chosen
    history = history_matrix(everything.history.train_sequences, everything.catalog.n_items)
    sources, weights = prune(ease_weights(gram_of(history), chosen["l2"], chosen["emphasis"]),
                             ease_before.params.neighbours)
    weights = tilted(weights, history.sum(axis=0), chosen["popularity_tilt"])
    np.testing.assert_array_equal(ease_after.sources, sources)
    np.testing.assert_allclose(ease_after.weights, weights, rtol=1e-5, atol=1e-6)
    assert json.loads((small_run / MANIFEST).read_text())["refit_on_all"]["interactions"] > 0
    export_run(everything, tmp_path / "onnx")
    settings = Settings(home=tmp_path, model_repository=tmp_path / "repo")
    version = publish(everything, tmp_path / "onnx", settings)
    bundle = json.loads((settings.serving_dir / str(version) / "manifest.json").read_text())
    assert bundle["fitted_on"] == "all" and bundle["metrics"]["cascade"] == json.loads(
        (small_run / METRICS_FILE).read_text())["cascade"]


def test_a_run_without_the_refit_step_says_so(small_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(small_run, copy, ignore=shutil.ignore_patterns("kinds-all"))
    with pytest.raises(FileNotFoundError, match="no members fitted on 'all'.*run its refit step"):
        load_run(copy, fitted_on="all")


def test_histories_without_time_order_are_read_whole_in_training_export_and_serving(tmp_path: Path) -> None:
    from conftest import SMALL_SYNTHETIC, small_pipeline
    from exporters.onnx_export import export_run
    from recsys.data import load_dataset
    from recsys.features import recent
    from recsys.pipeline import history_length_of

    unordered = f"{SMALL_SYNTHETIC},timestamps=0"
    dataset = load_dataset(unordered)
    longest = int(np.bincount(dataset.user_idx).max())
    assert dataset.timestamps is None and longest > 30
    assert history_length_of(load_dataset(SMALL_SYNTHETIC)) == 200  # in time order: the most recent 200
    assert history_length_of(dataset) == longest and history_length_of(dataset, 12) == 12  # a set: whole
    run = load_run(train(unordered, tmp_path, small_pipeline(options={"ease": {"l2_grid": "30"}})))
    assert run.spec.history_length == longest == run.catalog.history_length == run.tables.history_length
    split = run.protocol.test
    user = max(split.test_users(), key=lambda u: len(split.train_sequences[u]))
    history = split.train_sequences[user]
    assert len(history) > 20
    ease = next(m for m in run.members if m.name == "ease")
    whole, last_ten = (ease.score(recent([history], length))[0] for length in (run.spec.history_length, 10))
    assert np.allclose(ease.user_scores(split)(np.array([user]))[0], whole)  # evaluation reads all of it
    assert not np.allclose(whole, last_ten)
    exported = export_run(run, tmp_path / "onnx")  # the parity gate: ONNX on whole histories = numpy
    assert {(model.role, model.member) for model in exported} >= {("scorer", "ease"), ("fusion", "")}
