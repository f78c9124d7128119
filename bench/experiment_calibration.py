"""A/A calibration and power of the experiment statistics (control_plane/experiments/statistics.py)
on simulated users: heterogeneous propensities, repeat visits, a pre-period that predicts the outcome.

Each simulated user has an activity a ~ Exponential(mean 7) and is exposed m = 1 + Poisson(a) times
(geometric, mean 8), clicks each answer with propensity p ~ Beta(0.5, 4.5) (mean 0.10) and watches a
clicked answer with h ~ Beta(2, 2); before the experiment the same user had Poisson(k·a) answers
with the same propensities, whose watches are the CUPED covariate (k sets how well it predicts).
Users arrive in random order and are assigned to arms at random (equal shares).

- A/A, fixed horizon: share of experiments called significant at 0.05 (per metric);
- A/A, sequential: looked at after every ``--look-every`` users; significant if any look is;
- the same looks with the fixed-horizon test (peeking), and main's per-exposure two-proportion z-test;
- power on a planted relative lift in watch rate (h × (1 + lift)), fixed, sequential and CUPED, and
  the variance CUPED removed with the covariate's correlation with the outcome.

    python bench/experiment_calibration.py --json docs/bench/experiment_calibration.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from control_plane.experiments.statistics import (
    ALPHA,
    FIXED,
    METRICS,
    SEQUENTIAL,
    ArmSums,
    analyse,
)

HEADLINE = "watch_rate"


def simulate(rng: np.random.Generator, users: int, *, lift: float, pre_scale: float) -> dict[str, NDArray[np.int64]]:
    """Per-user exposures, clicks, watches and pre-period watches of ``users`` users."""
    activity = rng.exponential(7.0, users)
    click_p = rng.beta(0.5, 4.5, users)
    watch_p = np.minimum(rng.beta(2.0, 2.0, users) * (1 + lift), 1.0)
    exposures = 1 + rng.poisson(activity)
    clicks = rng.binomial(exposures, click_p)
    pre_clicks = rng.binomial(rng.poisson(pre_scale * activity), click_p)
    return {"exposures": exposures, "clicks": clicks, "watches": rng.binomial(clicks, watch_p),
            "covariate": rng.binomial(pre_clicks, watch_p / (1 + lift))}


def arm_sums(users: dict[str, NDArray[np.int64]], take: NDArray[np.bool_]) -> ArmSums:
    return ArmSums.of_users(**{name: values[take] for name, values in users.items()})


def experiment(rng: np.random.Generator, users_per_arm: int, *, lift: float, pre_scale: float,
               looks: int) -> dict[str, Any]:
    """One simulated experiment: the final analysis (fixed and sequential) and whether any of the
    looks (after every users_per_arm * 2 / looks users) found a difference in the headline metric."""
    total = 2 * users_per_arm
    control = simulate(rng, total, lift=0.0, pre_scale=pre_scale)
    treated = simulate(rng, total, lift=lift, pre_scale=pre_scale)
    in_treatment = rng.random(total) < 0.5
    users = {name: np.where(in_treatment, treated[name], control[name]) for name in control}
    found: dict[str, Any] = {"peek": {FIXED: False, SEQUENTIAL: False}}
    for look in range(1, looks + 1):
        upto = np.arange(total) < total * look // looks
        arms = [arm_sums(users, upto & ~in_treatment), arm_sums(users, upto & in_treatment)]
        for analysis in (FIXED, SEQUENTIAL):
            result = analyse(arms, analysis=analysis)
            headline = next(r for r in result[1] if r.metric == HEADLINE)
            assert headline.unadjusted is not None and headline.cuped is not None
            found["peek"][analysis] |= headline.unadjusted.significant
            if look == looks:
                found[analysis] = {r.metric: (r.unadjusted.significant, r.cuped.significant, r.variance_reduction)
                                   for r in result[1] if r.unadjusted and r.cuped}
    exposures, watches = (users[n] for n in ("exposures", "watches"))
    found["per_exposure_z"] = per_exposure_p(watches[in_treatment].sum(), exposures[in_treatment].sum(),
                                             watches[~in_treatment].sum(), exposures[~in_treatment].sum()) < ALPHA
    outcome = watches - watches.sum() / exposures.sum() * exposures  # the watch rate, linearised
    found["correlation"] = {"watches_per_user": float(np.corrcoef(users["covariate"], watches)[0, 1]),
                            "watch_rate": float(np.corrcoef(users["covariate"], outcome)[0, 1])}
    return found


def per_exposure_p(events_a: int, trials_a: int, events_b: int, trials_b: int) -> float:
    """Main's (1a19630) test: a pooled two-proportion z-test treating every exposure as independent."""
    pooled = (events_a + events_b) / (trials_a + trials_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    return float(2 * stats.norm.sf(abs(events_a / trials_a - events_b / trials_b) / spread)) if spread else 1.0


def share(hits: list[bool]) -> dict[str, float]:
    """The share of hits with its 95 % Wilson interval."""
    interval = stats.binomtest(sum(hits), len(hits)).proportion_ci(method="wilson")
    return {"share": sum(hits) / len(hits), "low": float(interval.low), "high": float(interval.high), "of": len(hits)}


def run(*, experiments: int, users_per_arm: int, look_every: int, power_runs: int, power_users: int, lift: float,
        pre_scale: float, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    looks = 2 * users_per_arm // look_every
    null = [experiment(rng, users_per_arm, lift=0.0, pre_scale=pre_scale, looks=looks) for _ in range(experiments)]
    planted = [experiment(rng, power_users, lift=lift, pre_scale=pre_scale, looks=1) for _ in range(power_runs)]
    result: dict[str, Any] = {"a_a": {}, "power": {}}
    for metric in METRICS:
        result["a_a"][metric] = {
            "fixed": share([e[FIXED][metric][0] for e in null]),
            "fixed_cuped": share([e[FIXED][metric][1] for e in null]),
            "sequential": share([e[SEQUENTIAL][metric][0] for e in null]),
            "sequential_cuped": share([e[SEQUENTIAL][metric][1] for e in null]),
        }
        result["power"][metric] = {
            "fixed": share([e[FIXED][metric][0] for e in planted]),
            "sequential": share([e[SEQUENTIAL][metric][0] for e in planted]),
            "fixed_cuped": share([e[FIXED][metric][1] for e in planted]),
            "sequential_cuped": share([e[SEQUENTIAL][metric][1] for e in planted]),
            "variance_reduction": float(np.median([e[FIXED][metric][2] for e in planted])),
        }
    result["a_a_peeking"] = {"looks": looks, "fixed": share([e["peek"][FIXED] for e in null]),
                             "sequential": share([e["peek"][SEQUENTIAL] for e in null])}
    result["a_a_per_exposure_z"] = share([e["per_exposure_z"] for e in null])
    result["covariate_correlation"] = {m: float(np.median([e["correlation"][m] for e in planted]))
                                       for m in ("watches_per_user", "watch_rate")}
    result["settings"] = {"experiments": experiments, "users_per_arm": users_per_arm, "look_every": look_every,
                          "power_runs": power_runs, "power_users_per_arm": power_users, "lift": lift,
                          "pre_scale": pre_scale, "seed": seed, "alpha": ALPHA}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = f"{platform.processor() or platform.machine()}, {platform.python_version()}"
    return result


def table(result: dict[str, Any]) -> str:
    """The markdown tables docs/benchmarks.md quotes."""
    def pct(found: dict[str, float]) -> str:
        return f"{100 * found['share']:.1f} % ({100 * found['low']:.1f}–{100 * found['high']:.1f})"

    lines = [("| metric | A/A fixed | A/A fixed, CUPED | A/A sequential (last look) | power fixed | power sequential "
              "| power CUPED (fixed) | CUPED variance cut |"), "|---|---|---|---|---|---|---|---|"]
    for metric, a_a in result["a_a"].items():
        power = result["power"][metric]
        lines.append(f"| {metric} | {pct(a_a['fixed'])} | {pct(a_a['fixed_cuped'])} | {pct(a_a['sequential'])} "
                     f"| {pct(power['fixed'])} | {pct(power['sequential'])} | {pct(power['fixed_cuped'])} "
                     f"| {100 * power['variance_reduction']:.1f} % |")
    peek = result["a_a_peeking"]
    lines.append("")
    lines.append(f"Looked at after every {result['settings']['look_every']} users ({peek['looks']} looks), "
                 f"{HEADLINE}: sequential {pct(peek['sequential'])}, fixed-horizon test peeked {pct(peek['fixed'])}; "
                 f"main's per-exposure z-test (one look) {pct(result['a_a_per_exposure_z'])}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=2000, help="A/A experiments")
    parser.add_argument("--users", type=int, default=500, help="users per arm in each A/A experiment")
    parser.add_argument("--look-every", type=int, default=100, help="users between looks")
    parser.add_argument("--power-runs", type=int, default=1000)
    parser.add_argument("--power-users", type=int, default=2000, help="users per arm in each planted experiment")
    parser.add_argument("--lift", type=float, default=0.10, help="planted relative lift in watch rate")
    parser.add_argument("--pre-scale", type=float, default=1.0, help="pre-period length relative to the experiment's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(experiments=args.experiments, users_per_arm=args.users, look_every=args.look_every,
                 power_runs=args.power_runs, power_users=args.power_users, lift=args.lift, pre_scale=args.pre_scale,
                 seed=args.seed)
    print(table(result))
    print(json.dumps({k: result[k] for k in ("covariate_correlation", "settings", "seconds", "machine")}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
