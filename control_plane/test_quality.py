"""The online quality gauges over a window of answers, for a small hand-made bundle."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from cinesync.drift import DriftReference
from control_plane.bundle import CatalogItem, ServingBundle
from control_plane.quality import MIN_ANSWERS, QualityCollector, QualityWindow, ServedAnswer


def _bundle(reference: DriftReference | None) -> ServingBundle:
    items = [CatalogItem(f"i{n}", f"t{n}", (), None, "movie") for n in range(10)]
    return ServingBundle(
        version=3, manifest={}, items=items, item_index={i.item_id: n for n, i in enumerate(items)}, user_index={},
        histories=[np.zeros(0, dtype=np.int64)] * 4, popularity=np.array([4, 2, 1, 1, 0, 0, 0, 0, 0, 0], np.float32),
        item_domains=np.array(["movie"] * 10), retrievers=[], depth=10, history_length=50, encoders=[],
        ranking_vectors=[], group_tilt=0.0, drift_reference=reference,
    )


def _gauges(collector: QualityCollector) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {(family.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in collector.collect() for sample in family.samples}


def test_the_window_gives_coverage_popularity_novelty_and_shares_per_version() -> None:
    window = QualityWindow(3)

    def answer(items: list[int], *, history: int = 5, cold_start: bool = False, degraded: bool = False) -> ServedAnswer:
        return ServedAnswer(3, np.array(items), None, history, cold_start, degraded)

    window.observe(answer([9, 9]))  # pushed out by the next three
    window.observe(answer([0, 1]))
    window.observe(answer([0, 2], history=9, degraded=True))
    window.observe(answer([0, 3], cold_start=True))
    gauges = _gauges(QualityCollector(window, lambda version: _bundle(None) if version == 3 else None))
    tag = (("version", "3"),)
    shares = np.array([4, 2, 4, 1, 4, 1]) / 4
    assert gauges[("cinesync_quality_window_answers", tag)] == 3
    assert gauges[("cinesync_quality_catalog_coverage", tag)] == pytest.approx(0.4)
    assert gauges[("cinesync_quality_mean_popularity", tag)] == pytest.approx(shares.mean())
    assert gauges[("cinesync_quality_novelty", tag)] == pytest.approx(-np.log2(shares).mean())
    assert gauges[("cinesync_quality_cold_start_share", tag)] == pytest.approx(1 / 3)
    assert gauges[("cinesync_quality_degraded_share", tag)] == pytest.approx(1 / 3)
    assert gauges[("cinesync_quality_mean_history_length", tag)] == pytest.approx(7)  # cold-start left out
    assert not [key for key in gauges if key[0] == "cinesync_drift_psi"]  # no reference
    assert _gauges(QualityCollector(window, lambda version: None)) == {}  # an unloaded version's answers


def test_drift_is_reported_per_feature_once_enough_answers_arrived() -> None:
    rng = np.random.default_rng(1)
    reference = DriftReference.of({"score": rng.normal(0, 1, 1000), "history_length": rng.integers(5, 50, 1000),
                                   "popularity": np.log1p(rng.integers(0, 5, 1000))}, requests=100)
    window = QualityWindow(1000)
    collector = QualityCollector(window, lambda version: _bundle(reference))
    for n in range(MIN_ANSWERS):
        window.observe(ServedAnswer(3, rng.integers(0, 10, 10), rng.normal(3, 1, 10).astype(np.float32),
                                    history_length=2, cold_start=False, degraded=False))
        drift = {dict(labels)["feature"]: value for (name, labels), value in _gauges(collector).items()
                 if name == "cinesync_drift_psi"}
        assert bool(drift) == (n + 1 >= MIN_ANSWERS)
    assert drift["score"] > 0.2 and drift["history_length"] > 0.2 and not math.isnan(drift["popularity"])
