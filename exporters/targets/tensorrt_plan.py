"""Target 'tensorrt': a TensorRT engine per model (platform tensorrt_plan) built from the ONNX model
on this machine's GPU, FP16, or INT8 from a QDQ model (explicit quantization). Needs the
``tensorrt`` package and a CUDA GPU; an engine is only valid for the GPU and TensorRT version that
built it. Each version folder holds model.plan."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from tritonclient.grpc import model_config_pb2 as mc

from cinesync import triton
from exporters.targets.base import ExportTarget, Precision, TargetUnavailable

WORKSPACE_BYTES = 1 << 30
OPTIMAL_BATCH = 256


def build_engine(onnx_path: Path, plan_path: Path, *, precision: Precision, max_batch: int) -> None:
    """Parse ``onnx_path`` and write a serialised engine with one profile from batch 1 to ``max_batch``."""
    trt: Any = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # the QDQ nodes carry the scales
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]  # -1: the candidate axis, 1 to MAX_CANDIDATES
        low, middle, high = ([size if size >= 0 else bound for size in rest] for bound in (1, 256, triton.MAX_CANDIDATES))
        profile.set_shape(tensor.name, (1, *low), (min(OPTIMAL_BATCH, max_batch), *middle), (max_batch, *high))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT could not build an engine for {onnx_path.name}")
    plan_path.write_bytes(bytes(engine))


def cuda_gpus() -> int:
    """GPUs the CUDA driver reports, 0 without a driver (nvidia-smi is the probe)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return listed.stdout.count("GPU ") if listed.returncode == 0 else 0


class TensorRtTarget(ExportTarget):
    """Serialized TensorRT engines, run on the GPU."""

    name: ClassVar[str] = "tensorrt"

    def check_available(self) -> None:
        missing = []
        if importlib.util.find_spec("tensorrt") is None:
            missing.append("the tensorrt package is not installed")
        if not cuda_gpus():
            missing.append("no CUDA GPU is visible (nvidia-smi -L)")
        if missing:
            raise TargetUnavailable(
                f"triton target 'tensorrt' needs TensorRT and a GPU: {'; '.join(missing)}. "
                "Use CINESYNC_TRITON_TARGET=stock to let the stock container's onnxruntime backend "
                "accelerate with TensorRT where a GPU is present."
            )

    def configure(self, config: mc.ModelConfig, *, precision: Precision) -> None:
        del precision  # fixed in the engine
        config.platform = "tensorrt_plan"
        config.default_model_filename = "model.plan"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)

    def write_model(self, onnx_path: Path, model_dir: Path, *, precision: Precision) -> None:
        build_engine(onnx_path, model_dir / "model.plan", precision=precision, max_batch=triton.MAX_BATCH_SIZE)
