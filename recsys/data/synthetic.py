"""Seeded synthetic movie/TV data: power-law popularity, genre clusters, two domains.

It is the embedded default when no data set is given, and serves tests and scale tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DatasetBuilder, InteractionDataset

GENRE_CLUSTERS: tuple[tuple[str, ...], ...] = (
    ("Action", "Adventure", "Sci-Fi", "Thriller"),
    ("Comedy", "Romance", "Family"),
    ("Drama", "Crime", "Mystery"),
    ("Horror", "Thriller", "Fantasy"),
    ("Animation", "Children", "Family", "Fantasy"),
    ("Documentary", "History", "War"),
)


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int = 2000
    n_items: int = 1500
    mean_interactions: int = 40
    tv_share: float = 0.35
    popularity_exponent: float = 1.1
    seed: int = 7
    timestamps: int = 1  # 0: no time order (histories are sets, as in the ML-1M fixed split and anime)


def generate(spec: SyntheticSpec = SyntheticSpec()) -> InteractionDataset:
    """A data set whose users prefer one or two genre clusters and one domain, with Zipf popularity."""
    rng = np.random.default_rng(spec.seed)
    n_clusters = len(GENRE_CLUSTERS)
    item_cluster = rng.integers(0, n_clusters, spec.n_items)
    item_domain = (rng.random(spec.n_items) < spec.tv_share).astype(np.int64)
    popularity = 1.0 / np.arange(1, spec.n_items + 1) ** spec.popularity_exponent
    rng.shuffle(popularity)
    items = []
    for index in range(spec.n_items):
        cluster = GENRE_CLUSTERS[item_cluster[index]]
        n_genres = int(rng.integers(1, min(3, len(cluster)) + 1))
        genres = tuple(sorted(rng.choice(cluster, n_genres, replace=False)))
        domain = Domain.TV if item_domain[index] else Domain.MOVIE
        kind = "Series" if domain is Domain.TV else "Movie"
        items.append(Item(f"i{index}", f"{genres[0]} {kind} #{index}", genres, int(rng.integers(1950, 2026)), domain))

    builder = DatasetBuilder("synthetic", items)
    cluster_onehot = np.eye(n_clusters)[item_cluster]
    for user in range(spec.n_users):
        taste = rng.dirichlet(np.full(n_clusters, 0.3))
        tv_taste = rng.beta(2, 3)
        affinity = cluster_onehot @ taste + 0.02
        domain_weight = np.where(item_domain == 1, tv_taste, 1 - tv_taste)
        weights = popularity * affinity**2 * domain_weight
        count = min(spec.n_items // 2, max(5, int(rng.poisson(spec.mean_interactions))))
        chosen = rng.choice(spec.n_items, count, replace=False, p=weights / weights.sum())
        start = rng.uniform(1.0e9, 1.6e9)
        times = start + np.sort(rng.exponential(86400.0, count)).cumsum()
        for item, timestamp in zip(chosen, times, strict=True):
            builder.add(f"u{user}", f"i{item}", float(timestamp))
    return builder.build(has_timestamps=bool(spec.timestamps))


def parse_spec(text: str) -> SyntheticSpec:
    """'synthetic' or 'synthetic:n_users=500,n_items=300,seed=3' -> SyntheticSpec."""
    _, _, options = text.partition(":")
    values: dict[str, float | int] = {}
    fields = SyntheticSpec.__dataclass_fields__
    for pair in filter(None, options.split(",")):
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(f"synthetic option {pair!r}: expected one of {', '.join(fields)} as key=value")
        values[key] = float(raw) if fields[key].type == "float" else int(raw)
    return SyntheticSpec(**values)  # type: ignore[arg-type]
