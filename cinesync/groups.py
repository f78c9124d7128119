"""How a group's ranking is made from its members' scores: shared by the control plane, which serves
group requests, and the offline evaluation, which measures the rule.

Each member's scores over the group's candidates are standardised (mean 0, standard deviation 1 over
those candidates), so that no member counts more because their model is more confident; an item's
group score is the members' average, with a least-misery share MISERY_WEIGHT given to the lowest
member's score, so that an item one member would hate sinks even if the others like it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_MEMBERS = 20
MISERY_WEIGHT = 0.25  # fixed a priori, not tuned on test; bench/groups.py reports 0 and 0.5 beside it


def aggregate(scores: NDArray[np.floating[Any]], *, misery_weight: float = MISERY_WEIGHT) -> NDArray[np.float64]:
    """Group scores ``[W]`` from the members' scores ``[M, W]`` of the same W candidates."""
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.std(axis=1, keepdims=True)
    standard = (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 1e-9, spread, 1.0)
    result: NDArray[np.float64] = (1.0 - misery_weight) * standard.mean(axis=0) + misery_weight * standard.min(axis=0)
    return result
