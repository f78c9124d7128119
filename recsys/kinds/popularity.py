"""Popularity: every user gets the items most users have, the floor every model must clear."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.data.splits import Split
from recsys.kinds.base import MemberKind, Progress, Role, no_progress

STATE_FILE = "popularity.npy"


@dataclass
class PopularityParams:
    """Popularity has no hyper-parameters."""


class ItemTableScorer(torch.nn.Module):
    """score(u, i) = table[i], whoever the user is."""

    table: torch.Tensor  # a registered buffer, declared for the type checker

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("table", torch.from_numpy(table.astype(np.float32)))

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return self.table[item_idx.reshape(-1)].unsqueeze(1) + 0.0 * user_idx.to(torch.float32)


class Popularity(MemberKind):
    """log(1 + number of users who have the item) in the fitted interactions."""

    name = "popularity"
    roles = frozenset({Role.SCORER})
    Params = PopularityParams

    log_counts: np.ndarray

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        items = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        self.log_counts = np.log1p(np.bincount(items, minlength=self.catalog.n_items)).astype(np.float32)

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        self.refit(split.train_sequences, progress)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.log_counts, (len(users), self.catalog.n_items))

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.log_counts[items]

    def scorer_module(self) -> torch.nn.Module:
        return ItemTableScorer(self.log_counts)

    def save_state(self, folder: Path) -> None:
        np.save(folder / STATE_FILE, self.log_counts)

    def load_state(self, folder: Path) -> None:
        self.log_counts = np.load(folder / STATE_FILE)
