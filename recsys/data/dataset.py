"""The in-memory interaction data set every reader produces, and the error for malformed files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys.data.catalog import Domain, Item


class DataFormatError(ValueError):
    """A data file that does not parse; the message names the file and the line."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


@dataclass
class InteractionDataset:
    """Users, a catalog and their interactions, with dense 0-based indices.

    ``user_features`` holds categorical codes (``[n_users, n_features]``) whose sizes are in
    ``user_feature_cardinalities``; a data set without user features has one constant feature.
    ``test_mask`` marks interactions of a published fixed test split, when the data set has one.
    """

    name: str
    items: list[Item]
    user_ids: list[str]
    user_idx: np.ndarray
    item_idx: np.ndarray
    timestamps: np.ndarray | None = None
    user_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.int64))
    user_feature_cardinalities: list[int] = field(default_factory=lambda: [1])
    test_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.user_features.shape[0] != len(self.user_ids):
            self.user_features = np.zeros((len(self.user_ids), 1), dtype=np.int64)
            self.user_feature_cardinalities = [1]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return int(self.user_idx.shape[0])

    def domains(self) -> np.ndarray:
        """0 for movie, 1 for tv, per item index."""
        return np.array([0 if it.domain is Domain.MOVIE else 1 for it in self.items], dtype=np.int64)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.n_users} users, {self.n_items} items, {self.n_interactions} interactions"
            + (", fixed split" if self.test_mask is not None else "")
        )


class DatasetBuilder:
    """Collects raw (user id, item id, timestamp) rows and assigns dense indices."""

    def __init__(self, name: str, items: list[Item]) -> None:
        self.name = name
        self.items = list(items)
        self._item_index = {it.item_id: i for i, it in enumerate(self.items)}
        self._user_index: dict[str, int] = {}
        self._users: list[int] = []
        self._item_rows: list[int] = []
        self._times: list[float] = []
        self._test: list[bool] = []

    def user_index(self, user_id: str) -> int:
        index = self._user_index.get(user_id)
        if index is None:
            index = self._user_index[user_id] = len(self._user_index)
        return index

    def add(self, user_id: str, item_id: str, timestamp: float = 0.0, *, test: bool = False) -> None:
        item = self._item_index.get(item_id)
        if item is None:
            # Interactions with an item missing from the item file are kept, under a placeholder.
            item = self._item_index[item_id] = len(self.items)
            self.items.append(Item(item_id, f"item {item_id}", (), None, Domain.MOVIE))
        self._users.append(self.user_index(user_id))
        self._item_rows.append(item)
        self._times.append(timestamp)
        self._test.append(test)

    def build(
        self,
        *,
        has_timestamps: bool,
        user_features: dict[str, dict[str, str]] | None = None,
        fixed_split: bool = False,
    ) -> InteractionDataset:
        user_ids = [""] * len(self._user_index)
        for uid, index in self._user_index.items():
            user_ids[index] = uid
        features, cardinalities = _encode_user_features(user_ids, user_features or {})
        return InteractionDataset(
            name=self.name,
            items=self.items,
            user_ids=user_ids,
            user_idx=np.asarray(self._users, dtype=np.int64),
            item_idx=np.asarray(self._item_rows, dtype=np.int64),
            timestamps=np.asarray(self._times, dtype=np.float64) if has_timestamps else None,
            user_features=features,
            user_feature_cardinalities=cardinalities,
            test_mask=np.asarray(self._test, dtype=bool) if fixed_split else None,
        )


def _encode_user_features(
    user_ids: list[str], columns: dict[str, dict[str, str]]
) -> tuple[np.ndarray, list[int]]:
    """Categorical codes per user (column -> user id -> value); code 0 is 'unknown'."""
    if not columns:
        return np.zeros((len(user_ids), 1), dtype=np.int64), [1]
    encoded = np.zeros((len(user_ids), len(columns)), dtype=np.int64)
    cardinalities = []
    for col, values_by_user in enumerate(columns.values()):
        vocabulary: dict[str, int] = {}
        for row, user_id in enumerate(user_ids):
            value = values_by_user.get(user_id)
            if value is not None:
                encoded[row, col] = vocabulary.setdefault(value, len(vocabulary) + 1)
        cardinalities.append(len(vocabulary) + 1)
    return encoded, cardinalities
