"""Experiment statistics by the randomised unit, the user, from per-arm sums.

Each user contributes exposures ``m``, clicked answers ``c``, watched answers ``d``, whether they
watched at all ``w`` and a pre-exposure covariate ``x`` (their watches in a window before their first
exposure). An arm is summarised by ``n`` and the sums of these and of their products (ArmSums), so a
report never reads users one by one. Metrics are either ratios of per-user sums (click and watch
rate: Σc / Σm, with the delta method's variance, Deng et al. 2018) or per-user means (share of users
who watch, watches per user). Each arm is compared with the control (the first arm):

- fixed horizon: Welch's t interval and p-value (Satterthwaite degrees of freedom);
- sequential: the asymptotic confidence sequence of Waudby-Smith et al. (2023, eq. 9), as GrowthBook
  computes it, with the always-valid p-value of its normal mixture (reject at any look once p < α);
- CUPED (Deng et al. 2013): the per-user (linearised) metric minus θ·x, θ estimated on all arms
  pooled, reported beside the unadjusted comparison with the variance reduction it achieved;
- Holm's step-down correction across the arms compared with the control, per metric;
- the minimum detectable effect at the current sample (80 % power).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

ALPHA = 0.05
POWER = 0.8
SEQUENTIAL_TUNING = 5000.0  # GrowthBook's default: the confidence sequence is tightest near this many users
FIXED, SEQUENTIAL = "fixed", "sequential"
ANALYSES = (FIXED, SEQUENTIAL)
# metric -> (per-user numerator, per-user denominator or "" for a mean over users)
METRICS: dict[str, tuple[str, str]] = {
    "watch_rate": ("d", "m"),
    "click_rate": ("c", "m"),
    "watcher_share": ("w", ""),
    "watches_per_user": ("d", ""),
}


@dataclass(frozen=True)
class ArmSums:
    """Sums over one arm's users: ``n`` users; Σ of m, c, d, w, x; Σ of the squares and cross
    products a report needs (``mc`` is Σ m·c; w² = w, so Σw² is ``w``)."""

    n: int = 0
    m: int = 0
    c: int = 0
    d: int = 0
    w: int = 0
    x: int = 0
    mm: int = 0
    cc: int = 0
    dd: int = 0
    xx: int = 0
    mc: int = 0
    md: int = 0
    xm: int = 0
    xc: int = 0
    xd: int = 0
    xw: int = 0

    @classmethod
    def of_users(cls, *, exposures: ArrayLike, clicks: ArrayLike, watches: ArrayLike,
                 covariate: ArrayLike) -> ArmSums:
        """The sums of per-user arrays (for simulations and checks; the store keeps them incrementally)."""
        m, c, d, x = (np.asarray(a, dtype=np.int64) for a in (exposures, clicks, watches, covariate))
        w = (d > 0).astype(np.int64)
        columns = {"m": m, "c": c, "d": d, "w": w, "x": x}
        return cls(n=len(m), **{f.name: int((columns[f.name[0]] * (columns[f.name[1]] if len(f.name) == 2 else 1)).sum())
                                for f in fields(cls) if f.name != "n"})

    @classmethod
    def from_mapping(cls, values: Mapping[str, int | str | bytes]) -> ArmSums:
        """From a Redis hash (missing fields are 0; unknown ones are ignored)."""
        return cls(**{f.name: int(values.get(f.name, 0)) for f in fields(cls)})

    def __add__(self, other: ArmSums) -> ArmSums:
        return ArmSums(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def total(self, a: str) -> float:
        return float(getattr(self, a))

    def product(self, a: str, b: str) -> float:
        """Σ a·b over users."""
        if a == b == "w":
            return float(self.w)
        for name in (a + b, b + a):
            if hasattr(self, name):
                return float(getattr(self, name))
        raise KeyError(f"no sum of {a}·{b} is kept")

    def cov(self, a: str, b: str) -> float:
        """The sample covariance of per-user a and b (0 with fewer than two users)."""
        if self.n < 2:
            return 0.0
        return (self.product(a, b) - self.total(a) * self.total(b) / self.n) / (self.n - 1)


@dataclass(frozen=True)
class Estimate:
    """One arm's metric: its value, and the variance of that value and its covariance with x̄."""

    value: float
    variance: float
    cov_x: float  # Cov(value, x̄)
    var_x: float  # Var(x̄)
    mean_x: float
    users: int


