"""An experiment's report from its arms' per-user sums: per arm exposures, users, clicks and watches,
each metric of control_plane/experiments/statistics.py against the control (unadjusted and CUPED, by
the experiment's fixed or sequential analysis, Holm-corrected), and the sample-ratio-mismatch check
(chi-square of users per arm against the configured shares, flagged below p = 0.001)."""

from __future__ import annotations

from cinesync.v1 import admin_pb2 as admin
from control_plane.experiments.definition import HOLDOUT, Experiment
from control_plane.experiments.statistics import ALPHA, ArmSums, Comparison, analyse, ready, srm_p_value

SRM_ALPHA = 0.001


def arms(experiment: Experiment) -> list[tuple[str, float]]:
    """(arm, share of users): the variants in order, then the holdout when there is one."""
    found = [(v.name, (1 - experiment.holdout) * v.weight) for v in experiment.variants]
    return found + ([(HOLDOUT, experiment.holdout)] if experiment.holdout > 0 else [])


def _comparison(found: Comparison | None) -> admin.Comparison | None:
    if found is None:
        return None
    return admin.Comparison(difference=found.difference, low=found.low, high=found.high, relative=found.relative,
                            std_error=found.std_error, p_value=found.p_value, p_value_holm=found.p_value_holm,
                            significant=found.significant, mde=found.mde)


def build_report(experiment: Experiment, sums: dict[str, ArmSums], unmatched: int) -> admin.ExperimentReport:
    """The report of ``experiment`` from each arm's sums (keyed by arm name)."""
    names = [name for name, _ in arms(experiment)]
    in_order = [sums[name] for name in names]
    note = ready(in_order)
    results = (analyse(in_order, analysis=experiment.analysis, cuped=experiment.covariate_window_days > 0)
               if not note else [[] for _ in names])
    variants = []
    for name, arm, metrics in zip(names, in_order, results, strict=True):
        variants.append(admin.VariantReport(
            variant=name, exposures=arm.m, users=arm.n, clicks=arm.c, watches=arm.d,
            metrics=[admin.MetricReport(metric=r.metric, value=r.value, std_error=r.std_error,
                                        adjusted_value=r.adjusted_value, unadjusted=_comparison(r.unadjusted),
                                        cuped=_comparison(r.cuped), variance_reduction=r.variance_reduction)
                     for r in metrics],
        ))
    p_value = srm_p_value([arm.n for arm in in_order], [share for _, share in arms(experiment)])
    return admin.ExperimentReport(
        experiment=experiment.name, variants=variants, srm_p_value=p_value, sample_ratio_mismatch=p_value < SRM_ALPHA,
        unmatched_feedback=unmatched, analysis=experiment.analysis, alpha=ALPHA,
        covariate_window_days=experiment.covariate_window_days, note=note,
    )
