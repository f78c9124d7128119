"""Writes one version of the ranking models into a Triton model repository.

Layout: <repository>/<model>/config.pbtxt and <repository>/<model>/<version>/..., for
feature_assembly (python backend), one score_<member> ONNX model per scoring member, the fusion
ONNX model, and the ``ranking`` ensemble: feature assembly and the member scorers run as parallel
steps, the fusion last. Names come from cinesync.triton; each version is built in a staging folder
beside the repository and renamed into place.
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
from cinesync import triton
from cinesync.settings import TritonTarget
from exporters.files import replace_file, version_folders
from recsys.feature_assembly import FeatureTables

QUEUE_DELAY_US = 500
TEMPLATES = Path(__file__).parent / "triton_models"


def _tensor(group: object, name: str, data_type: int, dims: Iterable[int]) -> None:
    group.add(name=name, data_type=data_type, dims=list(dims))  # type: ignore[attr-defined]


def _base_config(name: str) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=triton.MAX_BATCH_SIZE)
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
    config = _base_config(triton.FEATURES)
    _tensor(config.input, triton.USER_IDX, mc.TYPE_INT64, [1])
    _tensor(config.input, triton.ITEM_IDX, mc.TYPE_INT64, [1])
    _tensor(config.output, triton.DENSE, mc.TYPE_FP32, [dense_dim])
    _python_backend(config)
    _batched_on_cpu(config)
    return config


def onnx_config(name: str, inputs: list[tuple[str, int, list[int]]], target: TritonTarget) -> mc.ModelConfig:
    """An ONNX model with the given (name, type, dims) inputs and one [1] FP32 output."""
    config = _base_config(name)
    for input_name, data_type, dims in inputs:
        _tensor(config.input, input_name, data_type, dims)
    _tensor(config.output, triton.OUTPUT, mc.TYPE_FP32, [1])
    if target == "stock":
        config.platform = "onnxruntime_onnx"
    else:
        _python_backend(config)
    _batched_on_cpu(config)
    return config


def scorer_config(member: str, target: TritonTarget) -> mc.ModelConfig:
    pair = [(name, mc.TYPE_INT64, [1]) for name in triton.PAIR_INPUTS]
    return onnx_config(triton.scorer_model(member), pair, target)


def fusion_config(members: list[str], dense_dim: int, target: TritonTarget) -> mc.ModelConfig:
    inputs = [(triton.member_score(m), mc.TYPE_FP32, [1]) for m in members]
    return onnx_config(triton.FUSION, [*inputs, (triton.DENSE_INPUT, mc.TYPE_FP32, [dense_dim])], target)


def ensemble_config(members: list[str]) -> mc.ModelConfig:
    """Feature assembly and every member scorer from (USER_IDX, ITEM_IDX), then the fusion."""
    config = _base_config(triton.ENSEMBLE)
    config.platform = "ensemble"
    _tensor(config.input, triton.USER_IDX, mc.TYPE_INT64, [1])
    _tensor(config.input, triton.ITEM_IDX, mc.TYPE_INT64, [1])
    _tensor(config.output, triton.SCORE, mc.TYPE_FP32, [1])
    steps = config.ensemble_scheduling.step
    features = steps.add(model_name=triton.FEATURES, model_version=-1)
    features.input_map.update({triton.USER_IDX: triton.USER_IDX, triton.ITEM_IDX: triton.ITEM_IDX})
    features.output_map.update({triton.DENSE: triton.DENSE})
    for member in members:
        scorer = steps.add(model_name=triton.scorer_model(member), model_version=-1)
        scorer.input_map.update(dict(zip(triton.PAIR_INPUTS, (triton.USER_IDX, triton.ITEM_IDX), strict=True)))
        scorer.output_map.update({triton.OUTPUT: triton.member_score(member)})
    fusion = steps.add(model_name=triton.FUSION, model_version=-1)
    fusion.input_map.update({triton.member_score(m): triton.member_score(m) for m in members})
    fusion.input_map.update({triton.DENSE_INPUT: triton.DENSE})
    fusion.output_map.update({triton.OUTPUT: triton.SCORE})
    return config


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def existing_versions(repository: Path) -> list[int]:
    return version_folders(Path(repository) / triton.ENSEMBLE)


def write_version(
    repository: Path,
    version: int,
    *,
    members: list[str],
    onnx_dir: Path,
    tables: FeatureTables,
    target: TritonTarget,
) -> None:
    """Stage every model's ``version`` folder, then move configs and folders into the repository.

    ``members`` are the scoring members in the fusion's input order; ``onnx_dir`` holds
    score_<member>.onnx and fusion.onnx.
    """
    repository = Path(repository).resolve()
    repository.mkdir(parents=True, exist_ok=True)
    staging = repository.parent / f".{repository.name}.staging" / uuid.uuid4().hex
    onnx_models = {triton.scorer_model(m): scorer_config(m, target) for m in members}
    onnx_models[triton.FUSION] = fusion_config(members, tables.dense_dim, target)
    configs = {
        triton.FEATURES: feature_assembly_config(tables.dense_dim),
        **onnx_models,
        triton.ENSEMBLE: ensemble_config(members),
    }
    try:
        features_dir = staging / triton.FEATURES / str(version)
        features_dir.mkdir(parents=True)
        shutil.copy2(TEMPLATES / "feature_assembly" / "model.py", features_dir / "model.py")
        shutil.copy2(recsys.feature_assembly.__file__, features_dir / "feature_assembly.py")
        tables.save(features_dir)
        for name in onnx_models:
            model_dir = staging / name / str(version)
            model_dir.mkdir(parents=True)
            shutil.copy2(onnx_dir / f"{name}.onnx", model_dir / "model.onnx")
            if target == "python":
                shutil.copy2(TEMPLATES / "onnx_runner" / "model.py", model_dir / "model.py")
        (staging / triton.ENSEMBLE / str(version)).mkdir(parents=True)
        for name, config in configs.items():
            (repository / name).mkdir(exist_ok=True)
            replace_file(repository / name / "config.pbtxt", config_text(config))
            os.rename(staging / name / str(version), repository / name / str(version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
