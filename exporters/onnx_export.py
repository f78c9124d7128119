"""Exports every member's history encoder (where it has one) and scorer, and the fusion, of a run to
ONNX with a dynamic request batch (and candidate) axis, and checks each against the kind's own
numbers on real histories (the parity gate). Each exported model records its tensors (name, type,
dims), from which the Triton repository is written. With precision "int8", every quantizable
(neural) model is also written as a QDQ INT8 model, and the guard of exporters.quantize refuses
the export when the INT8 pipeline loses more validation NDCG@10 than allowed."""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cinesync import triton
from exporters.export_report import (
    ENCODER,
    FP32,
    FUSION_ROLE,
    INT64,
    REPORT_FILE,
    SCORER,
    ExportedModel,
    Tensor,
)
from exporters.quantize import (
    FUSION_QUANTIZED_OPS,
    QUANTIZED_OPS,
    GuardResult,
    QuantizationRejected,
    guard,
    quantize,
)
from recsys.candidates import PAD, CandidateLists, evaluate_lists
from recsys.cascade import candidate_lists
from recsys.feature_assembly import assemble_dense
from recsys.features import history_matrix, recent
from recsys.kinds.base import MemberKind, ScorerInput
from recsys.run import TrainedRun

PARITY_TOLERANCE = 1e-4
# (requests, candidates per request): parity runs at sizes the export never saw
EXPORT_SHAPE, PARITY_SHAPE = (8, 16), (37, 23)
CALIBRATION_REQUESTS = 512
# The exporter logs a line per torchvision op it cannot register; none are used here.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)

class ParityError(RuntimeError):
    """The exported model's outputs differ from the kind's own by more than the tolerance."""


@dataclass
class Requests:
    """A batch of real requests: each user's recent history and their candidates (PAD pads)."""

    histories: list[np.ndarray]
    items: np.ndarray  # [B, W] item indices
    length: int  # the history length the models see
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # per encoding member, its user vectors

    def history(self) -> np.ndarray:
        return history_matrix(self.histories, self.length)

    def candidates(self) -> np.ndarray:
        return (self.items + 1).astype(np.int64)  # index + 1, PAD -> 0

    def user_vector(self, member: MemberKind) -> np.ndarray:
        if member.name not in self.vectors:
            self.vectors[member.name] = member.encode(self.histories)
        return self.vectors[member.name]


def ort_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def tensors_of(history_length: int) -> dict[str, Tensor]:
    """The request tensors every model may read, by ONNX name: the history and the candidates."""
    return {
        triton.HISTORY_INPUT: Tensor(triton.HISTORY_INPUT, INT64, [history_length]),
        triton.ITEMS_INPUT: Tensor(triton.ITEMS_INPUT, INT64, [-1]),
    }


def request_batch(run: TrainedRun, size: int, width: int, rng: np.random.Generator) -> Requests:
    """Real requests: users' recent training histories (the empty one included, for cold users) and
    candidates that are random items, one of the user's own items and a pad."""
    sequences = run.history.train_sequences
    users = rng.choice(len(sequences), size, replace=len(sequences) < size)
    histories = recent([sequences[u] for u in users], run.spec.history_length)
    histories[-1] = histories[-1][:0]
    items = rng.integers(0, run.catalog.n_items, (size, width))
    for row, history in enumerate(histories):
        if len(history):
            items[row, 0] = history[rng.integers(len(history))]
    items[:, -1] = PAD
    return Requests(histories, items, run.spec.history_length)


def scorer_feeds(member: MemberKind, requests: Requests) -> dict[str, np.ndarray]:
    """What ``member``'s scorer reads of ``requests``, by ONNX input name, in its declared order."""
    inputs: dict[ScorerInput, Callable[[], np.ndarray]] = {
        ScorerInput.HISTORY: requests.history,
        ScorerInput.ITEMS: requests.candidates,
        ScorerInput.USER_VECTOR: lambda: requests.user_vector(member),
    }
    return {str(name): inputs[name]() for name in member.scorer_inputs}


def fusion_feeds(run: TrainedRun, scores: dict[str, np.ndarray], requests: Requests) -> dict[str, np.ndarray]:
    """The fusion model's inputs: one ``[B, W]`` score per member, then the history and candidates."""
    feeds = {triton.member_score(m.name): scores[m.name].astype(np.float32) for m in run.members}
    return {**feeds, triton.HISTORY_INPUT: requests.history(), triton.ITEMS_INPUT: requests.candidates()}


def fusion_features(run: TrainedRun, scores: dict[str, np.ndarray], requests: Requests) -> np.ndarray:
    """``[B, W, F]``: member scores then dense features, as the fusion was trained on."""
    dense = assemble_dense(run.tables, requests.history(), requests.candidates())
    return np.concatenate([*(scores[m.name][:, :, None] for m in run.members), dense], axis=2).astype(np.float32)


