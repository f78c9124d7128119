"""Feature tables built from a catalog and a training split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cinesync.triton import history_row
from recsys.data.catalog import Domain, Item
from recsys.data.splits import Split
from recsys.feature_assembly import FeatureTables

YEAR_MIN, YEAR_BUCKET, YEAR_BUCKETS = 1900, 5, 27  # bucket 0: unknown year


@dataclass
class ItemFeatures:
    """Item tower inputs for every item index."""

    genre_vocabulary: list[str]
    genres: np.ndarray  # [n_items, n_genres] float32 multi-hot
    year_bucket: np.ndarray  # [n_items] int64
    domain: np.ndarray  # [n_items] int64, 0 movie / 1 tv

    @property
    def n_genres(self) -> int:
        return len(self.genre_vocabulary)


def build_item_features(items: list[Item]) -> ItemFeatures:
    vocabulary = sorted({g for it in items for g in it.genres}) or ["(none)"]
    position = {g: i for i, g in enumerate(vocabulary)}
    genres = np.zeros((len(items), len(vocabulary)), dtype=np.float32)
    for row, item in enumerate(items):
        for genre in item.genres:
            genres[row, position[genre]] = 1.0
    years = np.array([it.year or 0 for it in items], dtype=np.int64)
    bucket = np.where(years > 0, np.clip((years - YEAR_MIN) // YEAR_BUCKET + 1, 1, YEAR_BUCKETS - 1), 0)
    domain = np.array([0 if it.domain is Domain.MOVIE else 1 for it in items], dtype=np.int64)
    return ItemFeatures(vocabulary, genres, bucket.astype(np.int64), domain)


def build_feature_tables(split: Split, item_features: ItemFeatures, *, history_length: int) -> FeatureTables:
    """Ranking lookup tables (item popularity in ``split``'s training part, genres, year, domain),
    indexed by item index + 1 with an all-zero padding row 0."""
    popularity = np.log1p(split.item_counts())
    buckets = item_features.year_bucket.astype(np.float64)
    year = np.where(buckets > 0, buckets / (YEAR_BUCKETS - 1), 0.5)

    def padded(column: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros((1, *column.shape[1:])), column]).astype(np.float32)

    return FeatureTables(
        item_genres=padded(item_features.genres),
        item_log_popularity=padded(popularity / max(popularity.max(), 1e-9)),
        item_year=padded(year),
        item_is_tv=padded(item_features.domain.astype(np.float64)),
        history_length=history_length,
    )


def recent(sequences: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    """The last ``length`` items of each sequence: the part of a history a model sees."""
    return [np.asarray(seq[-length:] if length else seq[:0], dtype=np.int64) for seq in sequences]


def item_tower_inputs(
    features: ItemFeatures, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item_idx, genres multi-hot, year bucket, domain) for ``items``."""
    return items.astype(np.int64), features.genres[items], features.year_bucket[items], features.domain[items]


def history_matrix(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The last ``length`` items of each sequence as item index + 1, left-padded with 0: the rows of
    serving's HISTORY tensor (cinesync.triton.history_row)."""
    if not len(sequences):
        return np.zeros((0, length), dtype=np.int64)
    return np.stack([history_row(seq, length) for seq in sequences])
