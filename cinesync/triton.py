"""Triton model and tensor names, written once: the exporter writes them, the control plane calls them.

Serving version N is ranked by the ensemble ``ranking_N`` (``ensemble_model(N)``), which takes
(USER_IDX, ITEM_IDX) rows. Its steps, each pinned to version N of its model: one
``score_<member>`` model per scoring member makes that member's score, all in parallel; ``fusion``
reads every member score and the same rows (it looks their dense features up) and makes SCORE. A step model's
repository folder is its base name plus a short hash of its configuration (``model_family``), so
versions whose interfaces differ (another member set) live side by side.
"""

from __future__ import annotations

ENSEMBLE = "ranking"
FUSION = "fusion"
MAX_BATCH_SIZE = 4096

# The ensemble's tensors.
USER_IDX, ITEM_IDX, SCORE = "USER_IDX", "ITEM_IDX", "SCORE"

# The ONNX models' own tensors: scorers take (user_idx, item_idx) and give score; the fusion takes
# one member_score(name) per member plus (user_idx, item_idx), and gives score.
PAIR_INPUTS = ("user_idx", "item_idx")
OUTPUT = "score"


def ensemble_model(version: int) -> str:
    """The ensemble that ranks for serving version ``version``."""
    return f"{ENSEMBLE}_{version}"


def ensemble_version(model: str) -> int | None:
    """The serving version an ensemble model name stands for, None for any other name."""
    prefix, _, number = model.rpartition("_")
    return int(number) if prefix == ENSEMBLE and number.isdigit() else None


def model_family(base: str, config_digest: str) -> str:
    """The repository folder of a step model: its base name and the digest of its configuration."""
    return f"{base}_{config_digest[:8]}"


def scorer_model(member: str) -> str:
    """The Triton model (and ONNX file stem) that scores candidates with ``member``."""
    return f"score_{member}"


def member_score(member: str) -> str:
    """The tensor carrying ``member``'s score from its scorer to the fusion."""
    return f"score_{member}"
