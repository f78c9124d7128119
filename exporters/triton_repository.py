"""Writes one serving version of the ranking models into a Triton model repository.

Layout: <repository>/<family>/config.pbtxt and <repository>/<family>/<version>/... for one
score_<member> ONNX model per scoring member and the fusion ONNX model (a family is a base name plus
its configuration's digest; every family serves all of its version folders), and one ensemble per
serving version, <repository>/ranking_<version>/, whose steps are pinned to that version: the member
scorers in parallel, the fusion (which looks the pair's dense features up itself) last. Every step
is an ONNX model, so the stock container runs the whole ensemble in its onnxruntime backend. Names
come from cinesync.triton. Everything is built in a staging folder beside the repository and
renamed into place, the ensemble last, so a version is either whole or not referenced at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from cinesync import triton
from cinesync.versions import replace_file, version_folders
from exporters.targets import ExportTarget, Precision

QUEUE_DELAY_US = 500
PAIR_TENSORS = [(name, mc.TYPE_INT64, [1]) for name in triton.PAIR_INPUTS]  # (user_idx, item_idx) rows


def _tensor(group: object, name: str, data_type: int, dims: Iterable[int]) -> None:
    group.add(name=name, data_type=data_type, dims=list(dims))  # type: ignore[attr-defined]


def _base_config(name: str) -> mc.ModelConfig:
    return mc.ModelConfig(name=name, max_batch_size=triton.MAX_BATCH_SIZE)


def _warmed_up(config: mc.ModelConfig) -> None:
    """Serve every version folder of the family, each warmed up by one all-zero row before it is ready."""
    config.version_policy.all.SetInParent()
    warmup = config.model_warmup.add(name="zero_row", batch_size=1)
    for tensor in config.input:
        warmup.inputs[tensor.name].data_type = tensor.data_type
        warmup.inputs[tensor.name].dims.extend(tensor.dims)
        warmup.inputs[tensor.name].zero_data = True


def family_config(config: mc.ModelConfig) -> mc.ModelConfig:
    """``config`` named after its family: its base name and the digest of everything else in it."""
    digest = hashlib.sha256(text_format.MessageToString(config).encode()).hexdigest()
    named = mc.ModelConfig()
    named.CopyFrom(config)
    named.name = triton.model_family(config.name, digest)
    _warmed_up(named)
    return named


def onnx_config(
    name: str, inputs: list[tuple[str, int, list[int]]], target: ExportTarget, precision: Precision
) -> mc.ModelConfig:
    """An ONNX model with the given (name, type, dims) inputs and one [1] FP32 output, run as ``target`` says."""
    config = _base_config(name)
    for input_name, data_type, dims in inputs:
        _tensor(config.input, input_name, data_type, dims)
    _tensor(config.output, triton.OUTPUT, mc.TYPE_FP32, [1])
    target.configure(config, precision=precision)
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    return config


def scorer_config(member: str, target: ExportTarget, precision: Precision = "fp32") -> mc.ModelConfig:
    return onnx_config(triton.scorer_model(member), PAIR_TENSORS, target, precision)


def fusion_config(members: list[str], target: ExportTarget, precision: Precision = "fp32") -> mc.ModelConfig:
    scores = [(triton.member_score(m), mc.TYPE_FP32, [1]) for m in members]
    return onnx_config(triton.FUSION, [*scores, *PAIR_TENSORS], target, precision)


def ensemble_config(version: int, members: list[str], families: dict[str, str]) -> mc.ModelConfig:
    """Every member scorer from (USER_IDX, ITEM_IDX), then the fusion from their scores and the same
    pairs; every step pinned to ``version`` of its model's family (``families`` maps base name to family)."""
    config = _base_config(triton.ensemble_model(version))
    config.platform = "ensemble"
    _tensor(config.input, triton.USER_IDX, mc.TYPE_INT64, [1])
    _tensor(config.input, triton.ITEM_IDX, mc.TYPE_INT64, [1])
    _tensor(config.output, triton.SCORE, mc.TYPE_FP32, [1])
    steps = config.ensemble_scheduling.step
    pairs = dict(zip(triton.PAIR_INPUTS, (triton.USER_IDX, triton.ITEM_IDX), strict=True))
    for member in members:
        scorer = steps.add(model_name=families[triton.scorer_model(member)], model_version=version)
        scorer.input_map.update(pairs)
        scorer.output_map.update({triton.OUTPUT: triton.member_score(member)})
    fusion = steps.add(model_name=families[triton.FUSION], model_version=version)
    fusion.input_map.update({triton.member_score(m): triton.member_score(m) for m in members})
    fusion.input_map.update(pairs)
    fusion.output_map.update({triton.OUTPUT: triton.SCORE})
    return config


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def step_versions(repository: Path) -> dict[int, list[Path]]:
    """Every version folder of every step model family, by version number."""
    found: dict[int, list[Path]] = {}
    repository = Path(repository)
    for family in (p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else ():
        if triton.ensemble_version(family.name) is None:
            for version in version_folders(family):
                found.setdefault(version, []).append(family / str(version))
    return found


def write_version(
    repository: Path,
    version: int,
    *,
    members: list[str],
    onnx_files: dict[str, tuple[Path, Precision]],
    target: ExportTarget,
) -> dict[str, str]:
    """Stage every step model's ``version`` folder and the version's ensemble, then move them into
    the repository, the ensemble last; returns each step's family by base name.

    ``members`` are the scoring members in the fusion's input order; ``onnx_files`` maps
    score_<member> and fusion to the ONNX file to serve and its precision.
    """
    target.check_available()
    repository = Path(repository).resolve()
    repository.mkdir(parents=True, exist_ok=True)
    staging = repository.parent / f".{repository.name}.staging" / uuid.uuid4().hex
    onnx_models = {triton.scorer_model(m): scorer_config(m, target, onnx_files[triton.scorer_model(m)][1])
                   for m in members}
    onnx_models[triton.FUSION] = fusion_config(members, target, onnx_files[triton.FUSION][1])
    configs = {base: family_config(config) for base, config in onnx_models.items()}
    families = {base: config.name for base, config in configs.items()}
    ensemble = ensemble_config(version, members, families)
    try:
        for base in onnx_models:
            model_dir = staging / families[base] / str(version)
            model_dir.mkdir(parents=True)
            onnx_path, precision = onnx_files[base]
            target.write_model(onnx_path, model_dir, precision=precision)
        ensemble_dir = staging / ensemble.name
        (ensemble_dir / "1").mkdir(parents=True)
        (ensemble_dir / "config.pbtxt").write_text(config_text(ensemble))
        for config in configs.values():
            (repository / config.name).mkdir(exist_ok=True)
            replace_file(repository / config.name / "config.pbtxt", config_text(config))
            os.rename(staging / config.name / str(version), repository / config.name / str(version))
        os.rename(ensemble_dir, repository / ensemble.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return families