def export_module(
    module: torch.nn.Module,
    *,
    name: str,
    inputs: list[Tensor],
    output: Tensor,
    example: dict[str, np.ndarray],
    check: dict[str, np.ndarray],
    expected: np.ndarray,
    folder: Path,
    compared: np.ndarray | None = None,
) -> tuple[str, float]:
    """Export with the batch axis and every -1 dim dynamic; raise ParityError when ONNX Runtime's
    output on ``check`` differs from ``expected`` by more than PARITY_TOLERANCE where ``compared``
    holds (everywhere without it: pads' scores are free). Returns the file name and the largest error."""
    path = folder / f"{name}.onnx"
    batch = torch.export.Dim("batch", min=1, max=65536)
    width = torch.export.Dim("width", min=1, max=triton.MAX_CANDIDATES)
    shapes = [{0: batch, **{axis + 1: width for axis, dim in enumerate(t.dims) if dim == -1}} for t in inputs]
    args = tuple(torch.from_numpy(example[t.name]) for t in inputs)
    variadic = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name: .* will not be used.*")
        torch.onnx.export(
            module.eval(), args, str(path), input_names=[t.name for t in inputs], output_names=[output.name],
            dynamic_shapes=(tuple(shapes),) if variadic else tuple(shapes),  # forward(*inputs): one parameter
            external_data=False, dynamo=True, verbose=False,
        )
    (actual,) = ort_session(path).run([output.name], {t.name: check[t.name] for t in inputs})
    differences = np.abs(actual - np.asarray(expected))
    if compared is not None:
        differences = differences[compared]
    error = float(differences.max()) if differences.size else 0.0
    if not error <= PARITY_TOLERANCE:
        raise ParityError(f"{name}: max abs error {error:.3g} exceeds {PARITY_TOLERANCE:g}")
    return path.name, error


def _export_member(
    member: MemberKind, run: TrainedRun, example: Requests, check: Requests, folder: Path
) -> list[ExportedModel]:
    """The member's encoder (if any) and scorer."""
    exported = []
    known = tensors_of(run.spec.history_length)
    encoder = member.encoder_module()
    if encoder is not None:
        dim = check.user_vector(member).shape[1]
        history, vector = known[triton.HISTORY_INPUT], Tensor(triton.USER_VECTOR, FP32, [dim])
        name = triton.encoder_model(member.name)
        file, error = export_module(
            encoder, name=name, inputs=[history], output=vector,
            example={history.name: example.history()}, check={history.name: check.history()},
            expected=check.user_vector(member), folder=folder,
        )
        exported.append(ExportedModel(name, ENCODER, member.name, file, [history], vector, error))
        known[triton.USER_VECTOR] = vector
    inputs = [known[str(name)] for name in member.scorer_inputs]
    output = Tensor(triton.OUTPUT, FP32, [-1])
    name = triton.scorer_model(member.name)
    file, error = export_module(
        member.scorer_module(), name=name, inputs=inputs, output=output, example=scorer_feeds(member, example),
        check=scorer_feeds(member, check), expected=member.score_lists(check.histories, check.items), folder=folder,
        compared=check.items != PAD,
    )
    exported.append(ExportedModel(name, SCORER, member.name, file, inputs, output, error))
    return exported


def _export_fusion(run: TrainedRun, example: Requests, check: Requests, folder: Path) -> ExportedModel:
    def scores(requests: Requests) -> dict[str, np.ndarray]:
        return {m.name: m.score_lists(requests.histories, requests.items) for m in run.members}

    known = tensors_of(run.spec.history_length)
    inputs = [*(Tensor(triton.member_score(m.name), FP32, [-1]) for m in run.members),
              known[triton.HISTORY_INPUT], known[triton.ITEMS_INPUT]]
    output = Tensor(triton.OUTPUT, FP32, [-1])
    check_scores = scores(check)
    file, error = export_module(
        run.fusion.serving_module(run.tables), name=triton.FUSION, inputs=inputs, output=output,
        example=fusion_feeds(run, scores(example), example), check=fusion_feeds(run, check_scores, check),
        expected=run.fusion.score_features(fusion_features(run, check_scores, check), check.items != PAD),
        folder=folder,
        compared=check.items != PAD,
    )
    return ExportedModel(triton.FUSION, FUSION_ROLE, "", file, inputs, output, error)


