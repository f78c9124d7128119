"""Deterministic assignment of users to variants.

A user's bucket is MurmurHash3 (x86, 32-bit, seed 0, via mmh3) of the UTF-8 bytes of
``salt + "\\0" + user_id``, divided by 2³². The NUL separator cannot occur in either part (both are
checked to printable characters), so no two (salt, user id) pairs hash the same bytes. Buckets below
the holdout share are the holdout; the rest of [0, 1) is cut in the variants' order by their
weights. The same user gets the same variant in every replica and across restarts; changing the
salt reshuffles everyone. Overrides (user id → variant) come first, for testing.
"""

from __future__ import annotations

import mmh3

from control_plane.experiments.definition import HOLDOUT, Experiment

SCALE = 2.0**32


def bucket(salt: str, user_id: str) -> float:
    """The user's uniform position in [0, 1) for this salt."""
    return mmh3.hash(f"{salt}\0{user_id}".encode(), 0, signed=False) / SCALE


def assign(experiment: Experiment, user_id: str) -> str:
    """The variant name (or HOLDOUT) of ``user_id`` in ``experiment``."""
    if user_id in experiment.overrides:
        return experiment.overrides[user_id]
    position = bucket(experiment.salt, user_id)
    if position < experiment.holdout:
        return HOLDOUT
    position = (position - experiment.holdout) / (1 - experiment.holdout)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.weight
        if position < edge:
            return variant.name
    return experiment.variants[-1].name  # rounding at the top edge
