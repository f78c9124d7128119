"""The export report: which ONNX models an export wrote, with their tensors (name, type, dims), files
and precision. The Triton repository is written from it. No torch: publishing reads it too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_FILE = "export.json"
INT64, FP32 = "INT64", "FP32"
ENCODER, SCORER, FUSION_ROLE = "encoder", "scorer", "fusion"


@dataclass
class Tensor:
    """One ONNX input or output: name, Triton data type, and dims after the batch axis (-1: any)."""

    name: str
    data_type: str
    dims: list[int]


@dataclass
class ExportedModel:
    """One exported model: its role and member, its tensors, its fp32 file and parity, and the file
    to serve with its precision (file names inside the export folder, so the folder can move)."""

    name: str
    role: str  # encoder | scorer | fusion
    member: str  # the member it belongs to ("" for the fusion)
    file: str
    inputs: list[Tensor]
    output: Tensor
    max_abs_error: float
    served_file: str = ""
    precision: str = "fp32"

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ExportedModel:
        return cls(**{**values, "inputs": [Tensor(**t) for t in values["inputs"]], "output": Tensor(**values["output"])})


def read_report(folder: Path) -> list[ExportedModel]:
    """The exported models an export folder's report lists."""
    report: dict[str, Any] = json.loads((Path(folder) / REPORT_FILE).read_text())
    return [ExportedModel.from_json(model) for model in report["models"]]
