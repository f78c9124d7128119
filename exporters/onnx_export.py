"""Exports the user tower, item tower and ranker of a run to ONNX with a dynamic batch axis, and
checks each against PyTorch on real inputs."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from recsys.feature_assembly import assemble_dense
from recsys.run import TrainedRun

PARITY_TOLERANCE = 1e-4
EXPORT_BATCH, PARITY_BATCH = 8, 37  # parity runs at a batch size the export never saw
REPORT_FILE = "export.json"
# The exporter logs a line per torchvision op it cannot register; none are used here.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)


class ParityError(RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


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
    output: str,
    folder: Path,
) -> ExportedModel:
    """Export with every input's axis 0 dynamic; raise ParityError past PARITY_TOLERANCE on ``check``."""
    path = folder / f"{name}.onnx"
    batch = torch.export.Dim("batch", min=1, max=65536)
    args = tuple(torch.from_numpy(a) for a in example.values())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name: batch will not be used.*")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(example),
            output_names=[output],
            dynamic_shapes=tuple({0: batch} for _ in example),
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    with torch.no_grad():
        expected = module(*(torch.from_numpy(a) for a in check.values())).numpy()
    (actual,) = ort_session(path).run([output], check)
    error = float(np.max(np.abs(actual - expected)))
    if not error <= PARITY_TOLERANCE:
        raise ParityError(f"{name}: max abs error {error:.3g} exceeds {PARITY_TOLERANCE:g}")
    return ExportedModel(name, str(path), list(example), output, error)


def _user_inputs(run: TrainedRun, users: np.ndarray) -> dict[str, np.ndarray]:
    user_idx, history, features = run.user_tower_inputs(users)
    return {"user_idx": user_idx, "history": history, "user_features": features}


def _item_inputs(run: TrainedRun, items: np.ndarray) -> dict[str, np.ndarray]:
    item_idx, genres, year_bucket, domain = run.item_tower_inputs(items)
    return {"item_idx": item_idx, "genres": genres, "year_bucket": year_bucket, "domain": domain}


def _ranker_inputs(run: TrainedRun, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "user_idx": users[:, None].astype(np.int64),
        "item_idx": items[:, None].astype(np.int64),
        "dense": assemble_dense(run.tables, users, items),
    }


def export_run(run: TrainedRun, folder: Path, *, seed: int = 0) -> list[ExportedModel]:
    """Write user_tower.onnx, item_tower.onnx and ranker.onnx plus a parity report into ``folder``.

    Parity inputs are real: users with their train histories and features, catalog items, and
    (user, item) pairs from the training interactions.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    split = run.split

    def sample(n: int, size: int) -> np.ndarray:
        return rng.choice(n, size, replace=n < size).astype(np.int64)

    pair_users, pair_items = split.train_pairs()

    def ranker_inputs(size: int) -> dict[str, np.ndarray]:
        rows = sample(len(pair_users), size)
        return _ranker_inputs(run, pair_users[rows], pair_items[rows])

    specs: list[tuple[str, torch.nn.Module, str, Callable[[int], dict[str, np.ndarray]]]] = [
        ("user_tower", run.user_tower, "user_embedding", lambda size: _user_inputs(run, sample(split.n_users, size))),
        ("item_tower", run.item_tower, "item_embedding", lambda size: _item_inputs(run, sample(split.n_items, size))),
        ("ranker", run.ranker, "score", ranker_inputs),
    ]
    exported = [
        export_module(
            module, name=name, example=inputs(EXPORT_BATCH), check=inputs(PARITY_BATCH), output=output, folder=folder
        )
        for name, module, output, inputs in specs
    ]
    (folder / REPORT_FILE).write_text(json.dumps([asdict(m) for m in exported], indent=2))
    return exported


def onnx_embeddings(path: Path, inputs: dict[str, np.ndarray], *, batch: int = 4096) -> np.ndarray:
    """Run an exported tower over all rows of ``inputs`` in batches."""
    session = ort_session(path, threads=2)
    rows = len(next(iter(inputs.values())))
    parts = [
        session.run(None, {k: v[start : start + batch] for k, v in inputs.items()})[0]
        for start in range(0, rows, batch)
    ]
    return np.concatenate(parts).astype(np.float32)


def all_user_inputs(run: TrainedRun) -> dict[str, np.ndarray]:
    return _user_inputs(run, np.arange(run.split.n_users))


def all_item_inputs(run: TrainedRun) -> dict[str, np.ndarray]:
    return _item_inputs(run, np.arange(run.split.n_items))
