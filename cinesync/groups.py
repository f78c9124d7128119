"""How a group's ranking is made from its members' scores: shared by the control plane, which serves
group requests, the training pipeline, which chooses the rule's tilt on validation groups, and the
offline evaluation, which measures it.

Each member's scores over the group's candidates are standardised (mean 0, standard deviation 1 over
those candidates), so that no member counts more because their model is more confident. An item's
group score is the members' tilted mean, (1/τ) log mean exp(τ z): τ = 0 is the plain average,
τ < 0 leans towards least misery (the unhappiest member decides, as τ → -∞), τ > 0 towards most
pleasure (some member's favourite rises, as τ → +∞). τ is chosen per trained run from TILTS on
validation groups (recsys.groups.choose_tilt) and published with the version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_MEMBERS = 20
TILTS = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0)  # the candidates validation chooses from
DEFAULT_TILT = 0.0  # the plain average, for a version published without a choice


def aggregate(scores: NDArray[np.floating[Any]], *, tilt: float = DEFAULT_TILT) -> NDArray[np.float64]:
    """Group scores ``[W]`` from the members' scores ``[M, W]`` of the same W candidates."""
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.std(axis=1, keepdims=True)
    standard = (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 1e-9, spread, 1.0)
    result: NDArray[np.float64]
    if tilt == 0.0:
        result = standard.mean(axis=0)
    else:
        tilted = tilt * standard
        top = tilted.max(axis=0)
        result = (top + np.log(np.mean(np.exp(tilted - top), axis=0))) / tilt
    return result
