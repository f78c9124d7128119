"""The terminal table of `cinesync experiment report`: arms, then one block per metric with each arm
against the control, unadjusted and with CUPED."""

from __future__ import annotations

from typing import Any


def _interval(comparison: Any) -> str:
    return f"{comparison.difference:+.4f} [{comparison.low:+.4f}, {comparison.high:+.4f}]"


def _p(comparison: Any) -> str:
    return f"{comparison.p_value_holm:.3g}{'*' if comparison.significant else ''}"


def format_experiment_report(report: Any) -> str:
    """``report`` (an admin_pb2.ExperimentReport) as aligned text; * marks a Holm-corrected p below α."""
    analysis = "sequential (always valid)" if report.analysis == "sequential" else "fixed horizon"
    cuped = f"CUPED window {report.covariate_window_days:g} days" if report.covariate_window_days else "CUPED off"
    srm = "MISMATCH" if report.sample_ratio_mismatch else "ok"
    lines = [(f"experiment {report.experiment}: {analysis}, alpha {report.alpha:g}, {cuped}, "
              f"sample ratio p {report.srm_p_value:.3g} ({srm}), unmatched feedback {report.unmatched_feedback}")]
    width = max([len(v.variant) for v in report.variants] + [7]) + 2
    lines.append(f"  {'arm':<{width}}{'users':>8}{'exposures':>11}{'clicks':>8}{'watches':>9}")
    lines += [f"  {v.variant:<{width}}{v.users:>8}{v.exposures:>11}{v.clicks:>8}{v.watches:>9}" for v in report.variants]
    if report.note:
        return "\n".join([*lines, f"no comparisons: {report.note}"])
    control = report.variants[0].variant
    for index, metric in enumerate(m.metric for m in report.variants[0].metrics):
        header = (f"  {'arm':<{width}}{'value':>9}  {'difference [95% interval]':<31}{'relative':>9}{'p Holm':>9}"
                  f"{'MDE':>9}  {'CUPED difference [95% interval]':<31}{'p Holm':>9}{'var cut':>8}")
        lines += ["", f"{metric} (against {control}; users are the unit)", header]
        for variant in report.variants:
            row = variant.metrics[index]
            cells = f"  {variant.variant:<{width}}{row.value:>9.4f}"
            if row.HasField("unadjusted"):
                plain = row.unadjusted
                cells += f"  {_interval(plain):<31}{plain.relative:>+9.1%}{_p(plain):>9}{plain.mde:>9.4f}"
                if row.HasField("cuped"):
                    cells += f"  {_interval(row.cuped):<31}{_p(row.cuped):>9}{row.variance_reduction:>8.1%}"
            else:
                cells += "  (control)"
            lines.append(cells)
    return "\n".join(lines)
