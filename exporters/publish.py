"""Publishes an exported run as serving version N: Triton models and ensemble, then the bundle,
checked in Triton, then made current; under the publishing lock, crash-safe and idempotent."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cinesync import bundle
from cinesync.settings import TritonTarget
from exporters import lifecycle, serving_bundle, triton_repository
from exporters.onnx_export import REPORT_FILE
from exporters.triton_check import VersionRejected, check_version
from recsys.pipeline import CASCADE, METRICS_FILE
from recsys.run import TrainedRun

log = logging.getLogger(__name__)


def published_version(repository: Path, serving_dir: Path, run_id: str, fitted_on: str) -> int | None:
    """The whole version that already serves this run's fit (a redelivered publish finds it)."""
    for version in lifecycle.whole_versions(repository, serving_dir):
        manifest = json.loads((Path(serving_dir) / str(version) / bundle.MANIFEST).read_text())
        if manifest.get("run_id") == run_id and manifest.get("fitted_on") == fitted_on:
            return version
    return None


def publish(
    run: TrainedRun,
    export_dir: Path,
    *,
    repository: Path,
    serving_dir: Path,
    target: TritonTarget,
    triton_url: str | None,
    keep: int,
) -> int:
    """Write version N of the Triton models and of the serving bundle, check it in the Triton at
    ``triton_url`` (when given), make it current and retire versions beyond the newest ``keep``.

    Publishing the same run's fit again returns its existing version. A version Triton rejects is
    deleted and never becomes current (VersionRejected).
    """
    with lifecycle.publishing_lock(serving_dir):
        removed = lifecycle.sweep(repository, serving_dir)
        if removed:
            log.warning("removed half-written versions %s left by an interrupted publish", removed)
        version = published_version(repository, serving_dir, run.manifest["run_id"], run.fitted_on)
        if version is None:
            version = lifecycle.allocate_version(repository, serving_dir)
            families = triton_repository.write_version(
                repository, version, members=[m.name for m in run.members],
                onnx_dir=export_dir, tables=run.tables, target=target,
            )
            metrics_path = run.folder / METRICS_FILE
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
            serving_bundle.write_bundle(
                serving_dir,
                version,
                run=run,
                extra_manifest={
                    "triton_target": target,
                    "triton_models": families,
                    "kinds": run.manifest["kinds"],
                    "export": json.loads((export_dir / REPORT_FILE).read_text()),
                    # Offline figures are always the evaluated fit's, also for a version refit on everything.
                    "metrics": metrics,
                    "served_metrics": (metrics or {}).get(CASCADE),
                },
            )
        if triton_url:
            try:
                check_version(triton_url, repository, version)
            except VersionRejected:
                lifecycle.remove_version(repository, serving_dir, version)
                raise
        lifecycle.point_current(serving_dir, version)
        retired = lifecycle.retain(repository, serving_dir, keep=keep)
        if retired:
            log.info("retired versions %s (keeping the newest %d and the current one)", retired, keep)
    return version

