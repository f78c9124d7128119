"""Experiment statistics against independent computations: Welch's test as scipy computes it, the
delta method against a bootstrap, CUPED's θ as the least-squares slope, Holm's known values,
GrowthBook's confidence sequence, and A/A calibration on simulated repeat visitors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from control_plane.experiments.definition import Experiment, Variant
from control_plane.experiments.report import build_report
from control_plane.experiments.statistics import (
    FIXED,
    SEQUENTIAL,
    ArmSums,
    MetricResult,
    analyse,
    compare,
    cuped_theta,
    estimate,
    holm,
    ready,
    sequential_halfwidth,
    sequential_p_value,
    sequential_rho,
    srm_p_value,
)


def _users(rng: np.random.Generator, n: int, *, lift: float = 0.0) -> dict[str, Any]:
    """Repeat visitors with heterogeneous propensities and a pre-period that predicts them."""
    activity = rng.exponential(7.0, n)
    click_p, watch_p = rng.beta(0.5, 4.5, n), np.minimum(rng.beta(2, 2, n) * (1 + lift), 1)
    exposures = 1 + rng.poisson(activity)
    clicks = rng.binomial(exposures, click_p)
    pre = rng.binomial(rng.binomial(rng.poisson(activity), click_p), watch_p / (1 + lift))
    return {"exposures": exposures, "clicks": clicks, "watches": rng.binomial(clicks, watch_p), "covariate": pre}


def _metric(results: list[MetricResult], metric: str) -> Any:
    return next(r for r in results if r.metric == metric)


def test_sums_and_covariances_match_the_users() -> None:
    users = _users(np.random.default_rng(1), 300)
    sums = ArmSums.of_users(**users)
    watched = (users["watches"] > 0).astype(int)
    assert (sums.n, sums.m, sums.d, sums.w) == (300, users["exposures"].sum(), users["watches"].sum(), watched.sum())
    assert sums.cov("d", "m") == pytest.approx(np.cov(users["watches"], users["exposures"])[0, 1])
    assert sums.cov("w", "x") == pytest.approx(np.cov(watched, users["covariate"])[0, 1])
    assert (sums + sums).n == 600
    assert ArmSums.from_mapping({"n": "3", "d": "2", "other": "9"}) == ArmSums(n=3, d=2)


def test_a_mean_metric_is_welchs_test() -> None:
    rng = np.random.default_rng(2)
    a, b = _users(rng, 400), _users(rng, 250, lift=0.3)
    found = compare(estimate(ArmSums.of_users(**b), "watches_per_user"),
                    estimate(ArmSums.of_users(**a), "watches_per_user"), analysis=FIXED)
    welch = stats.ttest_ind(b["watches"], a["watches"], equal_var=False)
    interval = welch.confidence_interval()
    assert found.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    assert found.low == pytest.approx(interval.low) and found.high == pytest.approx(interval.high)
    assert found.difference == pytest.approx(b["watches"].mean() - a["watches"].mean())


def test_the_delta_method_agrees_with_a_bootstrap_of_users() -> None:
    rng = np.random.default_rng(3)
    users = _users(rng, 500)
    found = estimate(ArmSums.of_users(**users), "watch_rate")
    assert found.value == pytest.approx(users["watches"].sum() / users["exposures"].sum())
    draws = rng.integers(0, 500, size=(4000, 500))
    rates = users["watches"][draws].sum(axis=1) / users["exposures"][draws].sum(axis=1)
    assert math.sqrt(found.variance) == pytest.approx(rates.std(), rel=0.08)
    # Treating exposures as independent trials understates the spread here (users differ and return).
    rate = found.value
    assert math.sqrt(rate * (1 - rate) / users["exposures"].sum()) < 0.75 * rates.std()


def test_cuped_theta_is_the_pooled_least_squares_slope_and_cuts_variance() -> None:
    rng = np.random.default_rng(4)
    a, b = _users(rng, 800), _users(rng, 800)
    arms = [ArmSums.of_users(**a), ArmSums.of_users(**b)]
    pooled = {k: np.concatenate([a[k], b[k]]) for k in a}
    slope = np.polyfit(pooled["covariate"], pooled["watches"], 1)[0]
    assert cuped_theta(arms, "watches_per_user") == pytest.approx(slope)
    result = _metric(analyse(arms)[1], "watches_per_user")
    adjusted = [u["watches"] - slope * u["covariate"] for u in (a, b)]
    assert result.cuped.difference == pytest.approx(adjusted[1].mean() - adjusted[0].mean())
    assert result.variance_reduction > 0.2 and result.cuped.std_error < result.unadjusted.std_error
    assert _metric(analyse(arms, cuped=False)[1], "watch_rate").cuped is None


def test_holm_and_srm_known_values() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    assert srm_p_value([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert srm_p_value([5200, 4800], [0.5, 0.5]) < 0.001


def test_the_sequential_interval_is_growthbooks_and_its_p_value_agrees_with_it() -> None:
    assert sequential_rho() == pytest.approx(math.sqrt((-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 5000))
    variance, users = 0.0004, 2000
    half = sequential_halfwidth(variance, users)
    assert half > 1.96 * math.sqrt(variance)  # wider than the fixed-horizon interval
    assert sequential_p_value(half * 0.99, variance, users) > 0.05 > sequential_p_value(half * 1.01, variance, users)
    rng = np.random.default_rng(5)
    arms = [ArmSums.of_users(**_users(rng, 600)), ArmSums.of_users(**_users(rng, 600, lift=0.5))]
    fixed, sequential = (_metric(analyse(arms, analysis=a)[1], "watch_rate").unadjusted for a in (FIXED, SEQUENTIAL))
    assert sequential.high - sequential.low > fixed.high - fixed.low and sequential.p_value > fixed.p_value
    assert fixed.significant and fixed.mde < sequential.mde


def test_a_a_experiments_are_called_significant_about_five_percent_of_the_time() -> None:
    rng = np.random.default_rng(6)
    fixed_hits = sequential_hits = per_exposure_hits = 0
    runs = 300
    for _ in range(runs):
        arms = [ArmSums.of_users(**_users(rng, 300)) for _ in range(2)]
        fixed_hits += _metric(analyse(arms)[1], "watch_rate").unadjusted.significant
        sequential_hits += _metric(analyse(arms, analysis=SEQUENTIAL)[1], "watch_rate").unadjusted.significant
        pooled = (arms[0].d + arms[1].d) / (arms[0].m + arms[1].m)
        z = (arms[1].d / arms[1].m - arms[0].d / arms[0].m) / math.sqrt(pooled * (1 - pooled) * (1 / arms[0].m + 1 / arms[1].m))
        per_exposure_hits += 2 * stats.norm.sf(abs(z)) < 0.05
    assert 0.02 <= fixed_hits / runs <= 0.09 and sequential_hits / runs <= 0.05
    assert per_exposure_hits / runs > 0.1  # what counting exposures as users did


def test_a_report_without_enough_users_says_so() -> None:
    experiment = Experiment(name="e", salt="e", variants=(Variant("a", 0.5, 1, 1), Variant("b", 0.5, 1, 0)))
    empty = build_report(experiment, {"a": ArmSums(), "b": ArmSums()}, unmatched=0)
    assert empty.note == "no exposures yet" and [v.users for v in empty.variants] == [0, 0]
    assert not empty.variants[0].metrics and empty.srm_p_value == 1.0
    assert ready([ArmSums(n=5, m=9), ArmSums(n=1, m=1)]).startswith("1 arm(s) have fewer than 2 users")
    rng = np.random.default_rng(7)
    full = build_report(experiment, {"a": ArmSums.of_users(**_users(rng, 50)), "b": ArmSums.of_users(**_users(rng, 50))}, 0)
    assert not full.note and len(full.variants[1].metrics) == 4 and full.variants[1].metrics[0].HasField("cuped")
    assert not full.variants[0].metrics[0].HasField("unadjusted")
