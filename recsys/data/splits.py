"""Train/test splits: time-ordered leave-one-out, or a data set's published fixed split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.dataset import InteractionDataset


@dataclass
class Split:
    """Per-user train sequences (time order where known) and held-out test items."""

    n_users: int
    n_items: int
    train_sequences: list[np.ndarray]
    test_items: list[np.ndarray]
    kind: str

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        users = np.repeat(np.arange(self.n_users), [len(s) for s in self.train_sequences])
        items = np.concatenate(self.train_sequences) if self.n_users else np.zeros(0, dtype=np.int64)
        return users.astype(np.int64), items.astype(np.int64)

    def test_users(self) -> np.ndarray:
        return np.array([u for u, t in enumerate(self.test_items) if len(t)], dtype=np.int64)

    def item_counts(self) -> np.ndarray:
        _, items = self.train_pairs()
        return np.bincount(items, minlength=self.n_items).astype(np.float64)


def _ordered(dataset: InteractionDataset, mask: np.ndarray) -> list[np.ndarray]:
    """Each user's items under mask, ordered by timestamp (file order breaks ties), duplicates dropped."""
    users = dataset.user_idx[mask]
    items = dataset.item_idx[mask]
    times = dataset.timestamps[mask] if dataset.timestamps is not None else np.zeros(len(users))
    order = np.lexsort((np.arange(len(users)), times, users))
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, np.arange(dataset.n_users + 1))
    sequences = []
    for user in range(dataset.n_users):
        seq = items[bounds[user] : bounds[user + 1]]
        _, first = np.unique(seq, return_index=True)
        sequences.append(seq[np.sort(first)])
    return sequences


def leave_one_out(dataset: InteractionDataset) -> Split:
    """The last interaction of every user with at least two is the test item."""
    sequences = _ordered(dataset, np.ones(dataset.n_interactions, dtype=bool))
    train, test = [], []
    for seq in sequences:
        if len(seq) >= 2:
            train.append(seq[:-1])
            test.append(seq[-1:])
        else:
            train.append(seq)
            test.append(seq[:0])
    return Split(dataset.n_users, dataset.n_items, train, test, "leave-one-out")


def fixed_split(dataset: InteractionDataset) -> Split:
    """The data set's own split (``test_mask``); test items also in train are dropped."""
    if dataset.test_mask is None:
        raise ValueError(f"{dataset.name} has no fixed split")
    train = _ordered(dataset, ~dataset.test_mask)
    test = _ordered(dataset, dataset.test_mask)
    test = [np.setdiff1d(t, tr, assume_unique=True) for t, tr in zip(test, train, strict=True)]
    return Split(dataset.n_users, dataset.n_items, train, test, "fixed")


def default_split(dataset: InteractionDataset) -> Split:
    """A published fixed split where the data set has one, else leave-one-out."""
    return fixed_split(dataset) if dataset.test_mask is not None else leave_one_out(dataset)
