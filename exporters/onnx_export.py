"""Exports every scoring member and the fusion of a run to ONNX with a dynamic batch axis, and checks
each against the kind's own scores on real inputs (the parity gate). With precision "int8", every
quantizable (neural) model is also written as a QDQ INT8 model, and the guard of exporters.quantize
refuses the export when the INT8 pipeline loses more validation NDCG@10 than allowed."""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cinesync import triton
from exporters.quantize import (
    FUSION_QUANTIZED_OPS,
    QUANTIZED_OPS,
    GuardResult,
    QuantizationRejected,
    guard,
    quantize,
)
from recsys.candidates import CandidateLists, evaluate_lists
from recsys.cascade import candidate_lists, pair_features
from recsys.run import TrainedRun

PARITY_TOLERANCE = 1e-4
EXPORT_BATCH, PARITY_BATCH = 8, 37  # parity runs at a batch size the export never saw
REPORT_FILE = "export.json"
# The exporter logs a line per torchvision op it cannot register; none are used here.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)


class ParityError(RuntimeError):
    """The exported model's outputs differ from the kind's own by more than the tolerance."""


CALIBRATION_PAIRS = 2048


@dataclass
class ExportedModel:
    """One exported model: its fp32 file and parity, and the file to serve with its precision (file
    names inside the export folder, so the folder can move)."""

    name: str
    file: str
    inputs: list[str]
    output: str
    max_abs_error: float
    served_file: str = ""
    precision: str = "fp32"


def ort_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_module(
    module: torch.nn.Module,
    *,
    name: str,
    example: dict[str, np.ndarray],
    check: dict[str, np.ndarray],
    expected: np.ndarray,
    folder: Path,
) -> ExportedModel:
    """Export with every input's axis 0 dynamic; raise ParityError when ONNX Runtime's output on
    ``check`` differs from ``expected`` by more than PARITY_TOLERANCE."""
    path = folder / f"{name}.onnx"
    args = tuple(torch.from_numpy(a) for a in example.values())
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes: tuple[object, ...] = tuple({0: batch} for _ in example)
    if any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values()):
        shapes = (shapes,)  # forward(*inputs), as the fusion's: one parameter holding every input
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name: batch will not be used.*")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=list(example),
            output_names=[triton.OUTPUT],
            dynamic_shapes=shapes,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    (actual,) = ort_session(path).run([triton.OUTPUT], check)
    error = float(np.max(np.abs(actual.reshape(-1) - expected.reshape(-1))))
    if not error <= PARITY_TOLERANCE:
        raise ParityError(f"{name}: max abs error {error:.3g} exceeds {PARITY_TOLERANCE:g}")
    return ExportedModel(name, path.name, list(example), triton.OUTPUT, error)


