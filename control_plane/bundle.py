"""Reads the serving bundle a publish step wrote: catalog, embeddings, seen items, popularity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

CURRENT = "CURRENT"


@dataclass(frozen=True)
class CatalogItem:
    item_id: str
    title: str
    genres: tuple[str, ...]
    year: int | None
    domain: str  # "movie" | "tv"


@dataclass
class ServingBundle:
    version: int
    manifest: dict[str, Any]
    items: list[CatalogItem]
    user_index: dict[str, int]
    user_embeddings: NDArray[np.float32]
    item_embeddings: NDArray[np.float32]
    seen_items: list[NDArray[np.int64]]
    popularity: NDArray[np.float32]
    item_domains: NDArray[np.str_]  # "movie" / "tv" per item index


def current_version(serving_dir: Path) -> int | None:
    """The version CURRENT names, or None before the first publish."""
    try:
        return int((Path(serving_dir) / CURRENT).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def load_bundle(serving_dir: Path, version: int) -> ServingBundle:
    folder = Path(serving_dir) / str(version)
    items = [
        CatalogItem(row["item_id"], row["title"], tuple(row["genres"]), row["year"], row["domain"])
        for row in json.loads((folder / "items.json").read_text())
    ]
    users = json.loads((folder / "users.json").read_text())
    with np.load(folder / "seen.npz") as seen:
        flat, lengths = seen["items"], seen["lengths"]
    seen_items = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return ServingBundle(
        version=version,
        manifest=json.loads((folder / "manifest.json").read_text()),
        items=items,
        user_index={user: index for index, user in enumerate(users)},
        user_embeddings=np.load(folder / "user_embeddings.npy"),
        item_embeddings=np.load(folder / "item_embeddings.npy"),
        seen_items=seen_items,
        popularity=np.load(folder / "popularity.npy"),
        item_domains=np.array([item.domain for item in items]),
    )
