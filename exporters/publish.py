"""Publishes an exported run as serving version N: Triton models and ensemble, then the bundle,
checked in Triton, then made current; under the publishing lock, crash-safe and idempotent."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from cinesync import bundle, versions
from cinesync.settings import Settings
from exporters import lifecycle, serving_bundle, triton_repository
from exporters.export_report import REPORT_FILE, read_report
from exporters.targets import export_target
from exporters.triton_check import VersionRejected, check_version
from recsys.pipeline import CASCADE, METRICS_FILE
from recsys.run import TrainedRun

log = logging.getLogger(__name__)
RELEASED = ".released"  # in a bundle folder: the version passed its check and was made current once


def published_version(repository: Path, serving_dir: Path, key: dict[str, str]) -> int | None:
    """The whole version already published from this export (a redelivered publish finds it)."""
    for version in versions.whole_versions(repository, serving_dir):
        manifest = json.loads((Path(serving_dir) / str(version) / bundle.MANIFEST).read_text())
        if all(manifest.get(field) == value for field, value in key.items()):
            return version
    return None


def publish(run: TrainedRun, export_dir: Path, settings: Settings, *, make_current: bool = True) -> int:
    """Write version N of the Triton models and of the serving bundle, check it in the Triton at
    ``settings.triton_url`` (when set), make it current (unless not ``make_current``: an experiment's
    challenger) and retire versions beyond the newest
    ``settings.retained_versions``. FAISS retrievers are built here (``settings.faiss_*``).

    Publishing the same export of the same run's fit again returns its existing version. A version Triton rejects is
    deleted and never becomes current (VersionRejected).
    """
    repository, serving_dir = settings.model_repository.resolve(), settings.serving_dir
    with versions.publishing_lock(serving_dir):
        removed = lifecycle.sweep(repository, serving_dir)
        if removed:
            log.warning("removed half-written versions %s left by an interrupted publish", removed)
        report_text = (export_dir / REPORT_FILE).read_text()
        # One export of one fit of one run is one version: a redelivered publish finds it again.
        key = {"run_id": run.manifest["run_id"], "fitted_on": run.fitted_on,
               "export_digest": hashlib.sha256(report_text.encode()).hexdigest()}
        version = published_version(repository, serving_dir, key)
        if version is None:
            report = json.loads(report_text)
            target = export_target(settings.triton_target)
            target.check_available()  # before a number is handed out
            version = lifecycle.allocate_version(repository, serving_dir)
            families = triton_repository.write_version(
                repository, version, models=read_report(export_dir), export_dir=export_dir, target=target,
                scheduling=triton_repository.Scheduling(settings.triton_instances, settings.triton_queue_delay_us),
            )
            metrics_path = run.folder / METRICS_FILE
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
            serving_bundle.write_bundle(
                serving_dir,
                version,
                run=run,
                exact_below=settings.faiss_exact_below,
                recall_target=settings.faiss_recall_target,
                extra_manifest={
                    "export_digest": key["export_digest"],
                    "triton_target": settings.triton_target,
                    "triton_models": families,
                    "kinds": run.manifest["kinds"],
                    "export": report,
                    # Offline figures are always the evaluated fit's, also for a version refit on everything.
                    "metrics": metrics,
                    "served_metrics": (metrics or {}).get(CASCADE),
                },
            )
        released = Path(serving_dir) / str(version) / RELEASED
        if released.exists():
            return version  # a redelivered publish: made current once already; later promotions stand
        if settings.triton_url:
            try:
                check_version(settings.triton_url, repository, version)
            except VersionRejected:
                lifecycle.remove_version(repository, serving_dir, version)  # never current: nothing serves it
                raise
        if not make_current:
            return version
        released.touch()
        versions.point_current(serving_dir, version)
        retired = lifecycle.retain(repository, serving_dir, keep=settings.retained_versions)
        if retired:
            log.info("retired versions %s (keeping the newest %d and the current one)", retired,
                     settings.retained_versions)
    return version