def fusion_feeds(members: list[str], features: np.ndarray, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """The fusion model's inputs: one score column per member (the first columns of the pair
    features ``features``), then the pairs themselves (it looks their dense features up)."""
    feeds = {triton.member_score(name): np.ascontiguousarray(features[:, i : i + 1]) for i, name in enumerate(members)}
    return {**feeds, **_pair_feeds(users, items)}


def parity_pairs(run: TrainedRun, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Real (user, item) pairs: half from training interactions, half a user with a random item."""
    users, items = run.history.train_pairs()
    rows = rng.choice(len(users), size, replace=len(users) < size)
    half = size // 2
    random_items = rng.integers(0, run.catalog.n_items, size - half)
    return users[rows], np.concatenate([items[rows[:half]], random_items])


def _pair_feeds(users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(triton.PAIR_INPUTS, (users[:, None], items[:, None]), strict=True))


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    (scores,) = ort_session(path, threads=2).run([triton.OUTPUT], feeds)
    return np.asarray(scores).reshape(-1)


def _served_scores(
    run: TrainedRun, lists: CandidateLists, files: dict[str, Path], quantized: set[str]
) -> np.ndarray:
    """The fusion's scores of ``lists`` through the ONNX files; the columns of quantized members are
    recomputed by their files (the others are the kinds' own scores, equal to fp32 within parity)."""
    valid = lists.mask
    users = np.broadcast_to(lists.users[:, None], lists.items.shape)[valid]
    items, features = lists.items[valid], lists.features[valid].copy()
    for column, member in enumerate(run.members):
        if triton.scorer_model(member.name) in quantized:
            features[:, column] = _run(files[triton.scorer_model(member.name)], _pair_feeds(users, items))
    scores = np.zeros(lists.items.shape, dtype=np.float32)
    scores[valid] = _run(files[triton.FUSION], fusion_feeds([m.name for m in run.members], features, users, items))
    return scores


def quantize_run(
    run: TrainedRun, folder: Path, exported: list[ExportedModel], *, max_loss: float, rng: np.random.Generator
) -> GuardResult:
    """Write <model>.int8.onnx for every quantizable model, calibrated on training pairs, then guard
    the INT8 pipeline on the validation split; mark the accepted models as served INT8."""
    users, items = parity_pairs(run, CALIBRATION_PAIRS, rng)
    calibration = {triton.scorer_model(m.name): _pair_feeds(users, items) for m in run.members}
    calibration[triton.FUSION] = fusion_feeds([m.name for m in run.members],
                                              pair_features(run.members, run.tables, users, items), users, items)
    kinds = {triton.scorer_model(m.name): m for m in run.members} | {triton.FUSION: run.fusion}
    quantized = {model.name for model in exported if kinds[model.name].quantizable}
    for model in exported:
        if model.name in quantized:
            ops = FUSION_QUANTIZED_OPS if model.name == triton.FUSION else QUANTIZED_OPS
            quantize(folder / model.file, folder / f"{model.name}.int8.onnx", calibration[model.name], ops=ops)
    split = run.protocol.validation
    lists = candidate_lists(run.members, run.spec.retrieving(run.members), run.tables, split, depth=run.spec.depth)
    fp32_files = {m.name: folder / m.file for m in exported}
    int8_files = {**fp32_files, **{name: folder / f"{name}.int8.onnx" for name in quantized}}
    result = guard(
        lambda: _served_scores(run, lists, fp32_files, set()),
        lambda: _served_scores(run, lists, int8_files, quantized),
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
    """Write score_<member>.onnx for every scoring member and fusion.onnx, plus a report; with
    ``precision="int8"`` also the INT8 models, guarded (QuantizationRejected above ``max_loss``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    examples = {size: parity_pairs(run, size, rng) for size in (EXPORT_BATCH, PARITY_BATCH)}

    def pair_inputs(size: int) -> dict[str, np.ndarray]:
        return _pair_feeds(*examples[size])

    exported = []
    users, items = examples[PARITY_BATCH]
    for member in run.members:
        exported.append(export_module(
            member.scorer_module(), name=triton.scorer_model(member.name), example=pair_inputs(EXPORT_BATCH),
            check=pair_inputs(PARITY_BATCH), expected=member.score_pairs(users, items), folder=folder,
        ))

    def fusion_inputs(size: int) -> dict[str, np.ndarray]:
        pairs = examples[size]
        return fusion_feeds([m.name for m in run.members], pair_features(run.members, run.tables, *pairs), *pairs)

    expected = run.fusion.score_features(pair_features(run.members, run.tables, users, items)[None])[0]
    exported.append(export_module(
        run.fusion.serving_module(run.tables), name=triton.FUSION, example=fusion_inputs(EXPORT_BATCH),
        check=fusion_inputs(PARITY_BATCH), expected=expected, folder=folder,
    ))
    for model in exported:
        model.served_file = model.file
    guarded = quantize_run(run, folder, exported, max_loss=max_loss, rng=rng) if precision == "int8" else None
    report = {"precision": precision, "int8_guard": asdict(guarded) if guarded else None,
              "models": [asdict(m) for m in exported]}
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return exported
