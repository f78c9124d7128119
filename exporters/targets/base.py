"""The export-target interface: how a Triton model config runs an ONNX model, and which files its
version folder holds. One target per file, registered in exporters/targets/__init__.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Literal

from tritonclient.grpc import model_config_pb2 as mc

Precision = Literal["fp32", "int8"]


class TargetUnavailable(RuntimeError):
    """The target cannot be built on this machine; the message says what is missing."""


class ExportTarget(ABC):
    """Where and how the ranking models run in Triton."""

    name: ClassVar[str]

    def check_available(self) -> None:
        """Raise TargetUnavailable when this machine cannot produce the target's files."""

    @abstractmethod
    def configure(self, config: mc.ModelConfig, *, precision: Precision) -> None:
        """Set the platform or backend, placement and accelerators of an ONNX model's config."""

    @abstractmethod
    def write_model(self, onnx_path: Path, model_dir: Path, *, precision: Precision) -> None:
        """Put what the version folder needs to run ``onnx_path`` into ``model_dir``."""
