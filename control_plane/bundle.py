"""Reads the serving bundle a publish step wrote (layout in cinesync.bundle): catalog, users, their
published histories, popularity, the history length and encoders of the version, its drift
reference, and the retrievers' index arrays. numpy and json only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cinesync import bundle as layout
from cinesync.drift import DriftReference
from cinesync.groups import DEFAULT_TILT


@dataclass(frozen=True)
class CatalogItem:
    item_id: str
    title: str
    genres: tuple[str, ...]
    year: int | None
    domain: str  # "movie" | "tv"


@dataclass(frozen=True)
class RetrieverArrays:
    """One retriever member's exported arrays and the index kind that serves them."""

    member: str
    index: str
    arrays: dict[str, NDArray[np.generic]]
    plan: dict[str, Any]  # what the exporter built and how to search it


@dataclass
class ServingBundle:
    """One published version as the control plane holds it."""

    version: int
    manifest: dict[str, Any]
    items: list[CatalogItem]
    item_index: dict[str, int]  # item id -> item index
    user_index: dict[str, int]
    histories: list[NDArray[np.int64]]  # each user's published history, oldest first
    popularity: NDArray[np.float32]
    item_domains: NDArray[np.str_]  # "movie" / "tv" per item index
    retrievers: list[RetrieverArrays]
    depth: int  # candidates each retriever proposes, as the run was evaluated
    history_length: int  # the most recent history items the models read
    encoders: list[str]  # members whose user vectors the encoding ensemble makes
    ranking_vectors: list[str]  # members whose user vectors the ranking ensemble reads
    group_tilt: float  # cinesync.groups.aggregate's tilt, chosen on validation groups at training
    drift_reference: DriftReference | None  # what it answered on validation requests (None: published before)

    def history_key(self, user_id: str) -> str:
        """The user's live history key in the history store, scoped by the version's data set, split
        and fit (the publisher's ``history_scope``): the same user id in another data set is another
        person, and an evaluated fit's histories must not hold its test items."""
        return f"{self.manifest['history_scope']}:{user_id}"

    def published_history(self, user_id: str) -> NDArray[np.int64] | None:
        """The user's history as published (None for a user the data did not have)."""
        user = self.user_index.get(user_id)
        return self.histories[user] if user is not None else None


def load_bundle(serving_dir: Path, version: int) -> ServingBundle:
    folder = Path(serving_dir) / str(version)
    manifest = json.loads((folder / layout.MANIFEST).read_text())
    items = [
        CatalogItem(row["item_id"], row["title"], tuple(row["genres"]), row["year"], row["domain"])
        for row in json.loads((folder / layout.ITEMS).read_text())
    ]
    users = json.loads((folder / layout.USERS).read_text())
    with np.load(folder / layout.SEEN) as seen:
        flat, lengths = seen["items"], seen["lengths"]
    histories = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    retrievers = []
    for entry in manifest["retrievers"]:
        with np.load(folder / layout.retriever_file(entry["member"])) as arrays:
            retrievers.append(RetrieverArrays(entry["member"], entry["index"], dict(arrays), entry.get("plan", {})))
    return ServingBundle(
        version=version,
        manifest=manifest,
        items=items,
        item_index={item.item_id: index for index, item in enumerate(items)},
        user_index={user: index for index, user in enumerate(users)},
        histories=histories,
        popularity=np.load(folder / layout.POPULARITY),
        item_domains=np.array([item.domain for item in items]),
        retrievers=retrievers,
        depth=int(manifest["depth"]),
        history_length=int(manifest["history_length"]),
        encoders=list(manifest["encoders"]),
        ranking_vectors=list(manifest["ranking_vectors"]),
        group_tilt=float(manifest.get("group_tilt", DEFAULT_TILT)),
        drift_reference=DriftReference.load(folder / layout.DRIFT_REFERENCE),
    )
