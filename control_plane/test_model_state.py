"""The version watcher: a bundle it cannot serve is refused with a logged error and the version being
served stays; a later good version is still picked up."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from cinesync.bundle import ITEMS, current_version
from cinesync.settings import Settings
from control_plane.model_state import ModelState
from exporters.publish import publish
from exporters.test_lifecycle import clone_run
from recsys.run import load_run


def test_a_bad_bundle_is_refused_and_the_watcher_keeps_watching(
    small_run: Path, exported_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo")
    serving = settings.serving_dir
    first = publish(load_run(small_run), exported_run, settings)
    models = ModelState(serving, None)
    assert asyncio.run(models.refresh()) and models.state is not None and models.state.bundle.version == first
    broken = publish(load_run(clone_run(small_run, tmp_path / "second")), exported_run, settings)
    (serving / str(broken) / ITEMS).write_text("{not json")
    with caplog.at_level(logging.ERROR):
        assert asyncio.run(models.refresh())
    assert models.state.bundle.version == first and models.refused == {broken}
    assert f"refused model version {broken}, still serving {first}" in caplog.text
    shutil.rmtree(serving / str(broken))
    third = publish(load_run(clone_run(small_run, tmp_path / "third")), exported_run, settings)
    assert current_version(serving) == third != broken
    assert asyncio.run(models.refresh()) and models.state.bundle.version == third


def test_candidates_beyond_one_ranking_request_are_refused(small_run: Path, exported_run: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo")
    publish(load_run(small_run), exported_run, settings)
    models = ModelState(settings.serving_dir, None, candidates=4096)  # two retrievers: 8,192 candidates
    assert not asyncio.run(models.refresh()) and models.refused == {1}


class RecordingRanker:
    """Stands in for TritonRanker in this module's test: records loads and unloads, and whether the
    version's encoding ensemble was asked for too."""

    def __init__(self) -> None:
        self.loaded: set[int] = set()
        self.unloaded: list[int] = []
        self.encodes: dict[int, bool] = {}

    async def load(self, version: int, *, encodes: bool) -> None:
        self.loaded.add(version)
        self.encodes[version] = encodes

    async def unload(self, version: int, *, encodes: bool) -> None:
        assert encodes == self.encodes[version]
        self.loaded.discard(version)
        self.unloaded.append(version)

    async def ready(self, version: int, *, encodes: bool) -> bool:
        return version in self.loaded and encodes == self.encodes[version]


def test_an_ensemble_no_version_needs_is_unloaded_after_a_grace(
    small_run: Path, exported_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane import model_state

    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo")
    first = publish(load_run(small_run), exported_run, settings)
    ranker = RecordingRanker()
    models = ModelState(settings.serving_dir, ranker)  # type: ignore[arg-type]
    assert asyncio.run(models.refresh()) and ranker.loaded == {first}
    assert ranker.encodes == {first: True}  # the two-tower encodes histories: encode_<version> is loaded too
    second = publish(load_run(clone_run(small_run, tmp_path / "second")), exported_run, settings)
    assert asyncio.run(models.refresh()) and ranker.loaded == {first, second}  # in-flight requests may still use it
    assert ranker.unloaded == [] and first in models.evicted
    monkeypatch.setattr(model_state, "UNLOAD_GRACE_S", 0.0)
    asyncio.run(models.refresh())
    assert ranker.unloaded == [first] and ranker.loaded == {second}


def test_a_version_wanted_before_it_is_published_is_loaded_once_it_is(
    small_run: Path, exported_run: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo")
    models = ModelState(settings.serving_dir, None)
    models.wanted = {1}  # an experiment names version 1 before any publish
    assert not asyncio.run(models.refresh()) and models.refused == set()
    publish(load_run(small_run), exported_run, settings)
    assert asyncio.run(models.refresh()) and models.current == 1 and set(models.states) == {1}
