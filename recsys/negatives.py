"""Negative sampling for pairwise losses: uniform over the items a user has not interacted with."""

from __future__ import annotations

import numpy as np
import torch

MAX_REDRAWS = 32  # a user who has seen almost every item keeps the rare seen negative after this


class UnseenSampler:
    """Draws, for each user of a batch, an item outside that user's history (rejection sampling)."""

    def __init__(self, sequences: list[np.ndarray], n_items: int, generator: torch.Generator) -> None:
        users = np.repeat(np.arange(len(sequences), dtype=np.int64), [len(s) for s in sequences])
        items = np.concatenate(sequences).astype(np.int64) if sequences else np.zeros(0, np.int64)
        self._seen = torch.from_numpy(np.unique(users * n_items + items))
        self._n_items = n_items
        self._generator = generator

    def _is_seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self._n_items + items
        where = torch.searchsorted(self._seen, keys).clamp(max=max(len(self._seen) - 1, 0))
        return self._seen[where] == keys if len(self._seen) else torch.zeros_like(keys, dtype=torch.bool)

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        """One unseen item per entry of ``users``."""
        items = torch.randint(0, self._n_items, users.shape, generator=self._generator)
        for _ in range(MAX_REDRAWS):
            seen = self._is_seen(users, items)
            if not bool(seen.any()):
                break
            items[seen] = torch.randint(0, self._n_items, (int(seen.sum()),), generator=self._generator)
        return items
