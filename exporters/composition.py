"""Composes a version's exported ONNX models into one graph per serving stage, so that a request
costs one model execution per stage instead of one per member: the history encoders into one graph
(HISTORY in, one ``user_<member>`` vector per encoding member out) and the member scorers with the
fusion into another (HISTORY, ITEMS and the user vectors in, SCORE out). The composed graphs' tensors
carry the names of cinesync.triton's ensemble tensors, so the version's ensembles map them one to one.

Each part keeps its own nodes, initializers and functions under a prefix (its model's name); Identity
nodes bind the stage's tensors to each part's inputs and outputs (ONNX Runtime removes them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import compose, helper, version_converter

from cinesync import triton
from exporters.export_report import ENCODER, FUSION_ROLE, SCORER, ExportedModel, Tensor

DEFAULT_DOMAINS = ("", "ai.onnx")


class CompositionFailed(ValueError):
    """An exported model cannot be composed into its stage (not a loadable ONNX model, or the composed
    graph does not check); the message names the file."""


@dataclass(frozen=True)
class StageModel:
    """One composed model: its base name in the repository, its ONNX file, its tensors (named as the
    ensemble's) and its precision ("int8" where any part is served INT8)."""

    name: str
    file: Path
    inputs: list[Tensor]
    outputs: list[Tensor]
    precision: str


@dataclass(frozen=True)
class Part:
    """An exported model inside a stage: which stage tensor feeds each of its inputs and which one its
    output fills."""

    model: ExportedModel
    inputs: dict[str, str]
    output: str


def stage_tensor(model: ExportedModel, tensor: Tensor) -> str:
    """The stage tensor that feeds input ``tensor`` of ``model``."""
    if tensor.name == triton.HISTORY_INPUT:
        return triton.HISTORY
    if tensor.name == triton.ITEMS_INPUT:
        return triton.ITEMS
    if tensor.name == triton.USER_VECTOR:
        return triton.user_vector(model.member)
    return tensor.name  # the fusion's score_<member> inputs: the scorers' outputs, by name


def _part(model: ExportedModel) -> Part:
    output = {ENCODER: triton.user_vector(model.member), SCORER: triton.member_score(model.member),
              FUSION_ROLE: triton.SCORE}[model.role]
    return Part(model, {t.name: stage_tensor(model, t) for t in model.inputs}, output)


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS)


def merge(parts: list[tuple[onnx.ModelProto, Part]], *, name: str, outputs: list[str]) -> onnx.ModelProto:
    """One model running every part: a stage tensor no part produces is a graph input (typed as the
    first part that reads it declares it); ``outputs`` are the graph's outputs."""
    target_opset = max(_opset(model) for model, _ in parts)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    value_info: list[onnx.ValueInfoProto] = []
    functions: list[onnx.FunctionProto] = []
    opsets: dict[str, int] = {}
    graph_inputs: dict[str, onnx.ValueInfoProto] = {}
    produced: dict[str, onnx.ValueInfoProto] = {}
    for model, part in parts:
        if _opset(model) != target_opset:
            model = version_converter.convert_version(model, target_opset)
        prefix = f"{part.model.name}/"
        prefixed = compose.add_prefix(model, prefix)
        graph = prefixed.graph
        for declared in graph.input:
            inner = declared.name[len(prefix):]
            outer = part.inputs[inner]
            if outer not in produced and outer not in graph_inputs:
                graph_inputs[outer] = helper.make_value_info(outer, declared.type)
            nodes.append(helper.make_node("Identity", [outer], [declared.name], name=f"{prefix}bind/{inner}"))
        nodes.extend(graph.node)
        (result,) = graph.output
        nodes.append(helper.make_node("Identity", [result.name], [part.output], name=f"{prefix}bind/{part.output}"))
        produced[part.output] = helper.make_value_info(part.output, result.type)
        initializers.extend(graph.initializer)
        value_info.extend(graph.value_info)
        functions.extend(prefixed.functions)
        for opset in prefixed.opset_import:
            domain = "" if opset.domain in DEFAULT_DOMAINS else opset.domain
            opsets[domain] = max(opsets.get(domain, 0), opset.version)
    graph = helper.make_graph(nodes, name, list(graph_inputs.values()), [produced[o] for o in outputs],
                              initializer=initializers, value_info=value_info)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                               functions=functions)
    merged.ir_version = max(model.ir_version for model, _ in parts)
    onnx.checker.check_model(merged)
    return merged


def _tensors(names: list[str], parts: list[Part]) -> list[Tensor]:
    """The stage tensors ``names`` with the type and dims of the part tensor each binds to."""
    found: dict[str, Tensor] = {}
    for part in parts:
        for tensor in part.model.inputs:
            found.setdefault(part.inputs[tensor.name], tensor)
        found.setdefault(part.output, part.model.output)
    return [Tensor(name, found[name].data_type, list(found[name].dims)) for name in names]


def _stage(name: str, chosen: list[ExportedModel], outputs: list[str], export_dir: Path, folder: Path) -> StageModel:
    parts = [_part(model) for model in chosen]
    produced = {part.output for part in parts}
    inputs = list(dict.fromkeys(t for part in parts for t in part.inputs.values() if t not in produced))
    loaded = []
    for part in parts:
        path = Path(export_dir) / part.model.served_file
        try:
            loaded.append((onnx.load(path), part))
        except (OSError, DecodeError) as error:
            raise CompositionFailed(f"cannot compose the {name} stage: {path} is not a loadable ONNX model "
                                    f"({type(error).__name__}: {error})") from error
    file = Path(folder) / f"{name}.onnx"
    try:
        composed = merge(loaded, name=name, outputs=outputs)
    except (onnx.checker.ValidationError, ValueError) as error:
        raise CompositionFailed(f"cannot compose the {name} stage from {', '.join(p.model.served_file for p in parts)}: "
                                f"{error}") from error
    onnx.save(composed, file)
    precision = "int8" if any(model.precision == "int8" for model in chosen) else "fp32"
    return StageModel(name, file, _tensors(inputs, parts), _tensors(outputs, parts), precision)


def compose_stages(models: list[ExportedModel], export_dir: Path, folder: Path) -> list[StageModel]:
    """The encoding stage (where a member has an encoder) and the ranking stage of an export report's
    ``models``, written as ONNX files into ``folder``; each part is its served file (INT8 where the
    export's guard accepted it)."""
    encoders = [m for m in models if m.role == ENCODER]
    ranking = [*(m for m in models if m.role == SCORER), *(m for m in models if m.role == FUSION_ROLE)]
    stages = []
    if encoders:
        stages.append(_stage(triton.ENCODERS, encoders, [triton.user_vector(m.member) for m in encoders],
                             export_dir, folder))
    stages.append(_stage(triton.RANKER, ranking, [triton.SCORE], export_dir, folder))
    return stages