def estimate(sums: ArmSums, metric: str) -> Estimate:
    """The arm's ``metric`` with delta-method moments (users are the independent units)."""
    numerator, denominator = METRICS[metric]
    n = sums.n
    mean_y = sums.total(numerator) / n
    if denominator:
        mean_m = sums.total(denominator) / n
        ratio = mean_y / mean_m
        spread = (sums.cov(numerator, numerator) - 2 * ratio * sums.cov(numerator, denominator)
                  + ratio**2 * sums.cov(denominator, denominator)) / mean_m**2
        with_x = (sums.cov(numerator, "x") - ratio * sums.cov(denominator, "x")) / mean_m
        value = ratio
    else:
        spread, with_x, value = sums.cov(numerator, numerator), sums.cov(numerator, "x"), mean_y
    return Estimate(value=value, variance=max(spread, 0.0) / n, cov_x=with_x / n, var_x=sums.cov("x", "x") / n,
                    mean_x=sums.total("x") / n, users=n)


@dataclass(frozen=True)
class Comparison:
    """An arm against the control: difference, its interval, p-values (raw and Holm), the smallest
    difference detectable with 80 % power at this sample, and relative figures."""

    difference: float
    low: float
    high: float
    std_error: float
    p_value: float
    mde: float
    relative: float
    p_value_holm: float = 1.0

    @property
    def significant(self) -> bool:
        return self.p_value_holm < ALPHA


def sequential_rho(alpha: float = ALPHA, tuning: float = SEQUENTIAL_TUNING) -> float:
    """The normal mixture's spread that makes the confidence sequence tightest near ``tuning`` users."""
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def sequential_halfwidth(variance: float, users: int, alpha: float = ALPHA) -> float:
    """Half-width of the always-valid interval for a difference of variance ``variance`` from ``users`` users."""
    rho, s2 = sequential_rho(alpha), variance * users  # s2: per-user variance
    spread = users * rho**2 + 1
    return math.sqrt(s2) * math.sqrt(2 * spread * math.log(math.sqrt(spread) / alpha) / (users * rho) ** 2)


def sequential_p_value(difference: float, variance: float, users: int) -> float:
    """The smallest α at which the confidence sequence (its mixture fixed at ALPHA's) excludes 0:
    the normal-mixture SPRT's 1/Λ, so p < α at any look has type-I error at most α (Ville)."""
    rho, s2 = sequential_rho(), variance * users
    spread = users * rho**2 + 1
    exponent = -(difference**2) * (users * rho) ** 2 / (2 * s2 * spread)
    return min(1.0, math.sqrt(spread) * math.exp(exponent))


def compare(treatment: Estimate, control: Estimate, *, analysis: str, theta: float = 0.0) -> Comparison:
    """``treatment`` against ``control``; with ``theta`` the CUPED-adjusted comparison."""
    difference = treatment.value - control.value - theta * (treatment.mean_x - control.mean_x)
    parts = [estimate_variance(e, theta) for e in (treatment, control)]
    variance = sum(parts)
    relative = difference / control.value if control.value else 0.0
    if variance <= 0:
        return Comparison(difference, difference, difference, 0.0, 1.0 if difference == 0 else 0.0, 0.0, relative)
    se = math.sqrt(variance)
    if analysis == SEQUENTIAL:
        users = treatment.users + control.users
        half = sequential_halfwidth(variance, users)
        p_value = sequential_p_value(difference, variance, users)
        mde = half + stats.norm.ppf(POWER) * se
    else:
        df = variance**2 / sum(v**2 / max(e.users - 1, 1) for v, e in zip(parts, (treatment, control), strict=True))
        critical = float(stats.t.ppf(1 - ALPHA / 2, df))
        half, p_value = critical * se, float(2 * stats.t.sf(abs(difference) / se, df))
        mde = (critical + stats.norm.ppf(POWER)) * se
    return Comparison(difference, difference - half, difference + half, se, p_value, float(mde), relative)


