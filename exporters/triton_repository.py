"""Writes one serving version of the models into a Triton model repository.

Layout: <repository>/<family>/config.pbtxt and <repository>/<family>/<version>/... for every
exported ONNX model (encode_<member>, score_<member>, fusion; a family is a base name plus its
configuration's digest, and every family serves all of its version folders), and per serving version
two ensembles pinned to that version: encode_<version> (the history encoders in parallel; only when a
member has one) and ranking_<version> (the member scorers in parallel, then the fusion). Every step
is an ONNX model, so the stock container runs them in its onnxruntime backend. Configs are written
from the tensors each exported model recorded; ensemble tensor names come from cinesync.triton.
Everything is built in a staging folder beside the repository and renamed into place, the ranking
ensemble last, so a version is either whole or not referenced at all.
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
from exporters.export_report import ENCODER, FUSION_ROLE, SCORER, ExportedModel, Tensor
from exporters.targets import ExportTarget

QUEUE_DELAY_US = 500
DATA_TYPES = {"INT64": mc.TYPE_INT64, "FP32": mc.TYPE_FP32}


def _tensor(group: object, name: str, data_type: int, dims: Iterable[int]) -> None:
    group.add(name=name, data_type=data_type, dims=list(dims))  # type: ignore[attr-defined]


def _base_config(name: str) -> mc.ModelConfig:
    return mc.ModelConfig(name=name, max_batch_size=triton.MAX_BATCH_SIZE)


def _warmed_up(config: mc.ModelConfig) -> None:
    """Serve every version folder of the family, each warmed up by one all-zero request (one
    candidate where the candidate count is free) before it is ready."""
    config.version_policy.all.SetInParent()
    warmup = config.model_warmup.add(name="zero_request", batch_size=1)
    for tensor in config.input:
        warmup.inputs[tensor.name].data_type = tensor.data_type
        warmup.inputs[tensor.name].dims.extend(max(dim, 1) for dim in tensor.dims)
        warmup.inputs[tensor.name].zero_data = True


def family_config(config: mc.ModelConfig) -> mc.ModelConfig:
    """``config`` named after its family: its base name and the digest of everything else in it."""
    digest = hashlib.sha256(text_format.MessageToString(config).encode()).hexdigest()
    named = mc.ModelConfig()
    named.CopyFrom(config)
    named.name = triton.model_family(config.name, digest)
    _warmed_up(named)
    return named


def onnx_config(model: ExportedModel, target: ExportTarget) -> mc.ModelConfig:
    """An exported ONNX model's config from the tensors it recorded, run as ``target`` says."""
    config = _base_config(model.name)
    for tensor in model.inputs:
        _tensor(config.input, tensor.name, DATA_TYPES[tensor.data_type], tensor.dims)
    _tensor(config.output, model.output.name, DATA_TYPES[model.output.data_type], model.output.dims)
    target.configure(config, precision=model.precision)  # type: ignore[arg-type]  # "fp32" | "int8"
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    return config


def ensemble_tensor(model: ExportedModel, tensor: Tensor) -> str:
    """The ensemble tensor that feeds ``tensor`` of ``model``, or that ``model``'s output fills."""
    if tensor.name == triton.HISTORY_INPUT:
        return triton.HISTORY
    if tensor.name == triton.ITEMS_INPUT:
        return triton.ITEMS
    if tensor.name == triton.USER_VECTOR:
        return triton.user_vector(model.member)
    if tensor is model.output:
        return triton.SCORE if model.role == FUSION_ROLE else triton.member_score(model.member)
    return tensor.name  # the fusion's score_<member> inputs: the scorers' outputs, by name


def _ensemble(name: str, version: int, steps: list[ExportedModel], outputs: list[ExportedModel],
              families: dict[str, str]) -> mc.ModelConfig:
    """An ensemble of ``steps`` pinned to ``version``; its inputs are what no step produces."""
    config = _base_config(name)
    config.platform = "ensemble"
    produced = {ensemble_tensor(m, m.output) for m in steps}
    inputs: set[str] = set()
    for model in steps:
        for tensor in model.inputs:
            outer = ensemble_tensor(model, tensor)
            if outer not in produced and outer not in inputs:
                inputs.add(outer)
                _tensor(config.input, outer, DATA_TYPES[tensor.data_type], tensor.dims)
        step = config.ensemble_scheduling.step.add(model_name=families[model.name], model_version=version)
        step.input_map.update({t.name: ensemble_tensor(model, t) for t in model.inputs})
        step.output_map.update({model.output.name: ensemble_tensor(model, model.output)})
    for model in outputs:
        _tensor(config.output, ensemble_tensor(model, model.output), DATA_TYPES[model.output.data_type],
                model.output.dims)
    return config


def ensemble_configs(
    version: int, models: list[ExportedModel], families: dict[str, str]
) -> tuple[mc.ModelConfig | None, mc.ModelConfig]:
    """The encoding ensemble (None without encoders) and the ranking ensemble of ``version``: every
    step pinned to ``version`` of its model's family (``families`` maps base name to family)."""
    encoders = [m for m in models if m.role == ENCODER]
    ranking = [m for m in models if m.role in (SCORER, FUSION_ROLE)]
    fusion = [m for m in ranking if m.role == FUSION_ROLE]
    encoding = _ensemble(triton.encoder_ensemble(version), version, encoders, encoders, families) if encoders else None
    return encoding, _ensemble(triton.ensemble_model(version), version, ranking, fusion, families)


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def step_versions(repository: Path) -> dict[int, list[Path]]:
    """Every version folder of every step model family, by version number."""
    found: dict[int, list[Path]] = {}
    repository = Path(repository)
    for family in (p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else ():
        if triton.ensemble_version(family.name) is None and triton.encoder_ensemble_version(family.name) is None:
            for version in version_folders(family):
                found.setdefault(version, []).append(family / str(version))
    return found


def write_version(
    repository: Path, version: int, *, models: list[ExportedModel], export_dir: Path, target: ExportTarget,
) -> dict[str, str]:
    """Stage every exported model's ``version`` folder and the version's ensembles, then move them
    into the repository, the ranking ensemble last; returns each model's family by base name.

    ``models`` are the export report's models (their served files are in ``export_dir``)."""
    target.check_available()
    repository = Path(repository).resolve()
    repository.mkdir(parents=True, exist_ok=True)
    staging = repository.parent / f".{repository.name}.staging" / uuid.uuid4().hex
    configs = {model.name: family_config(onnx_config(model, target)) for model in models}
    families = {base: config.name for base, config in configs.items()}
    encoding, ranking = ensemble_configs(version, models, families)
    ensembles = [e for e in (encoding, ranking) if e is not None]
    try:
        for model in models:
            model_dir = staging / families[model.name] / str(version)
            model_dir.mkdir(parents=True)
            target.write_model(Path(export_dir) / model.served_file, model_dir,
                               precision=model.precision)  # type: ignore[arg-type]  # "fp32" | "int8"
        for ensemble in ensembles:
            (staging / ensemble.name / "1").mkdir(parents=True)
            (staging / ensemble.name / "config.pbtxt").write_text(config_text(ensemble))
        for config in configs.values():
            (repository / config.name).mkdir(exist_ok=True)
            replace_file(repository / config.name / "config.pbtxt", config_text(config))
            os.rename(staging / config.name / str(version), repository / config.name / str(version))
        for ensemble in ensembles:  # the ranking ensemble last: then the version is whole
            os.rename(staging / ensemble.name, repository / ensemble.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return families
