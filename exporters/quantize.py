"""INT8: static post-training quantization in QDQ format with ONNX Runtime, calibrated on pairs
drawn from training interactions, and the accuracy guard that compares the quantized served
pipeline with the fp32 one on the validation split.

QDQ models run as they are in ONNX Runtime (CPU), and are what TensorRT builds explicit INT8
engines from (the stock container's TensorRT accelerator, or the tensorrt target).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

CALIBRATION_BATCH = 256
# Only the weight-carrying ops: embedding tables (Gather) and dense layers (MatMul, Gemm). Element-wise
# ops and reductions stay float, so a score is never rounded to 256 levels (quantizing the tower's
# product and sum lost 3.2 % of validation NDCG@10 on ML-100k; see docs/benchmarks.md).
QUANTIZED_OPS = ["Gather", "MatMul", "Gemm"]
# The fusion's Gathers read its feature tables (genres, shares, years), which stay float: only its
# dense layers.
FUSION_QUANTIZED_OPS = ["MatMul", "Gemm"]


class QuantizationRejected(RuntimeError):
    """The INT8 pipeline loses more NDCG@10 on validation than allowed; nothing is published."""


@dataclass
class GuardResult:
    """Validation NDCG@10 of the served pipeline in fp32 and with the INT8 models, and the verdict."""

    fp32_ndcg: float
    int8_ndcg: float
    relative_loss: float
    max_loss: float
    users: int

    @property
    def accepted(self) -> bool:
        return self.relative_loss <= self.max_loss


class _Batches(CalibrationDataReader):  # type: ignore[misc]  # untyped base
    """Feeds calibration rows to ONNX Runtime's calibrator in batches."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        rows = len(next(iter(feeds.values())))
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{k: v[s : s + CALIBRATION_BATCH] for k, v in feeds.items()} for s in range(0, rows, CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize(
    fp32_path: Path, int8_path: Path, calibration: dict[str, np.ndarray], *, ops: list[str] = QUANTIZED_OPS
) -> None:
    """Write the QDQ INT8 model of ``fp32_path``: the ``ops`` nodes' weights int8 per channel,
    activations uint8 (ranges from ``calibration``, a dict of model inputs)."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(int8_path), _Batches(calibration), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=ops,
        )


def guard(
    fp32_scores: Callable[[], np.ndarray], int8_scores: Callable[[], np.ndarray],
    ndcg: Callable[[np.ndarray], float], *, max_loss: float, users: int,
) -> GuardResult:
    """Compare the served pipeline's NDCG@10 with fp32 and INT8 scores of the same candidate lists."""
    fp32, int8 = ndcg(fp32_scores()), ndcg(int8_scores())
    loss = (fp32 - int8) / fp32 if fp32 > 0 else 0.0
    return GuardResult(round(fp32, 5), round(int8, 5), round(loss, 5), max_loss, users)
