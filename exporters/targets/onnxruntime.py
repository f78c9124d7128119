"""Target 'stock': the stock Triton container's onnxruntime_onnx platform, with Triton's TensorRT
execution accelerator (FP16 for fp32 models; INT8 for QDQ models, whose scales TensorRT takes as
explicit quantization). The accelerator only acts where Triton places the model on a GPU; without
one, ONNX Runtime runs on the CPU. Each version folder holds model.onnx."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from tritonclient.grpc import model_config_pb2 as mc

from exporters.targets.base import ExportTarget, Precision

WORKSPACE_BYTES = 1 << 30


class OnnxRuntimeTarget(ExportTarget):
    """platform onnxruntime_onnx, TensorRT-accelerated on GPUs."""

    name: ClassVar[str] = "stock"

    def configure(self, config: mc.ModelConfig, *, precision: Precision) -> None:
        config.platform = "onnxruntime_onnx"
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = "INT8" if precision == "int8" else "FP16"
        accelerator.parameters["max_workspace_size_bytes"] = str(WORKSPACE_BYTES)

    def write_model(self, onnx_path: Path, model_dir: Path, *, precision: Precision) -> None:
        del precision
        shutil.copy2(onnx_path, model_dir / "model.onnx")
