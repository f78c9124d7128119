"""Experiments without servers: assignment is deterministic, salted and weighted; definitions are
checked; report statistics match known values."""

from __future__ import annotations

import collections
import time

import mmh3
import pytest

from control_plane.experiments.assignment import assign, bucket
from control_plane.experiments.definition import HOLDOUT, Experiment, InvalidExperiment, Variant, check


def _experiment(**changes: object) -> Experiment:
    base: dict[str, object] = {
        "name": "ranker", "salt": "s1", "holdout": 0.1,
        "variants": (Variant("ranked", 0.7, 2, 2), Variant("retrieval", 0.3, 2, 0)),
    }
    return Experiment(**{**base, **changes})  # type: ignore[arg-type]


def test_bucket_is_murmur3_of_salt_nul_user() -> None:
    assert bucket("s1", "u42") == mmh3.hash(b"s1\x00u42", 0, signed=False) / 2**32
    assert bucket("ab", "c") != bucket("a", "bc")  # no collisions by concatenation


def test_assignment_is_stable_weighted_and_salted() -> None:
    experiment = _experiment()
    users = [f"user{n}" for n in range(20_000)]
    first = [assign(experiment, u) for u in users]
    assert first == [assign(experiment, u) for u in users]
    shares = collections.Counter(first)
    assert abs(shares[HOLDOUT] / 20_000 - 0.1) < 0.01
    assert abs(shares["ranked"] / 20_000 - 0.9 * 0.7) < 0.015 and abs(shares["retrieval"] / 20_000 - 0.27) < 0.015
    resalted = [assign(_experiment(salt="s2"), u) for u in users]
    assert sum(a != b for a, b in zip(first, resalted, strict=True)) > 5_000
    assert assign(_experiment(overrides={"user1": "retrieval"}), "user1") == "retrieval"


def test_definitions_are_checked() -> None:
    ok = {"whole_versions": {1, 2}, "compatible": {1: "a", 2: "a"}}
    check(_experiment(), **ok)  # type: ignore[arg-type]
    cases = [
        (_experiment(variants=(Variant("a", 0.5, 2, 2), Variant("b", 0.4, 2, 0))), "weights sum to 0.9, not 1"),
        (_experiment(variants=(Variant("a", 1.0, 9, 9),)), r"not published: \[9\]"),
        (_experiment(variants=(Variant("holdout", 1.0, 2, 2),)), "distinct, valid and not 'holdout'"),
        (_experiment(holdout=1.0), r"holdout 1 must be in \[0, 1\)"),
        (_experiment(domains=("books",)), "domains must be among"),
        (_experiment(overrides={"u": "nope"}), "overrides name unknown variants"),
        (_experiment(stop=int(time.time()) - 10), "stop must come after"),
        (_experiment(name="bad name!"), "1-64 characters"),
        (_experiment(analysis="bayesian"), "analysis must be one of"),
        (_experiment(covariate_window_days=365.0), r"covariate_window_days 365 must be in \[0, 90\]"),
    ]
    for experiment, message in cases:
        with pytest.raises(InvalidExperiment, match=message):
            check(experiment, **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidExperiment, match="different catalogs"):
        check(_experiment(variants=(Variant("x", 1.0, 1, 2),)), whole_versions={1, 2}, compatible={1: "a", 2: "b"})


def test_experiment_round_trips_through_json_and_proto() -> None:
    experiment = _experiment(domains=("tv",), overrides={"u": "ranked"}, analysis="sequential",
                             covariate_window_days=0.0)
    assert Experiment.from_json(experiment.to_json()) == experiment
    assert Experiment.from_proto(experiment.to_proto()) == experiment
