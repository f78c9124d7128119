"""Publishing lifecycle on disk: locked numbering, idempotent redelivery, crash recovery, retention,
promote and roll back."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from cinesync import versions
from cinesync.bundle import MANIFEST, current_version
from cinesync.settings import Settings
from cinesync.triton import ensemble_model
from exporters import lifecycle
from exporters.publish import publish
from exporters.triton_repository import step_versions
from recsys.run import load_run


def clone_run(run_folder: Path, folder: Path) -> Path:
    """A copy of a finished run under another run id (another training of the same data, for tests)."""
    shutil.copytree(run_folder, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "run_id": folder.name}))
    return folder


@pytest.fixture(scope="module")
def runs(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [small_run, *(clone_run(small_run, root / f"run-{n}") for n in range(1, 5))]


def _publish(run: Path, onnx: Path, root: Path, *, keep: int = 10) -> int:
    return publish(load_run(run), onnx, Settings(home=root, model_repository=root / "repo", retained_versions=keep))


def test_concurrent_publishers_take_distinct_numbers(runs: list[Path], exported_run: Path, tmp_path: Path) -> None:
    published: list[int] = []
    threads = [threading.Thread(target=lambda r=run: published.append(_publish(r, exported_run, tmp_path)))
               for run in runs[:3]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(published) == [1, 2, 3]
    assert versions.whole_versions(tmp_path / "repo", tmp_path / "serving") == [1, 2, 3]


def test_publishing_the_same_fit_again_returns_its_version(runs: list[Path], exported_run: Path, tmp_path: Path) -> None:
    assert _publish(runs[0], exported_run, tmp_path) == 1
    assert _publish(runs[1], exported_run, tmp_path) == 2
    assert _publish(runs[0], exported_run, tmp_path) == 1  # a redelivered publish of run 0 ...
    assert current_version(tmp_path / "serving") == 2  # ... leaves the current version alone
    assert versions.whole_versions(tmp_path / "repo", tmp_path / "serving") == [1, 2]


def test_a_half_written_version_is_never_current_and_never_blocks_the_next(
    runs: list[Path], exported_run: Path, tmp_path: Path
) -> None:
    assert _publish(runs[0], exported_run, tmp_path) == 1
    assert _publish(runs[1], exported_run, tmp_path) == 2
    # A publisher died after moving the step models of version 2 and before its ensemble and bundle.
    shutil.rmtree(tmp_path / "repo" / ensemble_model(2))
    shutil.rmtree(tmp_path / "serving" / "2")
    (tmp_path / "serving" / "CURRENT").write_text("1\n")
    assert 2 in step_versions(tmp_path / "repo")
    assert versions.whole_versions(tmp_path / "repo", tmp_path / "serving") == [1]
    with pytest.raises(versions.UnknownVersion, match="version 2 is not published here; retained: \\[1\\]"):
        versions.promote(tmp_path / "repo", tmp_path / "serving", 2)
    assert _publish(runs[2], exported_run, tmp_path) == 3
    assert 2 not in step_versions(tmp_path / "repo"), "the half-written version was not swept"
    assert versions.whole_versions(tmp_path / "repo", tmp_path / "serving") == [1, 3]


def test_retention_keeps_the_newest_and_the_current(runs: list[Path], exported_run: Path, tmp_path: Path) -> None:
    for run in runs[:3]:
        _publish(run, exported_run, tmp_path, keep=2)
    repo, serving = tmp_path / "repo", tmp_path / "serving"
    assert versions.whole_versions(repo, serving) == [2, 3]
    assert versions.rollback(repo, serving) == (3, 2)
    _publish(runs[3], exported_run, tmp_path, keep=2)  # version 4 is current; 2 was current until now
    assert versions.whole_versions(repo, serving) == [3, 4]
    assert versions.promote(repo, serving, 3) == 4
    _publish(runs[4], exported_run, tmp_path, keep=1)  # publishing makes 5 current
    assert versions.whole_versions(repo, serving) == [5]
    assert sorted(step_versions(repo)) == [5] and not (serving / "3").exists()
    with pytest.raises(versions.UnknownVersion, match="no retained version older than 5"):
        versions.rollback(repo, serving)


def test_retention_spares_referenced_versions(runs: list[Path], exported_run: Path, tmp_path: Path) -> None:
    for run in runs[:3]:
        _publish(run, exported_run, tmp_path)
    repo, serving = tmp_path / "repo", tmp_path / "serving"
    with versions.publishing_lock(serving):
        assert lifecycle.retain(repo, serving, keep=1, referenced=frozenset({1})) == [2]
    assert versions.whole_versions(repo, serving) == [1, 3]
    versions.set_references(serving, "experiment-x", [3])
    _publish(runs[3], exported_run, tmp_path, keep=1)  # 4 is current, 3 referenced, 1 neither
    assert versions.whole_versions(repo, serving) == [3, 4]
    assert versions.referenced_versions(serving) == {3: ["experiment-x"]}
