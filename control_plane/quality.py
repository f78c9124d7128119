"""Online quality of the served answers: a sliding window of the last answers and, at each scrape,
per model version, what they were (catalog coverage, mean popularity, novelty, share cold-start and
degraded, mean history length) and how far they drifted from the version's publish-time reference
(population stability index per feature, cinesync/drift.py)."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from prometheus_client.core import GaugeMetricFamily, Metric

from control_plane.bundle import ServingBundle

MIN_ANSWERS = 50  # fewer answers of a version in the window: no drift figure (too noisy)


@dataclass(frozen=True)
class ServedAnswer:
    """What one Recommend answered: the version, item indices, the fusion's scores (None unless
    Triton ranked it), the history length the models read, and how it was served."""

    version: int
    items: NDArray[np.int64]
    scores: NDArray[np.float32] | None
    history_length: int
    cold_start: bool
    degraded: bool


class QualityWindow:
    """The last ``size`` answers (appended from the event loop, read by the scraping thread)."""

    def __init__(self, size: int) -> None:
        self.answers: deque[ServedAnswer] = deque(maxlen=size)
        self._lock = threading.Lock()

    def observe(self, answer: ServedAnswer) -> None:
        with self._lock:
            self.answers.append(answer)

    def snapshot(self) -> list[ServedAnswer]:
        with self._lock:
            return list(self.answers)


def _drift_values(bundle: ServingBundle, answers: list[ServedAnswer]) -> dict[str, NDArray[np.float64]]:
    """Each drift feature's values in ``answers`` (cold-start answers excluded: no model answered)."""
    modelled = [a for a in answers if not a.cold_start]
    ranked = [a.scores for a in modelled if a.scores is not None and len(a.scores)]
    items = np.concatenate([a.items for a in modelled]) if modelled else np.zeros(0, dtype=np.int64)
    return {
        "score": np.concatenate(ranked).astype(np.float64) if ranked else np.zeros(0),
        "history_length": np.array([a.history_length for a in modelled], dtype=np.float64),
        "popularity": np.log1p(bundle.popularity[items].astype(np.float64)),
    }


class QualityCollector:
    """Prometheus gauges over ``window``, per version of the answers it holds; ``bundles`` gives a
    loaded version's bundle (None once it is unloaded: its answers are then skipped)."""

    def __init__(self, window: QualityWindow, bundles: Callable[[int], ServingBundle | None]) -> None:
        self.window = window
        self.bundles = bundles

    def collect(self) -> Iterator[Metric]:
        answers = self.window.snapshot()
        label = ["version"]
        gauges = {
            "answers": GaugeMetricFamily("cinesync_quality_window_answers", "Answers of the version in the "
                                         "quality window (the window holds the last CINESYNC_QUALITY_WINDOW)", labels=label),
            "coverage": GaugeMetricFamily("cinesync_quality_catalog_coverage", "Share of the catalog that the window's "
                                          "answers recommended at least once", labels=label),
            "popularity": GaugeMetricFamily("cinesync_quality_mean_popularity", "Mean share of training users who "
                                            "had watched a recommended item", labels=label),
            "novelty": GaugeMetricFamily("cinesync_quality_novelty", "Mean -log2 of that share (higher: less "
                                         "popular items)", labels=label),
            "cold_start": GaugeMetricFamily("cinesync_quality_cold_start_share", "Share of answers that were "
                                            "cold-start (no known history)", labels=label),
            "degraded": GaugeMetricFamily("cinesync_quality_degraded_share", "Share of answers flagged degraded",
                                          labels=label),
            "history": GaugeMetricFamily("cinesync_quality_mean_history_length", "Mean history length the models "
                                         "read, personalised answers", labels=label),
        }
        drift = GaugeMetricFamily("cinesync_drift_psi", "Population stability index of the window's answers "
                                  "against the version's publish-time reference, by feature (0.1: some change, "
                                  "0.2: significant)", labels=["version", "feature"])
        by_version: dict[int, list[ServedAnswer]] = {}
        for answer in answers:
            by_version.setdefault(answer.version, []).append(answer)
        for version, served in sorted(by_version.items()):
            bundle = self.bundles(version)
            if bundle is None:
                continue
            tag = [str(version)]
            users = max(len(bundle.histories), 1)
            items = np.concatenate([a.items for a in served])
            share = bundle.popularity[items].astype(np.float64) / users
            modelled = [a.history_length for a in served if not a.cold_start]
            figures = {
                "answers": len(served),
                "coverage": len(np.unique(items)) / max(len(bundle.items), 1),
                "popularity": float(share.mean()) if len(share) else 0.0,
                "novelty": float(-np.log2(np.maximum(share, 1 / users)).mean()) if len(share) else 0.0,
                "cold_start": sum(a.cold_start for a in served) / len(served),
                "degraded": sum(a.degraded for a in served) / len(served),
                "history": float(np.mean(modelled)) if modelled else 0.0,
            }
            for name, value in figures.items():
                gauges[name].add_metric(tag, value)
            reference = bundle.drift_reference
            if reference is None or len(served) < MIN_ANSWERS:
                continue
            for feature, values in _drift_values(bundle, served).items():
                value = reference.features[feature].psi(values) if feature in reference.features else math.nan
                if not math.isnan(value):
                    drift.add_metric([tag[0], feature], value)
        yield from (*gauges.values(), drift)
