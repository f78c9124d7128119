"""An experiment's definition and its checks, converted to and from the admin protobuf."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cinesync.v1 import admin_pb2 as admin
from control_plane.experiments.statistics import ANALYSES, FIXED

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HOLDOUT = "holdout"
DOMAINS = frozenset({"movie", "tv"})
DEFAULT_COVARIATE_WINDOW_DAYS = 14.0
MAX_COVARIATE_WINDOW_DAYS = 90.0


class InvalidExperiment(ValueError):
    """An experiment definition that cannot run; the message says what is wrong."""


@dataclass(frozen=True)
class Variant:
    """A serving configuration: retrieval from one version, ranking by another's ensemble (0: none)."""

    name: str
    weight: float
    retrieval_version: int
    ranking_version: int


@dataclass(frozen=True)
class Experiment:
    """Who is in it (salt, shares, holdout, time, domains, overrides), what each arm serves, and how
    its report analyses it."""

    name: str
    salt: str
    variants: tuple[Variant, ...]
    holdout: float = 0.0
    start: int = 0
    stop: int = 0
    domains: tuple[str, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)
    stopped: bool = False
    analysis: str = FIXED  # or "sequential": always-valid intervals, safe to look at any time
    covariate_window_days: float = DEFAULT_COVARIATE_WINDOW_DAYS  # CUPED's pre-exposure window; 0: off

    def active(self, now: float, domain: str) -> bool:
        """Whether requests at ``now`` for ``domain`` are in the experiment."""
        in_time = (not self.start or now >= self.start) and (not self.stop or now < self.stop)
        return not self.stopped and in_time and (not self.domains or domain in self.domains)

    def versions(self) -> set[int]:
        return {v for variant in self.variants for v in (variant.retrieval_version, variant.ranking_version) if v}

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "overrides": dict(self.overrides)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Experiment:
        return cls(**{**data, "variants": tuple(Variant(**v) for v in data["variants"]),
                      "domains": tuple(data["domains"]), "overrides": dict(data["overrides"])})

    def to_proto(self) -> admin.Experiment:
        return admin.Experiment(
            name=self.name, salt=self.salt, holdout=self.holdout, start=self.start, stop=self.stop,
            domains=list(self.domains), overrides=dict(self.overrides), stopped=self.stopped,
            analysis=self.analysis, covariate_window_days=self.covariate_window_days,
            variants=[admin.Variant(name=v.name, weight=v.weight, retrieval_version=v.retrieval_version,
                                    ranking_version=v.ranking_version) for v in self.variants],
        )

    @classmethod
    def from_proto(cls, message: admin.Experiment) -> Experiment:
        return cls(
            name=message.name, salt=message.salt or message.name, holdout=message.holdout, start=message.start,
            stop=message.stop, domains=tuple(message.domains), overrides=dict(message.overrides),
            stopped=message.stopped, analysis=message.analysis or FIXED,
            covariate_window_days=(message.covariate_window_days if message.HasField("covariate_window_days")
                                   else DEFAULT_COVARIATE_WINDOW_DAYS),
            variants=tuple(Variant(v.name, v.weight, v.retrieval_version, v.ranking_version) for v in message.variants),
        )


def check(experiment: Experiment, *, whole_versions: set[int], compatible: Mapping[int, str]) -> None:
    """Raise InvalidExperiment unless ``experiment`` can run on the published ``whole_versions``;
    ``compatible`` maps each version to its catalog's digest (retrieval and ranking must agree)."""
    problems = []
    if not NAME.match(experiment.name):
        problems.append(f"name {experiment.name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
    if not experiment.variants:
        problems.append("an experiment needs at least one variant")
    names = [v.name for v in experiment.variants]
    if len(set(names)) != len(names) or HOLDOUT in names or not all(NAME.match(n) for n in names):
        problems.append(f"variant names must be distinct, valid and not {HOLDOUT!r}: {names}")
    if any(not (v.weight > 0) for v in experiment.variants):
        problems.append("every variant's weight must be positive")
    total = sum(v.weight for v in experiment.variants)
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        problems.append(f"variant weights sum to {total:g}, not 1")
    if not 0 <= experiment.holdout < 1:
        problems.append(f"holdout {experiment.holdout:g} must be in [0, 1)")
    if experiment.stop and experiment.stop <= (experiment.start or time.time()):
        problems.append("stop must come after start (and after now)")
    if experiment.analysis not in ANALYSES:
        problems.append(f"analysis must be one of {list(ANALYSES)}, not {experiment.analysis!r}")
    if not 0 <= experiment.covariate_window_days <= MAX_COVARIATE_WINDOW_DAYS:
        problems.append(f"covariate_window_days {experiment.covariate_window_days:g} must be in "
                        f"[0, {MAX_COVARIATE_WINDOW_DAYS:g}]")
    if set(experiment.domains) - DOMAINS:
        problems.append(f"domains must be among {sorted(DOMAINS)}: {list(experiment.domains)}")
    if set(experiment.overrides.values()) - {*names, HOLDOUT}:
        problems.append(f"overrides name unknown variants: {sorted(set(experiment.overrides.values()) - set(names))}")
    for variant in experiment.variants:
        missing = {variant.retrieval_version, variant.ranking_version} - {0} - whole_versions
        if missing or not variant.retrieval_version:
            problems.append(f"variant {variant.name!r} names versions that are not published: "
                            f"{sorted(missing) or [variant.retrieval_version]} (published: {sorted(whole_versions)})")
        elif variant.ranking_version and compatible[variant.ranking_version] != compatible[variant.retrieval_version]:
            problems.append(f"variant {variant.name!r}: versions {variant.retrieval_version} and "
                            f"{variant.ranking_version} were trained on different catalogs")
    if problems:
        raise InvalidExperiment(f"experiment {experiment.name!r}: " + "; ".join(problems))
