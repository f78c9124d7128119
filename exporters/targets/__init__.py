"""Export targets by name: one file each, registered here."""

from __future__ import annotations

from exporters.targets.base import ExportTarget, Precision, TargetUnavailable
from exporters.targets.onnxruntime import OnnxRuntimeTarget
from exporters.targets.python_backend import PythonBackendTarget
from exporters.targets.tensorrt_plan import TensorRtTarget

TARGETS: dict[str, type[ExportTarget]] = {t.name: t for t in (PythonBackendTarget, OnnxRuntimeTarget, TensorRtTarget)}


def export_target(name: str) -> ExportTarget:
    """The target registered as ``name``; a ValueError lists the known ones."""
    try:
        return TARGETS[name]()
    except KeyError:
        raise ValueError(f"unknown Triton target {name!r}; known: {', '.join(sorted(TARGETS))}") from None


__all__ = ["TARGETS", "ExportTarget", "Precision", "TargetUnavailable", "export_target"]
