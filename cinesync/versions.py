"""Serving versions on disk, as every role sees them: which are whole, which is current, which are
referenced, the lock every change holds, and promotion. (Writing and deleting versions is the
exporters' business: exporters/lifecycle.py.)

A serving version N is whole when both halves exist: the bundle <serving>/N/ (cinesync.bundle) and
the ensemble ranking_N in the Triton repository (cinesync.triton), whose steps are pinned to version
N of each model. It is current when <serving>/CURRENT names it, and referenced while a file in
<serving>/refs/ names it (an experiment's variants do). Every change holds one file lock, shared by
every publisher and promoter on the machine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from cinesync import bundle, triton
from cinesync.bundle import current_version

LOCK_FILE = ".publish.lock"
LOCK_TIMEOUT_S = 600.0
REFS_DIR = "refs"


class UnknownVersion(LookupError):
    """A version that is not whole on disk (never published, retired, or half-written)."""


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, then a rename."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def version_folders(folder: Path) -> list[int]:
    """The integer-named subfolders of ``folder``, sorted; none when it does not exist."""
    folder = Path(folder)
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def ensemble_versions(repository: Path) -> list[int]:
    """Serving versions that have an ensemble in the repository."""
    repository = Path(repository)
    names = (p.name for p in repository.iterdir()) if repository.is_dir() else iter(())
    return sorted(v for v in map(triton.ensemble_version, names) if v is not None)


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


def point_current(serving_dir: Path, version: int) -> None:
    """Atomically make ``version`` the live one (call under the lock)."""
    replace_file(Path(serving_dir) / bundle.CURRENT, f"{version}\n")


def set_references(serving_dir: Path, holder: str, versions: Iterable[int]) -> None:
    """Record that ``holder`` (e.g. "experiment-x") uses ``versions``; none removes the record."""
    folder = Path(serving_dir) / REFS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    wanted = sorted(set(versions))
    if wanted:
        replace_file(folder / holder, " ".join(map(str, wanted)))
    else:
        (folder / holder).unlink(missing_ok=True)


def referenced_versions(serving_dir: Path) -> dict[int, list[str]]:
    """Every referenced version with the holders that reference it."""
    folder = Path(serving_dir) / REFS_DIR
    found: dict[int, list[str]] = {}
    for ref in sorted(folder.iterdir()) if folder.is_dir() else ():
        if ref.is_file() and not ref.name.endswith(".tmp"):
            for number in ref.read_text().split():
                found.setdefault(int(number), []).append(ref.name)
    return found


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
