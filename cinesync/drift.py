"""Drift of served traffic against the reference a version was published with.

At publish the exporter writes, per feature, the quantile bins of what the version saw on validation
requests (bundle.DRIFT_REFERENCE): the fusion's scores of the answers it gave (``score``), the
history lengths the models read (``history_length``) and log(1 + training count) of the answered
items (``popularity``). The control plane bins its recent answers the same way; the population
stability index of the two shares is the drift gauge, read against Evidently's thresholds (0.1: some
change, 0.2: a significant one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FEATURES = ("score", "history_length", "popularity")
BINS = 10
PSI_WARN = 0.1
PSI_ALERT = 0.2
FLOOR = 1e-4  # a share below this counts as this (an empty bin would make the index infinite)


@dataclass(frozen=True)
class Histogram:
    """Bins cut at ``edges`` (inner edges, increasing; a value on an edge goes above it) and the
    reference's share in each of the len(edges) + 1 bins."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    @classmethod
    def of(cls, values: ArrayLike, bins: int = BINS) -> Histogram:
        """Quantile bins of ``values`` (fewer where values repeat) with their shares."""
        data = np.asarray(values, dtype=np.float64)
        if not len(data):
            raise ValueError("a reference needs at least one value")
        edges = np.unique(np.quantile(data, np.linspace(0, 1, bins + 1)[1:-1]))
        histogram = cls(tuple(float(e) for e in edges), ())
        return cls(histogram.edges, tuple(float(s) for s in histogram.shares_of(data)))

    def shares_of(self, values: ArrayLike) -> NDArray[np.float64]:
        """The share of ``values`` in each bin."""
        data = np.asarray(values, dtype=np.float64)
        counts = np.bincount(np.searchsorted(np.asarray(self.edges), data, side="right"), minlength=len(self.edges) + 1)
        return counts / max(len(data), 1)

    def psi(self, values: ArrayLike) -> float:
        """The population stability index of ``values`` against the reference (NaN without values)."""
        if not len(np.asarray(values)):
            return math.nan
        return population_stability_index(np.asarray(self.shares), self.shares_of(values))


def population_stability_index(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """Σ (actual − expected) · ln(actual / expected) over bins, shares floored at FLOOR."""
    e, a = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReference:
    """A version's reference: a histogram per feature of FEATURES, and how many requests made it."""

    features: Mapping[str, Histogram]
    requests: int

    @classmethod
    def of(cls, values: Mapping[str, ArrayLike], *, requests: int) -> DriftReference:
        return cls({name: Histogram.of(values[name]) for name in FEATURES}, requests)

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "psi_thresholds": [PSI_WARN, PSI_ALERT],
                "features": {name: {"edges": list(h.edges), "shares": list(h.shares)} for name, h in self.features.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftReference:
        return cls({name: Histogram(tuple(h["edges"]), tuple(h["shares"])) for name, h in data["features"].items()},
                   int(data["requests"]))

    @classmethod
    def load(cls, path: Path) -> DriftReference | None:
        """The reference at ``path``, None where a version was published without one."""
        return cls.from_json(json.loads(path.read_text())) if path.is_file() else None
