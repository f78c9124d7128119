"""The candidate-index interface: one index per retriever member of a bundle, searched per request.

Index kinds sit below both roles that use them: the exporter builds them at publish and the control
plane loads and searches them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

ANY = "any"
Found = tuple[NDArray[np.int64], NDArray[np.float32]]


def best_unseen(scores: NDArray[np.float32], n: int, exclude: NDArray[np.int64]) -> Found:
    """The n best items of a full score row (-inf: not a candidate), excluded ones left out; ties go
    to the lower item index, as offline evaluation breaks them."""
    scores = scores.copy()
    scores[exclude] = -np.inf
    allowed = np.flatnonzero(np.isfinite(scores))
    if len(allowed) > n:
        threshold = np.partition(scores[allowed], len(allowed) - n)[len(allowed) - n]
        allowed = allowed[scores[allowed] >= threshold]
    order = np.lexsort((allowed, -scores[allowed]))[:n]
    items = allowed[order].astype(np.int64)
    return items, scores[items].astype(np.float32)


class CandidateIndex(ABC):
    """Top-n unseen items for a user within a domain, from a retriever member's exported arrays.

    ``prepare`` runs at publish time (in the exporter) and may add built structures to the arrays
    and return a plan for the manifest; the control plane constructs the index from both.
    """

    kind: ClassVar[str]

    @classmethod
    def prepare(
        cls, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *,
        exact_below: int, recall_target: float,
    ) -> tuple[dict[str, NDArray[np.generic]], dict[str, Any]]:
        """The arrays to ship and the plan to record; by default the arrays as they are, no plan."""
        del item_domains, exact_below, recall_target
        return dict(arrays), {}

    @abstractmethod
    def __init__(
        self, arrays: Mapping[str, NDArray[np.generic]], item_domains: NDArray[np.str_], *, plan: Mapping[str, Any]
    ) -> None: ...

    @abstractmethod
    def search(
        self, history: NDArray[np.int64], user_vector: NDArray[np.float32] | None, n: int, *, domain: str,
        exclude: NDArray[np.int64],
    ) -> Found:
        """(catalog item indices, scores), best first, at most n, for a user whose recent history is
        ``history`` and whose vector, as the member's encoder made it from that history, is
        ``user_vector`` (None when the member has no encoder or encoding failed)."""