def _run(path: Path, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    (result,) = ort_session(path, threads=2).run([output], feeds)
    return np.asarray(result)


def served_scores(
    run: TrainedRun, requests: Requests, files: dict[str, Path], quantized: set[str]
) -> np.ndarray:
    """The fusion's scores ``[B, W]`` of ``requests`` through the ONNX files; the encoders and scorers
    of quantized members run from their files (the others are the kinds' own numbers, equal to fp32
    within parity)."""
    scores = {}
    for member in run.members:
        scorer = triton.scorer_model(member.name)
        if scorer not in quantized:
            scores[member.name] = member.score_lists(requests.histories, requests.items)
            continue
        served = Requests(requests.histories, requests.items, requests.length)
        encoder = triton.encoder_model(member.name)
        if encoder in files:
            served.vectors[member.name] = _run(files[encoder], {triton.HISTORY_INPUT: requests.history()},
                                               triton.USER_VECTOR)
        scores[member.name] = _run(files[scorer], scorer_feeds(member, served), triton.OUTPUT)
    return _run(files[triton.FUSION], fusion_feeds(run, scores, requests), triton.OUTPUT)


def list_requests(run: TrainedRun, lists: CandidateLists, split_sequences: list[np.ndarray]) -> Requests:
    """The requests that candidate lists stand for: each list's user's recent history and its items."""
    histories = recent([split_sequences[u] for u in lists.users], run.spec.history_length)
    return Requests(histories, lists.items, run.spec.history_length)


def quantize_run(
    run: TrainedRun, folder: Path, exported: list[ExportedModel], *, max_loss: float, rng: np.random.Generator
) -> GuardResult:
    """Write <model>.int8.onnx for every model of a quantizable kind, calibrated on real requests,
    then guard the INT8 pipeline on the validation split; mark the accepted models as served INT8."""
    calibration = request_batch(run, CALIBRATION_REQUESTS, 32, rng)
    members = {m.name: m for m in run.members}
    feeds: dict[str, dict[str, np.ndarray]] = {}
    for model in exported:
        if model.role == ENCODER:
            feeds[model.name] = {triton.HISTORY_INPUT: calibration.history()}
        elif model.role == SCORER:
            feeds[model.name] = scorer_feeds(members[model.member], calibration)
    scores = {m.name: m.score_lists(calibration.histories, calibration.items) for m in run.members}
    feeds[triton.FUSION] = fusion_feeds(run, scores, calibration)
    quantizable = {name for name, m in members.items() if m.quantizable}
    quantized = {m.name for m in exported
                 if (m.role == FUSION_ROLE and run.fusion.quantizable) or m.member in quantizable}
    for model in exported:
        if model.name in quantized:
            ops = FUSION_QUANTIZED_OPS if model.role == FUSION_ROLE else QUANTIZED_OPS
            quantize(folder / model.file, folder / f"{model.name}.int8.onnx", feeds[model.name], ops=ops)
    split = run.protocol.validation
    lists = candidate_lists(run.members, run.spec.retrieving(run.members), run.tables, split, depth=run.spec.depth)
    requests = list_requests(run, lists, split.train_sequences)
    fp32_files = {m.name: folder / m.file for m in exported}
    int8_files = {**fp32_files, **{name: folder / f"{name}.int8.onnx" for name in quantized}}
    result = guard(
        lambda: served_scores(run, requests, fp32_files, set()),
        lambda: served_scores(run, requests, int8_files, quantized),
        lambda scores: evaluate_lists(lists, scores, split)["ndcg@10"],
        max_loss=max_loss, users=len(lists.users),
    )
    if not result.accepted:
        raise QuantizationRejected(
            f"INT8 loses {100 * result.relative_loss:.2f} % of validation NDCG@10 ({result.fp32_ndcg:.4f} fp32 -> "
            f"{result.int8_ndcg:.4f} int8), above the {100 * max_loss:.2f} % allowed (CINESYNC_INT8_MAX_NDCG_LOSS); "
            "not published"
        )
    for model in exported:
        if model.name in quantized:
            model.served_file, model.precision = int8_files[model.name].name, "int8"
    return result


def export_run(
    run: TrainedRun, folder: Path, *, seed: int = 0, precision: str = "fp32", max_loss: float = 0.01
) -> list[ExportedModel]:
    """Write encode_<member>.onnx for every encoding member, score_<member>.onnx for every member and
    fusion.onnx, plus a report; with ``precision="int8"`` also the INT8 models, guarded
    (QuantizationRejected above ``max_loss``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    example, check = (request_batch(run, *shape, rng) for shape in (EXPORT_SHAPE, PARITY_SHAPE))
    exported = [model for member in run.members for model in _export_member(member, run, example, check, folder)]
    exported.append(_export_fusion(run, example, check, folder))
    for model in exported:
        model.served_file = model.file
    guarded = quantize_run(run, folder, exported, max_loss=max_loss, rng=rng) if precision == "int8" else None
    report = {"precision": precision, "int8_guard": asdict(guarded) if guarded else None,
              "models": [asdict(m) for m in exported]}
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return exported
