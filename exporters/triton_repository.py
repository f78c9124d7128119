"""Writes one serving version of the models into a Triton model repository.

Layout: the version's exported ONNX models are composed into two stage models (exporters.composition):
``encoders`` (every member's history encoder; only when a member has one) and ``ranker`` (the member
scorers and the fusion), each at <repository>/<family>/config.pbtxt and <repository>/<family>/<version>/
(a family is the base name plus its configuration's digest, and serves all of its version folders);
per serving version two ensembles of one step each, pinned to that version: encode_<version> and
ranking_<version>. A request is then one model execution per stage, whichever target runs it: the
python backend (one stub round trip per stage instead of one per member), the stock container's
onnxruntime_onnx (one session) or a TensorRT engine (one engine, fused across members). Configs are
written from the stage models' tensors, named as cinesync.triton names the ensembles'. Everything is
built in a staging folder beside the repository and renamed into place, the ranking ensemble last,
so a version is either whole or not referenced at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from cinesync import triton
from cinesync.versions import replace_file, version_folders
from exporters.composition import StageModel, compose_stages
from exporters.export_report import ExportedModel
from exporters.targets import ExportTarget

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


@dataclass(frozen=True)
class Scheduling:
    """How Triton runs each stage model: instances per device (where the target places them itself,
    as the python backend's CPU instances) and dynamic batching's longest wait for more requests."""

    instances: int = 1
    queue_delay_us: int = 0


def stage_config(model: StageModel, target: ExportTarget, scheduling: Scheduling = Scheduling()) -> mc.ModelConfig:
    """A composed stage model's config from its tensors, run as ``target`` says, scheduled as
    ``scheduling`` says."""
    config = _base_config(model.name)
    for tensor in model.inputs:
        _tensor(config.input, tensor.name, DATA_TYPES[tensor.data_type], tensor.dims)
    for tensor in model.outputs:
        _tensor(config.output, tensor.name, DATA_TYPES[tensor.data_type], tensor.dims)
    target.configure(config, precision=model.precision)  # type: ignore[arg-type]  # "fp32" | "int8"
    for group in config.instance_group:
        group.count = scheduling.instances
    batching = config.dynamic_batching  # requests waiting together run as one batch
    batching.max_queue_delay_microseconds = scheduling.queue_delay_us
    # A request that carries a timeout (the control plane's deadline) leaves the queue unrun when it
    # passes: the control plane never cancels a late call (control_plane.ranking).
    batching.default_queue_policy.timeout_action = mc.ModelQueuePolicy.REJECT
    batching.default_queue_policy.allow_timeout_override = True
    return config


def ensemble_config(name: str, version: int, model: StageModel, family: str) -> mc.ModelConfig:
    """The ensemble ``name`` of one step: version ``version`` of ``model``'s family, whose tensors
    are the ensemble's own (cinesync.triton's names)."""
    config = _base_config(name)
    config.platform = "ensemble"
    for group, tensors in ((config.input, model.inputs), (config.output, model.outputs)):
        for tensor in tensors:
            _tensor(group, tensor.name, DATA_TYPES[tensor.data_type], tensor.dims)
    step = config.ensemble_scheduling.step.add(model_name=family, model_version=version)
    step.input_map.update({t.name: t.name for t in model.inputs})
    step.output_map.update({t.name: t.name for t in model.outputs})
    return config


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def step_versions(repository: Path) -> dict[int, list[Path]]:
    """Every version folder of every stage model family, by version number."""
    found: dict[int, list[Path]] = {}
    repository = Path(repository)
    for family in (p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else ():
        if triton.ensemble_version(family.name) is None and triton.encoder_ensemble_version(family.name) is None:
            for version in version_folders(family):
                found.setdefault(version, []).append(family / str(version))
    return found


def write_version(
    repository: Path, version: int, *, models: list[ExportedModel], export_dir: Path, target: ExportTarget,
    scheduling: Scheduling = Scheduling(),
) -> dict[str, str]:
    """Compose the exported models into the version's stage models, stage their ``version`` folders
    and the version's ensembles, then move them into the repository, the ranking ensemble last;
    returns each stage model's family by base name.

    ``models`` are the export report's models (their served files are in ``export_dir``)."""
    target.check_available()
    repository = Path(repository).resolve()
    repository.mkdir(parents=True, exist_ok=True)
    staging = repository.parent / f".{repository.name}.staging" / uuid.uuid4().hex
    try:
        (staging / "composed").mkdir(parents=True)
        stages = {stage.name: stage for stage in compose_stages(models, export_dir, staging / "composed")}
        configs = {name: family_config(stage_config(stage, target, scheduling)) for name, stage in stages.items()}
        families = {name: config.name for name, config in configs.items()}
        ensembles = [ensemble_config(ensemble, version, stages[stage], families[stage])
                     for ensemble, stage in ((triton.encoder_ensemble(version), triton.ENCODERS),
                                             (triton.ensemble_model(version), triton.RANKER)) if stage in stages]
        for name, stage in stages.items():
            model_dir = staging / families[name] / str(version)
            model_dir.mkdir(parents=True)
            target.write_model(stage.file, model_dir, precision=stage.precision)  # type: ignore[arg-type]
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
