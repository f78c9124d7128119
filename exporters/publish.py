"""Publishes an exported run: a new Triton model version, then the control plane's serving bundle."""

from __future__ import annotations

import json
from pathlib import Path

from cinesync.settings import TritonTarget
from exporters import serving_bundle, triton_repository
from exporters.onnx_export import REPORT_FILE, all_item_inputs, all_user_inputs, onnx_embeddings
from recsys.pipeline import METRICS_FILE
from recsys.run import TrainedRun


def next_version(repository: Path, serving_dir: Path) -> int:
    known = triton_repository.existing_versions(repository) + serving_bundle.existing_versions(serving_dir)
    return max(known, default=0) + 1


def publish(
    run: TrainedRun, export_dir: Path, *, repository: Path, serving_dir: Path, target: TritonTarget
) -> int:
    """Write version N of the Triton models and of the serving bundle; returns N.

    Embeddings in the bundle come from the exported ONNX towers, so serving uses exactly what
    was checked for parity.
    """
    version = next_version(repository, serving_dir)
    triton_repository.write_version(
        repository, version, ranker_onnx=export_dir / "ranker.onnx", tables=run.tables, target=target
    )
    metrics_path = run.folder / METRICS_FILE
    serving_bundle.write_bundle(
        serving_dir,
        version,
        run=run,
        user_embeddings=onnx_embeddings(export_dir / "user_tower.onnx", all_user_inputs(run)),
        item_embeddings=onnx_embeddings(export_dir / "item_tower.onnx", all_item_inputs(run)),
        extra_manifest={
            "triton_target": target,
            "export": json.loads((export_dir / REPORT_FILE).read_text()),
            "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else None,
        },
    )
    return version
