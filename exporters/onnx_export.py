"""Exports every scoring member and the fusion of a run to ONNX with a dynamic batch axis, and checks
each against the kind's own scores on real inputs (the parity gate)."""

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
from recsys.cascade import pair_features
from recsys.run import TrainedRun

PARITY_TOLERANCE = 1e-4
EXPORT_BATCH, PARITY_BATCH = 8, 37  # parity runs at a batch size the export never saw
REPORT_FILE = "export.json"
# The exporter logs a line per torchvision op it cannot register; none are used here.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)


class ParityError(RuntimeError):
    """The exported model's outputs differ from the kind's own by more than the tolerance."""


@dataclass
class ExportedModel:
    name: str
    path: str
    inputs: list[str]
    output: str
    max_abs_error: float


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
    return ExportedModel(name, str(path), list(example), triton.OUTPUT, error)


def fusion_feeds(members: list[str], features: np.ndarray) -> dict[str, np.ndarray]:
    """The fusion model's inputs from pair features ``[n, members + dense]``: one column per member."""
    feeds = {triton.member_score(name): features[:, i : i + 1] for i, name in enumerate(members)}
    return {**feeds, triton.DENSE_INPUT: np.ascontiguousarray(features[:, len(members) :])}


def parity_pairs(run: TrainedRun, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Real (user, item) pairs: half from training interactions, half a user with a random item."""
    users, items = run.history.train_pairs()
    rows = rng.choice(len(users), size, replace=len(users) < size)
    half = size // 2
    random_items = rng.integers(0, run.catalog.n_items, size - half)
    return users[rows], np.concatenate([items[rows[:half]], random_items])


def export_run(run: TrainedRun, folder: Path, *, seed: int = 0) -> list[ExportedModel]:
    """Write score_<member>.onnx for every scoring member and fusion.onnx, plus a parity report."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    examples = {size: parity_pairs(run, size, rng) for size in (EXPORT_BATCH, PARITY_BATCH)}

    def pair_inputs(size: int) -> dict[str, np.ndarray]:
        users, items = examples[size]
        return dict(zip(triton.PAIR_INPUTS, (users[:, None], items[:, None]), strict=True))

    exported = []
    users, items = examples[PARITY_BATCH]
    for member in run.members:
        exported.append(export_module(
            member.scorer_module(), name=triton.scorer_model(member.name), example=pair_inputs(EXPORT_BATCH),
            check=pair_inputs(PARITY_BATCH), expected=member.score_pairs(users, items), folder=folder,
        ))

    def fusion_inputs(size: int) -> dict[str, np.ndarray]:
        return fusion_feeds([m.name for m in run.members], pair_features(run.members, run.tables, *examples[size]))

    check = fusion_inputs(PARITY_BATCH)
    features = np.concatenate(list(check.values()), axis=1)[None]
    expected = run.fusion.score_features(features)[0]
    exported.append(export_module(
        run.fusion.serving_module(), name=triton.FUSION, example=fusion_inputs(EXPORT_BATCH), check=check,
        expected=expected, folder=folder,
    ))
    (folder / REPORT_FILE).write_text(json.dumps([asdict(m) for m in exported], indent=2))
    return exported
