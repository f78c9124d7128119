"""Publishes an exported run: a new Triton model version, then the control plane's serving bundle."""

from __future__ import annotations

import json
from pathlib import Path

from cinesync.settings import TritonTarget
from exporters import serving_bundle, triton_repository
from exporters.onnx_export import REPORT_FILE
from recsys.pipeline import METRICS_FILE
from recsys.run import TrainedRun


def next_version(repository: Path, serving_dir: Path) -> int:
    known = triton_repository.existing_versions(repository) + serving_bundle.existing_versions(serving_dir)
    return max(known, default=0) + 1


def publish(
    run: TrainedRun, export_dir: Path, *, repository: Path, serving_dir: Path, target: TritonTarget
) -> int:
    """Write version N of the Triton models and of the serving bundle; returns N."""
    version = next_version(repository, serving_dir)
    triton_repository.write_version(
        repository, version, members=[m.name for m in run.members],
        onnx_dir=export_dir, tables=run.tables, target=target,
    )
    metrics_path = run.folder / METRICS_FILE
    serving_bundle.write_bundle(
        serving_dir,
        version,
        run=run,
        extra_manifest={
            "triton_target": target,
            "kinds": run.manifest["kinds"],
            "export": json.loads((export_dir / REPORT_FILE).read_text()),
            # Offline figures are always the evaluated fit's, also for a version refit on everything.
            "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else None,
        },
    )
    return version
