"""Popularity: every user gets the items most users have, the floor every model must clear."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.data.splits import Split
from recsys.kinds.base import Catalog, MemberKind, Progress, Role, ScorerInput, no_progress

STATE_FILE = "popularity.npy"


@dataclass
class PopularityParams:
    """Popularity has no hyper-parameters."""


class ItemTableScorer(torch.nn.Module):
    """items ``[B, W]`` (index + 1) -> table[item], whoever the user is."""

    table: torch.Tensor  # a registered buffer, declared for the type checker

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("table", torch.from_numpy(np.concatenate([[0.0], table]).astype(np.float32)))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return torch.index_select(self.table, 0, items.reshape(-1)).reshape(items.shape)


class Popularity(MemberKind):
    """log(1 + number of users who have the item) in the fitted interactions."""

    name = "popularity"
    roles = frozenset({Role.SCORER})
    Params = PopularityParams
    scorer_inputs = (ScorerInput.ITEMS,)

    log_counts: np.ndarray

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        items = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        self.log_counts = np.log1p(np.bincount(items, minlength=self.catalog.n_items)).astype(np.float32)

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        self.refit(split.train_sequences, progress)

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.log_counts, (len(histories), self.catalog.n_items))

    def scorer_module(self) -> torch.nn.Module:
        return ItemTableScorer(self.log_counts)

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        del content, warm  # a new title has no users yet
        self.log_counts = np.concatenate([self.log_counts, np.zeros(catalog.n_items - self.catalog.n_items,
                                                                    dtype=np.float32)])
        self.catalog = catalog

    def save_state(self, folder: Path) -> None:
        np.save(folder / STATE_FILE, self.log_counts)

    def load_state(self, folder: Path) -> None:
        self.log_counts = np.load(folder / STATE_FILE)
