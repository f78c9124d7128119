"""Triton model and tensor names, written once: the exporter writes them, the control plane calls them.

A request is served from the user's recent history (item index + 1, oldest first, left-padded with
0 to a fixed length), never from state baked into a model. Serving version N makes at most two
Triton calls per request, each one model execution:

1. ``encode_N`` (``encoder_ensemble(N)``), only where a member has a history encoder: HISTORY in,
   one ``user_<member>`` vector per encoding member out (the control plane searches FAISS with it;
   a cached vector spares the call). Its one step is version N of ``encoders``, every member's
   encoder composed into one graph.
2. ``ranking_N`` (``ensemble_model(N)``): HISTORY, ITEMS (candidates as index + 1, 0 pads) and the
   encoded vectors in, SCORE (one per candidate) out. Its one step is version N of ``ranker``: one
   graph composed of every member's scorer (``score_<member>``) and the fusion, which reads every
   member's scores plus HISTORY and ITEMS (it computes the dense ranking features from them).

Every tensor has a request batch axis first. A stage model's repository folder is its base name
plus a short hash of its configuration (``model_family``), so versions whose interfaces differ
(another member set) live side by side.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

ENSEMBLE = "ranking"
ENCODER_ENSEMBLE = "encode"
FUSION = "fusion"
ENCODERS, RANKER = "encoders", "ranker"  # the composed stage models
MAX_BATCH_SIZE = 64  # requests per Triton execution (each request carries its own candidates)
MAX_CANDIDATES = 4096  # candidates of one request
MAX_HISTORY = 10_000  # items of a request's history that count (the most recent): the longest HISTORY row

# The ensembles' tensors.
HISTORY, ITEMS, SCORE = "HISTORY", "ITEMS", "SCORE"

# The ONNX models' own tensors. Encoders: history -> user_vector. Scorers read some of
# (history, items, user_vector) as their kind declares and give score. The fusion reads one
# member_score(name) per member plus history and items, and gives score.
HISTORY_INPUT, ITEMS_INPUT, USER_VECTOR = "history", "items", "user_vector"
OUTPUT = "score"


def ensemble_model(version: int) -> str:
    """The ensemble that ranks for serving version ``version``."""
    return f"{ENSEMBLE}_{version}"


def encoder_ensemble(version: int) -> str:
    """The ensemble that encodes histories into the user vectors of serving version ``version``."""
    return f"{ENCODER_ENSEMBLE}_{version}"


def stage_targets(version: int, families: dict[str, str]) -> tuple[tuple[str, str], tuple[str, str]]:
    """The (model, version) pairs that encode and rank for serving version ``version``: the stage
    models' families at that version, as the bundle's manifest names them (``triton_models``); a
    version published before the stages were composed has only its ensembles."""
    if ENCODERS in families or RANKER in families:
        return (families.get(ENCODERS, ""), str(version)), (families[RANKER], str(version))
    return (encoder_ensemble(version), ""), (ensemble_model(version), "")


def _numbered(model: str, prefix: str) -> int | None:
    head, _, number = model.rpartition("_")
    return int(number) if head == prefix and number.isdigit() else None


def ensemble_version(model: str) -> int | None:
    """The serving version a ranking ensemble's name stands for, None for any other name. The
    ranking ensemble is written last: a version is whole when it and the bundle exist."""
    return _numbered(model, ENSEMBLE)


def encoder_ensemble_version(model: str) -> int | None:
    """The serving version an encoding ensemble's name stands for, None for any other name."""
    return _numbered(model, ENCODER_ENSEMBLE)


def model_family(base: str, config_digest: str) -> str:
    """The repository folder of a stage model: its base name and the digest of its configuration."""
    return f"{base}_{config_digest[:8]}"


def scorer_model(member: str) -> str:
    """The ONNX model (file stem, and its part of the composed ranker) that scores candidates with ``member``."""
    return f"score_{member}"


def encoder_model(member: str) -> str:
    """The ONNX model (file stem, and its part of the composed encoders) that encodes a history into ``member``'s user vector."""
    return f"encode_{member}"


def member_score(member: str) -> str:
    """The tensor carrying ``member``'s score from its scorer to the fusion."""
    return f"score_{member}"


def user_vector(member: str) -> str:
    """The ensembles' tensor carrying ``member``'s encoded user vector."""
    return f"user_{member}"


def history_row(history: NDArray[np.int64], length: int) -> NDArray[np.int64]:
    """A history (item indices, oldest first) as the HISTORY tensor's row: its last ``length`` items
    as index + 1, left-padded with 0."""
    row = np.zeros(length, dtype=np.int64)
    tail = np.asarray(history, dtype=np.int64)[-length:] if length else np.zeros(0, dtype=np.int64)
    row[length - len(tail) :] = tail + 1
    return row
