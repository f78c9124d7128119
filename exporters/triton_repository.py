"""Writes one version of the ranking models into a Triton model repository.

Layout: <repository>/<model>/config.pbtxt and <repository>/<model>/<version>/..., for
feature_assembly (python backend), ranker (ONNX) and the ``ranking`` ensemble that chains them.
Each version is built in a staging folder beside the repository and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import site
import uuid
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import recsys.feature_assembly
from cinesync.settings import TritonTarget
from exporters.files import replace_file, version_folders
from recsys.feature_assembly import FeatureTables

ENSEMBLE, FEATURES, RANKER = "ranking", "feature_assembly", "ranker"
MAX_BATCH_SIZE = 4096
QUEUE_DELAY_US = 500
TEMPLATES = Path(__file__).parent / "triton_models"


def _tensor(group: object, name: str, data_type: int, dims: Iterable[int]) -> None:
    group.add(name=name, data_type=data_type, dims=list(dims))  # type: ignore[attr-defined]


def _base_config(name: str) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=MAX_BATCH_SIZE)
    config.version_policy.latest.num_versions = 1
    return config


def _batched_on_cpu(config: mc.ModelConfig) -> None:
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US


def _python_backend(config: mc.ModelConfig, *, threads: int = 1) -> None:
    config.backend = "python"
    # The python backend stub runs Python isolated: the models find numpy/onnxruntime here.
    config.parameters["extra_sys_path"].string_value = os.pathsep.join(site.getsitepackages())
    config.parameters["threads"].string_value = str(threads)


def feature_assembly_config(dense_dim: int) -> mc.ModelConfig:
    config = _base_config(FEATURES)
    _tensor(config.input, "USER_IDX", mc.TYPE_INT64, [1])
    _tensor(config.input, "ITEM_IDX", mc.TYPE_INT64, [1])
    _tensor(config.output, "DENSE", mc.TYPE_FP32, [dense_dim])
    _python_backend(config)
    _batched_on_cpu(config)
    return config


def ranker_config(dense_dim: int, target: TritonTarget) -> mc.ModelConfig:
    config = _base_config(RANKER)
    _tensor(config.input, "user_idx", mc.TYPE_INT64, [1])
    _tensor(config.input, "item_idx", mc.TYPE_INT64, [1])
    _tensor(config.input, "dense", mc.TYPE_FP32, [dense_dim])
    _tensor(config.output, "score", mc.TYPE_FP32, [1])
    if target == "stock":
        config.platform = "onnxruntime_onnx"
    else:
        _python_backend(config, threads=2)
    _batched_on_cpu(config)
    return config


def ensemble_config() -> mc.ModelConfig:
    config = _base_config(ENSEMBLE)
    config.platform = "ensemble"
    _tensor(config.input, "USER_IDX", mc.TYPE_INT64, [1])
    _tensor(config.input, "ITEM_IDX", mc.TYPE_INT64, [1])
    _tensor(config.output, "SCORE", mc.TYPE_FP32, [1])
    features = config.ensemble_scheduling.step.add(model_name=FEATURES, model_version=-1)
    features.input_map.update({"USER_IDX": "USER_IDX", "ITEM_IDX": "ITEM_IDX"})
    features.output_map.update({"DENSE": "dense"})
    ranker = config.ensemble_scheduling.step.add(model_name=RANKER, model_version=-1)
    ranker.input_map.update({"user_idx": "USER_IDX", "item_idx": "ITEM_IDX", "dense": "dense"})
    ranker.output_map.update({"score": "SCORE"})
    return config


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def existing_versions(repository: Path) -> list[int]:
    return version_folders(Path(repository) / ENSEMBLE)


def write_version(
    repository: Path, version: int, *, ranker_onnx: Path, tables: FeatureTables, target: TritonTarget
) -> None:
    """Stage every model's ``version`` folder, then move configs and folders into the repository."""
    repository = Path(repository).resolve()
    repository.mkdir(parents=True, exist_ok=True)
    staging = repository.parent / f".{repository.name}.staging" / uuid.uuid4().hex
    configs = {
        FEATURES: feature_assembly_config(tables.dense_dim),
        RANKER: ranker_config(tables.dense_dim, target),
        ENSEMBLE: ensemble_config(),
    }
    try:
        features_dir = staging / FEATURES / str(version)
        features_dir.mkdir(parents=True)
        shutil.copy2(TEMPLATES / "feature_assembly" / "model.py", features_dir / "model.py")
        shutil.copy2(recsys.feature_assembly.__file__, features_dir / "feature_assembly.py")
        tables.save(features_dir)
        ranker_dir = staging / RANKER / str(version)
        ranker_dir.mkdir(parents=True)
        shutil.copy2(ranker_onnx, ranker_dir / "model.onnx")
        if target == "python":
            shutil.copy2(TEMPLATES / "onnx_runner" / "model.py", ranker_dir / "model.py")
        (staging / ENSEMBLE / str(version)).mkdir(parents=True)
        for name, config in configs.items():
            (repository / name).mkdir(exist_ok=True)
            replace_file(repository / name / "config.pbtxt", config_text(config))
            os.rename(staging / name / str(version), repository / name / str(version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
