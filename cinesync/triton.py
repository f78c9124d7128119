"""Triton model and tensor names, written once: the exporter writes them, the control plane calls them.

The ``ranking`` ensemble takes (USER_IDX, ITEM_IDX) rows. Its steps: ``feature_assembly`` makes
DENSE; one ``score_<member>`` model per scoring member makes that member's score; all of those run
in parallel. ``fusion`` reads every member score and DENSE and makes SCORE.
"""

from __future__ import annotations

ENSEMBLE = "ranking"
FEATURES = "feature_assembly"
FUSION = "fusion"
MAX_BATCH_SIZE = 4096

# The ensemble's tensors (and the feature assembly model's).
USER_IDX, ITEM_IDX, DENSE, SCORE = "USER_IDX", "ITEM_IDX", "DENSE", "SCORE"

# The ONNX models' own tensors: scorers take (user_idx, item_idx) and give score; the fusion takes
# one member_score(name) per member plus dense, and gives score.
PAIR_INPUTS = ("user_idx", "item_idx")
DENSE_INPUT = "dense"
OUTPUT = "score"


def scorer_model(member: str) -> str:
    """The Triton model (and ONNX file stem) that scores candidates with ``member``."""
    return f"score_{member}"


def member_score(member: str) -> str:
    """The tensor carrying ``member``'s score from its scorer to the fusion."""
    return f"score_{member}"
