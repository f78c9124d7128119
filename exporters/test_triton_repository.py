"""Triton repository: layout, configs that parse, pinned encoding and ranking ensembles, the
stock-container switch."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from cinesync.bundle import CURRENT
from cinesync.settings import Settings
from cinesync.triton import FUSION, encoder_ensemble, encoder_model, ensemble_model, scorer_model
from exporters.publish import publish
from exporters.test_lifecycle import clone_run
from exporters.triton_repository import read_config
from recsys.run import load_run

MEMBERS = ["popularity", "ease", "two_tower"]


@pytest.fixture(scope="module")
def published(small_run: Path, exported_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("published")
    settings = {t: Settings(home=root / t, model_repository=root / t / "repo", triton_target=t) for t in ("python", "stock")}
    for target in ("python", "stock"):
        assert publish(load_run(small_run), exported_run, settings[target]) == 1
    second = load_run(clone_run(small_run, root / "second"))
    assert publish(second, exported_run, settings["python"]) == 2
    return root / "python" / "repo", root / "stock" / "repo"


def _steps(repository: Path, version: int, *, encoding: bool = False) -> dict[str, mc.ModelEnsembling.Step]:
    name = encoder_ensemble(version) if encoding else ensemble_model(version)
    ensemble = read_config(repository / name / "config.pbtxt")
    return {step.model_name.rsplit("_", 1)[0]: step for step in ensemble.ensemble_scheduling.step}


def test_each_version_has_ensembles_pinned_to_its_own_model_versions(published: tuple[Path, Path]) -> None:
    repository, _ = published
    for version in (1, 2):
        assert list(_steps(repository, version, encoding=True)) == [encoder_model("two_tower")]
        steps = _steps(repository, version)
        assert list(steps) == [*map(scorer_model, MEMBERS), FUSION]
        for step in [*steps.values(), *_steps(repository, version, encoding=True).values()]:
            assert step.model_version == version
            assert (repository / step.model_name / str(version)).is_dir()
        for base in [*map(scorer_model, MEMBERS), FUSION]:
            assert (repository / steps[base].model_name / str(version) / "model.onnx").is_file()
            assert (repository / steps[base].model_name / str(version) / "model.py").is_file()
    # Same interfaces, same families: version 2 sits beside version 1 in each model's folder.
    assert {s.model_name for s in _steps(repository, 1).values()} == {s.model_name for s in _steps(repository, 2).values()}
    assert not list(repository.parent.glob(".*staging*/*")), "staging folders left behind"


def test_step_configs_serve_every_version_warmed_up(published: tuple[Path, Path]) -> None:
    repository, _ = published
    steps = _steps(repository, 1)
    scorer = read_config(repository / steps[scorer_model("ease")].model_name / "config.pbtxt")
    assert scorer.backend == "python" and scorer.max_batch_size > 0
    assert scorer.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(t.name, list(t.dims)) for t in scorer.input] == [("history", [200]), ("items", [-1])]
    assert scorer.version_policy.WhichOneof("policy_choice") == "all"
    warmup = scorer.model_warmup[0].inputs
    assert set(warmup) == {"history", "items"} and list(warmup["items"].dims) == [1]  # a concrete shape
    fusion = read_config(repository / steps[FUSION].model_name / "config.pbtxt")
    assert [t.name for t in fusion.input] == [*(f"score_{m}" for m in MEMBERS), "history", "items"]
    tower = read_config(repository / steps[scorer_model("two_tower")].model_name / "config.pbtxt")
    assert [(t.name, list(t.dims)) for t in tower.input] == [("user_vector", [64]), ("items", [-1])]


def test_ensemble_runs_member_scorers_in_parallel_then_the_fusion(published: tuple[Path, Path]) -> None:
    repository, _ = published
    ensemble = read_config(repository / ensemble_model(1) / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    assert {t.name for t in ensemble.input} == {"HISTORY", "ITEMS", "user_two_tower"}
    steps = list(ensemble.ensemble_scheduling.step)
    # Every step but the fusion reads only the ensemble's inputs, so Triton can run them at once.
    inputs = {t.name for t in ensemble.input}
    for step in steps[:-1]:
        assert set(step.input_map.values()) <= inputs
    produced = {tensor for step in steps[:-1] for tensor in step.output_map.values()}
    assert set(steps[-1].input_map.values()) == produced | {"HISTORY", "ITEMS"}
    assert list(steps[-1].output_map.values()) == ["SCORE"]
    encoding = read_config(repository / encoder_ensemble(1) / "config.pbtxt")
    assert [t.name for t in encoding.input] == ["HISTORY"] and [t.name for t in encoding.output] == ["user_two_tower"]


def test_stock_target_uses_onnxruntime_platform(published: tuple[Path, Path]) -> None:
    _, stock = published
    steps = _steps(stock, 1)
    assert list(steps) == [*map(scorer_model, MEMBERS), FUSION]  # no python step: all in onnxruntime
    for base in steps:
        config = read_config(stock / steps[base].model_name / "config.pbtxt")
        assert config.platform == "onnxruntime_onnx" and not config.backend
        assert not (stock / steps[base].model_name / "1" / "model.py").exists()
        assert (stock / steps[base].model_name / "1" / "model.onnx").is_file()
    assert read_config(stock / steps[FUSION].model_name / "config.pbtxt").input[0].data_type == mc.TYPE_FP32


def test_serving_bundle_points_at_newest_version(published: tuple[Path, Path]) -> None:
    repository, _ = published
    serving = repository.parent / "serving"
    assert (serving / CURRENT).read_text().strip() == "2"
    assert sorted(p.name for p in serving.iterdir() if p.is_dir()) == ["1", "2"]
