"""Triton repository: layout, configs that parse, one-step encoding and ranking ensembles pinned to
their version of the composed stage models, the stock-container switch."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from cinesync.bundle import CURRENT
from cinesync.settings import Settings
from cinesync.triton import ENCODERS, RANKER, encoder_ensemble, ensemble_model
from exporters.publish import publish
from exporters.test_lifecycle import clone_run
from exporters.triton_repository import read_config
from recsys.run import load_run


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


def test_each_version_has_two_one_step_ensembles_pinned_to_its_own_stage_models(published: tuple[Path, Path]) -> None:
    repository, _ = published
    for version in (1, 2):
        encoding, ranking = _steps(repository, version, encoding=True), _steps(repository, version)
        assert list(encoding) == [ENCODERS] and list(ranking) == [RANKER]
        for step in (encoding[ENCODERS], ranking[RANKER]):
            assert step.model_version == version
            assert (repository / step.model_name / str(version) / "model.onnx").is_file()
            assert (repository / step.model_name / str(version) / "model.py").is_file()
    # Same interfaces, same families: version 2 sits beside version 1 in each stage model's folder.
    assert _steps(repository, 1)[RANKER].model_name == _steps(repository, 2)[RANKER].model_name
    assert not list(repository.parent.glob(".*staging*/*")), "staging folders left behind"


def test_stage_configs_serve_every_version_warmed_up(published: tuple[Path, Path]) -> None:
    repository, _ = published
    ranker = read_config(repository / _steps(repository, 1)[RANKER].model_name / "config.pbtxt")
    assert ranker.backend == "python" and ranker.max_batch_size > 0
    assert ranker.dynamic_batching.max_queue_delay_microseconds == 0  # the measured default
    assert ranker.dynamic_batching.default_queue_policy.allow_timeout_override  # a late request leaves unrun
    assert [group.count for group in ranker.instance_group] == [1]
    assert sorted((t.name, list(t.dims)) for t in ranker.input) == [("HISTORY", [200]), ("ITEMS", [-1]),
                                                                    ("user_two_tower", [64])]
    assert [(t.name, list(t.dims)) for t in ranker.output] == [("SCORE", [-1])]
    assert ranker.version_policy.WhichOneof("policy_choice") == "all"
    warmup = ranker.model_warmup[0].inputs
    assert set(warmup) == {"HISTORY", "ITEMS", "user_two_tower"} and list(warmup["ITEMS"].dims) == [1]
    encoders = read_config(repository / _steps(repository, 1, encoding=True)[ENCODERS].model_name / "config.pbtxt")
    assert [t.name for t in encoders.input] == ["HISTORY"] and [t.name for t in encoders.output] == ["user_two_tower"]


def test_ensembles_map_their_tensors_one_to_one(published: tuple[Path, Path]) -> None:
    repository, _ = published
    for encoding in (False, True):
        name = encoder_ensemble(1) if encoding else ensemble_model(1)
        ensemble = read_config(repository / name / "config.pbtxt")
        (step,) = ensemble.ensemble_scheduling.step
        stage = read_config(repository / step.model_name / "config.pbtxt")
        assert ensemble.platform == "ensemble"
        assert [(t.name, list(t.dims)) for t in ensemble.input] == [(t.name, list(t.dims)) for t in stage.input]
        assert [(t.name, list(t.dims)) for t in ensemble.output] == [(t.name, list(t.dims)) for t in stage.output]
        assert dict(step.input_map) == {t.name: t.name for t in stage.input}
        assert dict(step.output_map) == {t.name: t.name for t in stage.output}


def test_stock_target_uses_onnxruntime_platform(published: tuple[Path, Path]) -> None:
    _, stock = published
    for step in (_steps(stock, 1)[RANKER], _steps(stock, 1, encoding=True)[ENCODERS]):
        config = read_config(stock / step.model_name / "config.pbtxt")
        assert config.platform == "onnxruntime_onnx" and not config.backend
        assert not (stock / step.model_name / "1" / "model.py").exists()
        assert (stock / step.model_name / "1" / "model.onnx").is_file()


def test_serving_bundle_points_at_newest_version(published: tuple[Path, Path]) -> None:
    repository, _ = published
    serving = repository.parent / "serving"
    assert (serving / CURRENT).read_text().strip() == "2"
    assert sorted(p.name for p in serving.iterdir() if p.is_dir()) == ["1", "2"]