def estimate_variance(arm: Estimate, theta: float) -> float:
    """Var(value − θ·x̄) of one arm."""
    return max(arm.variance - 2 * theta * arm.cov_x + theta**2 * arm.var_x, 0.0)


def cuped_theta(arms: Sequence[ArmSums], metric: str) -> float:
    """θ = Cov(metric, x) / Var(x) on all arms pooled (0 when the covariate does not vary)."""
    pooled = estimate(sum(arms[1:], arms[0]), metric)
    return pooled.cov_x / pooled.var_x if pooled.var_x > 0 else 0.0


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error across the given tests)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class MetricResult:
    """One metric of one arm: the value, CUPED's adjusted value, and (but for the control) both
    comparisons with the control and the variance CUPED removed from the difference."""

    metric: str
    value: float
    std_error: float
    adjusted_value: float
    unadjusted: Comparison | None
    cuped: Comparison | None
    variance_reduction: float


def analyse(arms: Sequence[ArmSums], *, analysis: str = FIXED, cuped: bool = True) -> list[list[MetricResult]]:
    """Per arm (the first is the control), per metric of METRICS, the results (without ``cuped``, no
    adjusted comparison); every arm needs at least two users (see ``ready``)."""
    if analysis not in ANALYSES:
        raise ValueError(f"analysis must be one of {ANALYSES}, not {analysis!r}")
    results: list[list[MetricResult]] = [[] for _ in arms]
    for metric in METRICS:
        theta = cuped_theta(arms, metric) if cuped else 0.0
        estimates = [estimate(arm, metric) for arm in arms]
        control = estimates[0]
        plain = _with_holm([compare(e, control, analysis=analysis) for e in estimates[1:]])
        adjusted = _with_holm([compare(e, control, analysis=analysis, theta=theta) for e in estimates[1:]])
        pooled_x = sum(e.mean_x * e.users for e in estimates) / sum(e.users for e in estimates)
        for index, arm in enumerate(estimates):
            unadjusted_cmp = plain[index - 1] if index else None
            cuped_cmp = adjusted[index - 1] if index and cuped else None
            reduction = (1 - (cuped_cmp.std_error / unadjusted_cmp.std_error) ** 2
                         if unadjusted_cmp and cuped_cmp and unadjusted_cmp.std_error else 0.0)
            results[index].append(MetricResult(
                metric=metric, value=arm.value, std_error=math.sqrt(arm.variance),
                adjusted_value=arm.value - theta * (arm.mean_x - pooled_x), unadjusted=unadjusted_cmp,
                cuped=cuped_cmp, variance_reduction=reduction,
            ))
    return results


def _with_holm(comparisons: list[Comparison]) -> list[Comparison]:
    adjusted = holm([c.p_value for c in comparisons])
    return [replace(c, p_value_holm=p) for c, p in zip(comparisons, adjusted, strict=True)]


def ready(arms: Sequence[ArmSums]) -> str:
    """Why these arms cannot be analysed yet ("" when they can)."""
    if not any(arm.n for arm in arms):
        return "no exposures yet"
    short = [index for index, arm in enumerate(arms) if arm.n < 2]
    return f"{len(short)} arm(s) have fewer than 2 users: no comparison yet" if short else ""


def srm_p_value(users: Sequence[int], shares: Sequence[float]) -> float:
    """Chi-square goodness of fit of users per arm against the arms' shares (1 without users)."""
    total = sum(users)
    if total == 0 or len(users) < 2:
        return 1.0
    return float(stats.chisquare(users, f_exp=[total * s for s in shares]).pvalue)
