"""The interface of a federated kind: a member kind whose weights travel as named arrays (what the
server sends, clients train from and the strategy aggregates), with a client's local step and the
fitted member the global arrays make (what is evaluated, exported and served)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from recsys.data.splits import Split
from recsys.kinds import MemberKind, create
from recsys.kinds.base import Catalog
from recsys.metrics import evaluate_full_ranking

Arrays = dict[str, np.ndarray]


class FederatedKind(ABC):
    """Subclasses set ``name`` (the recsys member kind they train) and map its weights to arrays."""

    name: ClassVar[str]

    def __init__(self, *, catalog: Catalog, params: Mapping[str, Any], seed: int) -> None:
        member = create(self.name, catalog, params, seed=seed)
        assert isinstance(member, MemberKind)
        self.member = member

    @abstractmethod
    def initial_arrays(self, base: MemberKind | None) -> Arrays:
        """The weights round 1 starts from: ``base``'s (a trained member of this kind), or fresh ones."""

    @abstractmethod
    def train(self, arrays: Arrays, sequences: list[np.ndarray], *, epochs: int, proximal_mu: float) -> tuple[Arrays, float]:
        """A client's local step: ``epochs`` over its ``sequences`` from ``arrays``; the new arrays and the last loss."""

    @abstractmethod
    def load(self, arrays: Arrays) -> MemberKind:
        """The member serving ``arrays``, ready to score, export and save."""

    def evaluate(self, arrays: Arrays, split: Split) -> dict[str, float]:
        """Full-ranking metrics of ``arrays`` on ``split``'s held-out items (averaged over its test users)."""
        return evaluate_full_ranking(self.load(arrays).user_scores(split), split)
