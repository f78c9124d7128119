"""The drift reference's bins and the population stability index, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cinesync.drift import FLOOR, PSI_ALERT, PSI_WARN, DriftReference, Histogram, population_stability_index


def test_quantile_bins_hold_equal_shares_and_a_value_on_an_edge_goes_above_it() -> None:
    histogram = Histogram.of(np.arange(100), bins=4)
    assert histogram.edges == pytest.approx((24.75, 49.5, 74.25)) and histogram.shares == (0.25, 0.25, 0.25, 0.25)
    assert list(Histogram((1.0, 2.0), ()).shares_of([0, 1, 1.5, 2, 5])) == [0.2, 0.4, 0.4]
    assert Histogram.of([3, 3, 3, 3]).edges == (3.0,)  # repeated values: fewer bins
    with pytest.raises(ValueError, match="at least one value"):
        Histogram.of([])


def test_psi_is_zero_for_the_same_shares_and_matches_the_formula() -> None:
    expected, actual = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    assert population_stability_index(expected, expected) == 0.0
    assert population_stability_index(expected, actual) == pytest.approx(
        (0.2 - 0.5) * math.log(0.2 / 0.5) + (0.5 - 0.2) * math.log(0.5 / 0.2))
    assert population_stability_index(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
        2 * (1 - FLOOR) * math.log(1 / FLOOR))  # empty bins are floored, not infinite


def test_a_sample_of_the_reference_stays_below_the_warning_and_a_shifted_one_passes_the_alert() -> None:
    rng = np.random.default_rng(0)
    reference = Histogram.of(rng.normal(0, 1, 5000))
    assert reference.psi(rng.normal(0, 1, 2000)) < PSI_WARN
    assert reference.psi(rng.normal(0.8, 1, 2000)) > PSI_ALERT
    assert math.isnan(reference.psi([]))


def test_a_reference_round_trips_through_json() -> None:
    values: dict[str, list[float]] = {"score": [0.1, 0.5, 0.9], "history_length": [3, 5, 8], "popularity": [1, 2, 2.5]}
    reference = DriftReference.of(values, requests=3)
    assert DriftReference.from_json(reference.to_json()) == reference and reference.to_json()["psi_thresholds"] == [0.1, 0.2]
