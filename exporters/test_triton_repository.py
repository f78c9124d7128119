"""Triton repository: layout, configs that parse, the stock-container switch, atomic versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from cinesync.bundle import CURRENT
from cinesync.triton import ENSEMBLE, FEATURES, FUSION, scorer_model
from exporters.publish import publish
from exporters.triton_repository import read_config
from recsys.run import load_run


@pytest.fixture(scope="module")
def published(small_run: Path, exported_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("published")
    run = load_run(small_run)
    for target in ("python", "stock"):
        version = publish(run, exported_run, repository=root / target, serving_dir=root / f"serving-{target}",
                          target=target)
        assert version == 1
    assert publish(run, exported_run, repository=root / "python", serving_dir=root / "serving-python",
                   target="python") == 2
    return root / "python", root / "stock"


MEMBERS = ["popularity", "ease", "two_tower"]


def test_layout_and_python_backend_configs(published: tuple[Path, Path]) -> None:
    repository, _ = published
    for version in ("1", "2"):
        for model in [*map(scorer_model, MEMBERS), FUSION]:
            assert (repository / model / version / "model.onnx").is_file()
            assert (repository / model / version / "model.py").is_file()
        assert (repository / FEATURES / version / "feature_assembly.py").is_file()
        assert (repository / ENSEMBLE / version).is_dir()
    scorer = read_config(repository / scorer_model("ease") / "config.pbtxt")
    assert scorer.backend == "python" and scorer.max_batch_size > 0
    assert scorer.dynamic_batching.max_queue_delay_microseconds > 0
    assert [t.name for t in scorer.input] == ["user_idx", "item_idx"]
    fusion = read_config(repository / FUSION / "config.pbtxt")
    assert [t.name for t in fusion.input] == [*(f"score_{m}" for m in MEMBERS), "dense"]
    assert not list(repository.parent.glob(".*staging*/*")), "staging folders left behind"


def test_ensemble_runs_features_and_member_scorers_in_parallel_then_the_fusion(published: tuple[Path, Path]) -> None:
    repository, _ = published
    ensemble = read_config(repository / ENSEMBLE / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    steps = list(ensemble.ensemble_scheduling.step)
    assert [step.model_name for step in steps] == [FEATURES, *map(scorer_model, MEMBERS), FUSION]
    # Every step but the fusion reads only the ensemble's inputs, so Triton can run them at once.
    for step in steps[:-1]:
        assert set(step.input_map.values()) == {"USER_IDX", "ITEM_IDX"}
    produced = {tensor for step in steps[:-1] for tensor in step.output_map.values()}
    assert set(steps[-1].input_map.values()) == produced
    assert list(steps[-1].output_map.values()) == ["SCORE"]


def test_stock_target_uses_onnxruntime_platform(published: tuple[Path, Path]) -> None:
    _, stock = published
    for model in [*map(scorer_model, MEMBERS), FUSION]:
        config = read_config(stock / model / "config.pbtxt")
        assert config.platform == "onnxruntime_onnx" and not config.backend
        assert not (stock / model / "1" / "model.py").exists()
        assert (stock / model / "1" / "model.onnx").is_file()
    assert read_config(stock / FUSION / "config.pbtxt").input[0].data_type == mc.TYPE_FP32


def test_serving_bundle_points_at_newest_version(published: tuple[Path, Path]) -> None:
    repository, _ = published
    serving = repository.parent / "serving-python"
    assert (serving / CURRENT).read_text().strip() == "2"
    assert sorted(p.name for p in serving.iterdir() if p.is_dir()) == ["1", "2"]
