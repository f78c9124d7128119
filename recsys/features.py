"""Feature tables built from a catalog and a training split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def build_feature_tables(split: Split, item_features: ItemFeatures) -> FeatureTables:
    """Ranking lookup tables: user genre and domain taste from train history, item popularity and year."""
    users, items = split.train_pairs()
    genres = item_features.genres
    affinity = np.zeros((split.n_users, genres.shape[1]), dtype=np.float64)
    np.add.at(affinity, users, genres[items])
    totals = affinity.sum(axis=1, keepdims=True)
    affinity = np.divide(affinity, totals, out=np.zeros_like(affinity), where=totals > 0)
    activity = np.bincount(users, minlength=split.n_users).astype(np.float64)
    tv = np.bincount(users, weights=item_features.domain[items].astype(np.float64), minlength=split.n_users)
    tv_share = np.divide(tv, activity, out=np.full_like(tv, 0.5), where=activity > 0)
    popularity = np.log1p(split.item_counts())
    buckets = item_features.year_bucket.astype(np.float64)
    year = np.where(buckets > 0, buckets / (YEAR_BUCKETS - 1), 0.5)
    return FeatureTables(
        user_genre_affinity=affinity.astype(np.float32),
        user_tv_share=tv_share.astype(np.float32),
        user_log_activity=(np.log1p(activity) / max(np.log1p(activity).max(), 1e-9)).astype(np.float32),
        item_genres=genres.astype(np.float32),
        item_log_popularity=(popularity / max(popularity.max(), 1e-9)).astype(np.float32),
        item_year=year.astype(np.float32),
        item_is_tv=item_features.domain.astype(np.float32),
    )


def user_tower_inputs(
    sequences: list[np.ndarray], user_features: np.ndarray, history_length: int, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_idx, last items as index + 1, user features) for ``users`` from their sequences."""
    histories = history_matrix([sequences[u] for u in users], history_length)
    return users.astype(np.int64), histories, user_features[users].astype(np.int64)


def item_tower_inputs(
    features: ItemFeatures, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item_idx, genres multi-hot, year bucket, domain) for ``items``."""
    return items.astype(np.int64), features.genres[items], features.year_bucket[items], features.domain[items]


def history_matrix(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """The last ``length`` items of each sequence as item index + 1, left-padded with 0."""
    matrix = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:]
        if len(tail):
            matrix[row, length - len(tail) :] = tail + 1
    return matrix
