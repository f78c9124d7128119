"""Triton repository: layout, configs that parse, the stock-container switch, atomic versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from exporters.publish import publish
from exporters.serving_bundle import CURRENT
from exporters.triton_repository import ENSEMBLE, FEATURES, RANKER, read_config
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


def test_layout_and_python_backend_configs(published: tuple[Path, Path]) -> None:
    repository, _ = published
    for version in ("1", "2"):
        assert (repository / RANKER / version / "model.onnx").is_file()
        assert (repository / RANKER / version / "model.py").is_file()
        assert (repository / FEATURES / version / "feature_assembly.py").is_file()
        assert (repository / ENSEMBLE / version).is_dir()
    ranker = read_config(repository / RANKER / "config.pbtxt")
    assert ranker.backend == "python" and ranker.max_batch_size > 0
    assert ranker.dynamic_batching.max_queue_delay_microseconds > 0
    assert [t.name for t in ranker.input] == ["user_idx", "item_idx", "dense"]
    ensemble = read_config(repository / ENSEMBLE / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    assert [step.model_name for step in ensemble.ensemble_scheduling.step] == [FEATURES, RANKER]
    assert not list(repository.parent.glob(".*staging*/*")), "staging folders left behind"


def test_stock_target_uses_onnxruntime_platform(published: tuple[Path, Path]) -> None:
    _, stock = published
    ranker = read_config(stock / RANKER / "config.pbtxt")
    assert ranker.platform == "onnxruntime_onnx" and not ranker.backend
    assert ranker.input[2].data_type == mc.TYPE_FP32
    assert not (stock / RANKER / "1" / "model.py").exists()
    assert (stock / RANKER / "1" / "model.onnx").is_file()


def test_serving_bundle_points_at_newest_version(published: tuple[Path, Path]) -> None:
    repository, _ = published
    serving = repository.parent / "serving-python"
    assert (serving / CURRENT).read_text().strip() == "2"
    assert sorted(p.name for p in serving.iterdir() if p.is_dir()) == ["1", "2"]
