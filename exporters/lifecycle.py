"""Writing and deleting serving versions (what versions are: cinesync.versions): number
allocation, sweeping what a crashed publish left, and retention. Call these under
cinesync.versions.publishing_lock, so numbers are never taken twice and nothing is deleted while
another process writes."""

from __future__ import annotations

import shutil
from pathlib import Path

from cinesync import triton
from cinesync.bundle import current_version
from cinesync.versions import (
    ensemble_versions,
    referenced_versions,
    replace_file,
    version_folders,
    whole_versions,
)
from exporters.triton_repository import step_versions

LAST_NUMBER_FILE = ".last-version"  # numbers of rejected or swept versions are never given out again


def allocate_version(repository: Path, serving_dir: Path) -> int:
    """A number never given out before: one above every number in use or handed out (call under the lock)."""
    record = Path(serving_dir) / LAST_NUMBER_FILE
    handed_out = int(record.read_text()) if record.is_file() else 0
    used = [*version_folders(serving_dir), *ensemble_versions(repository), *step_versions(repository)]
    version = max([handed_out, *used]) + 1
    replace_file(record, str(version))
    return version


def remove_version(repository: Path, serving_dir: Path, version: int) -> None:
    """Delete every trace of ``version``: the ensemble first, so it stops being whole at once."""
    shutil.rmtree(Path(repository) / triton.ensemble_model(version), ignore_errors=True)
    shutil.rmtree(Path(repository) / triton.encoder_ensemble(version), ignore_errors=True)
    shutil.rmtree(Path(serving_dir) / str(version), ignore_errors=True)
    for folder in step_versions(repository).get(version, []):
        shutil.rmtree(folder, ignore_errors=True)
        if not version_folders(folder.parent):
            shutil.rmtree(folder.parent, ignore_errors=True)


def sweep(repository: Path, serving_dir: Path) -> list[int]:
    """Remove what a crashed publish left: staging folders and versions that are not whole
    (call under the lock, when no publish is half-way). Returns the versions removed."""
    repository, serving_dir = Path(repository), Path(serving_dir)
    shutil.rmtree(repository.parent / f".{repository.name}.staging", ignore_errors=True)
    for staging in serving_dir.glob(".staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    whole = set(whole_versions(repository, serving_dir))
    partial = {*version_folders(serving_dir), *ensemble_versions(repository), *step_versions(repository)} - whole
    for version in sorted(partial):
        remove_version(repository, serving_dir, version)
    return sorted(partial)


def retain(repository: Path, serving_dir: Path, *, keep: int, referenced: frozenset[int] = frozenset()) -> list[int]:
    """Delete whole versions beyond the newest ``keep``, never the current one, one in ``referenced``
    or one something references (cinesync.versions.referenced_versions). Returns the versions deleted."""
    protected = {*referenced, *referenced_versions(serving_dir), current_version(serving_dir)}
    whole = whole_versions(repository, serving_dir)
    retired = [v for v in whole[: max(len(whole) - keep, 0)] if v not in protected]
    for version in retired:
        remove_version(repository, serving_dir, version)
    return retired


