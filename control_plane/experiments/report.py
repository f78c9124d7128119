"""An experiment's report: per variant exposures, users, click and watch rates with 95 % Wilson
intervals, two-proportion z-tests against the first variant, and a sample-ratio-mismatch check
(chi-square of users per arm against the configured shares, flagged below p = 0.001)."""

from __future__ import annotations

import math

from scipy import stats

from cinesync.v1 import admin_pb2 as admin
from control_plane.experiments.definition import HOLDOUT, Experiment
from control_plane.experiments.store import EVENTS, VariantCounts

SRM_ALPHA = 0.001


def wilson(events: int, trials: int) -> tuple[float, float]:
    """95 % Wilson score interval of events / trials ((0, 1) without trials)."""
    if trials == 0:
        return 0.0, 1.0
    interval = stats.binomtest(events, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def two_proportion_p(events_a: int, trials_a: int, events_b: int, trials_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1 when either arm is empty or rates are 0/1)."""
    if not trials_a or not trials_b:
        return 1.0
    pooled = (events_a + events_b) / (trials_a + trials_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if spread == 0:
        return 1.0
    z = (events_a / trials_a - events_b / trials_b) / spread
    return float(2 * stats.norm.sf(abs(z)))


def srm_p_value(users: list[int], shares: list[float]) -> float:
    """Chi-square goodness of fit of users per arm against the arms' shares (1 without users)."""
    total = sum(users)
    if total == 0 or len(users) < 2:
        return 1.0
    return float(stats.chisquare(users, f_exp=[total * s for s in shares]).pvalue)


def arms(experiment: Experiment) -> list[tuple[str, float]]:
    """(arm, share of users): the variants in order, then the holdout when there is one."""
    found = [(v.name, (1 - experiment.holdout) * v.weight) for v in experiment.variants]
    return found + ([(HOLDOUT, experiment.holdout)] if experiment.holdout > 0 else [])


def build_report(experiment: Experiment, counts: dict[str, VariantCounts], unmatched: int) -> admin.ExperimentReport:
    names = [name for name, _ in arms(experiment)]
    control = counts[names[0]]
    variants = []
    for name in names:
        arm = counts[name]
        estimates = {}
        for event in EVENTS:
            low, high = wilson(arm.events[event], arm.exposures)
            estimates[event] = admin.RateEstimate(
                events=arm.events[event], rate=arm.events[event] / arm.exposures if arm.exposures else 0.0,
                low=low, high=high,
                p_value=two_proportion_p(arm.events[event], arm.exposures, control.events[event], control.exposures),
            )
        variants.append(admin.VariantReport(variant=name, exposures=arm.exposures, users=arm.users,
                                            click=estimates["click"], watch=estimates["watch"]))
    p_value = srm_p_value([counts[n].users for n in names], [share for _, share in arms(experiment)])
    return admin.ExperimentReport(experiment=experiment.name, variants=variants, srm_p_value=p_value,
                                  sample_ratio_mismatch=p_value < SRM_ALPHA, unmatched_feedback=unmatched)
