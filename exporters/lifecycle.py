"""Serving versions on disk: which exist, which is current, promotion, retention and the lock.

A serving version N is whole when both halves exist: the bundle <serving>/N/ and the ensemble
ranking_N in the Triton repository (whose steps are pinned to version N of each model). It is
current when <serving>/CURRENT names it. Every change here holds one file lock, shared by every
publisher and promoter on the machine, so numbers are never taken twice and nothing is deleted
while another process writes. Imports no torch, so the control plane's admin API can call it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from cinesync import bundle, triton
from cinesync.bundle import current_version
from exporters.files import replace_file, version_folders
from exporters.triton_repository import ensemble_versions, step_versions

LOCK_FILE = ".publish.lock"
LAST_NUMBER_FILE = ".last-version"  # numbers of rejected or swept versions are never given out again
LOCK_TIMEOUT_S = 600.0


class UnknownVersion(LookupError):
    """A version that is not whole on disk (never published, retired, or half-written)."""


@contextmanager
def publishing_lock(serving_dir: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the machine-wide lock of this serving folder and its repository."""
    serving_dir = Path(serving_dir)
    serving_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(serving_dir / LOCK_FILE, timeout=timeout):
        yield


def whole_versions(repository: Path, serving_dir: Path) -> list[int]:
    """Versions with both a bundle manifest and an ensemble, oldest first."""
    bundles = {v for v in version_folders(serving_dir) if (Path(serving_dir) / str(v) / bundle.MANIFEST).is_file()}
    return sorted(bundles & set(ensemble_versions(repository)))


def allocate_version(repository: Path, serving_dir: Path) -> int:
    """A number never given out before: one above every number in use or handed out (call under the lock)."""
    record = Path(serving_dir) / LAST_NUMBER_FILE
    handed_out = int(record.read_text()) if record.is_file() else 0
    used = [*version_folders(serving_dir), *ensemble_versions(repository), *step_versions(repository)]
    version = max([handed_out, *used]) + 1
    replace_file(record, str(version))
    return version


def point_current(serving_dir: Path, version: int) -> None:
    """Atomically make ``version`` the live one (call under the lock)."""
    replace_file(Path(serving_dir) / bundle.CURRENT, f"{version}\n")


def remove_version(repository: Path, serving_dir: Path, version: int) -> None:
    """Delete every trace of ``version``: the ensemble first, so it stops being whole at once."""
    shutil.rmtree(Path(repository) / triton.ensemble_model(version), ignore_errors=True)
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
    """Delete whole versions beyond the newest ``keep``, never the current one or one in
    ``referenced`` (call under the lock). Returns the versions deleted."""
    protected = {*referenced, current_version(serving_dir)}
    whole = whole_versions(repository, serving_dir)
    retired = [v for v in whole[: max(len(whole) - keep, 0)] if v not in protected]
    for version in retired:
        remove_version(repository, serving_dir, version)
    return retired


def promote(repository: Path, serving_dir: Path, version: int) -> int | None:
    """Make a retained ``version`` current; returns the version it replaced."""
    with publishing_lock(serving_dir):
        whole = whole_versions(repository, serving_dir)
        if version not in whole:
            raise UnknownVersion(f"version {version} is not published here; retained: {whole or 'none'}")
        previous = current_version(serving_dir)
        point_current(serving_dir, version)
        return previous


def rollback(repository: Path, serving_dir: Path) -> tuple[int | None, int]:
    """Make the newest retained version older than the current one current: (previous, new)."""
    with publishing_lock(serving_dir):
        current = current_version(serving_dir)
        older = [v for v in whole_versions(repository, serving_dir) if current is None or v < current]
        if not older:
            raise UnknownVersion(f"no retained version older than {current} to roll back to")
        point_current(serving_dir, older[-1])
        return current, older[-1]
