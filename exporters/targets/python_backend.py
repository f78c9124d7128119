"""Target 'python': ONNX Runtime inside Triton's python backend, for the Triton bundled in
nvidia-pytriton (python backend only). Each version folder holds model.onnx and model.py."""

from __future__ import annotations

import os
import shutil
import site
from pathlib import Path
from typing import ClassVar

from tritonclient.grpc import model_config_pb2 as mc

from exporters.targets.base import ExportTarget, Precision

RUNNER = Path(__file__).resolve().parent.parent / "triton_models" / "onnx_runner" / "model.py"


class PythonBackendTarget(ExportTarget):
    """ONNX Runtime (CPU) called from a python-backend model."""

    name: ClassVar[str] = "python"

    def configure(self, config: mc.ModelConfig, *, precision: Precision) -> None:
        """Run ``config`` in the python backend on the CPU, finding this installation's packages."""
        del precision  # ONNX Runtime runs the QDQ model as it is
        config.backend = "python"
        # The python backend stub runs Python isolated: the models find numpy/onnxruntime here.
        config.parameters["extra_sys_path"].string_value = os.pathsep.join(site.getsitepackages())
        config.parameters["threads"].string_value = "1"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)

    def write_model(self, onnx_path: Path, model_dir: Path, *, precision: Precision) -> None:
        del precision
        shutil.copy2(onnx_path, model_dir / "model.onnx")
        shutil.copy2(RUNNER, model_dir / "model.py")
