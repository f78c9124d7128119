"""A training run on disk: what train writes and evaluate, export and publish read."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.data import InteractionDataset, Item
from recsys.data.splits import Split
from recsys.feature_assembly import FeatureTables
from recsys.features import (
    ItemFeatures,
    build_feature_tables,
    build_item_features,
    item_tower_inputs,
    user_tower_inputs,
)
from recsys.models import DCNRanker, ItemTower, RankerConfig, TwoTowerConfig, UserTower
from recsys.training import TrainConfig, tower_item_embeddings, tower_user_embeddings

MANIFEST = "manifest.json"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class TrainedRun:
    """Everything a finished training run produced, loaded in memory."""

    folder: Path
    manifest: dict[str, Any]
    items: list[Item]
    user_ids: list[str]
    split: Split
    item_features: ItemFeatures
    user_features: np.ndarray
    tables: FeatureTables
    user_tower: UserTower
    item_tower: ItemTower
    ranker: DCNRanker

    @property
    def history_length(self) -> int:
        return int(self.manifest["train_config"]["history_length"])

    def user_tower_inputs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return user_tower_inputs(self.split.train_sequences, self.user_features, self.history_length, users)

    def item_tower_inputs(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return item_tower_inputs(self.item_features, items)

    def user_embeddings(self, users: np.ndarray | None = None) -> np.ndarray:
        return tower_user_embeddings(self.user_tower, self.split, self.user_features, self.history_length, users)

    def item_embeddings(self) -> np.ndarray:
        return tower_item_embeddings(self.item_tower, self.item_features)


def save_run(
    folder: Path,
    *,
    dataset: InteractionDataset,
    data_spec: str,
    split: Split,
    train_config: TrainConfig,
    user_tower: UserTower,
    item_tower: ItemTower,
    two_tower_config: TwoTowerConfig,
    ranker: DCNRanker,
    ranker_config: RankerConfig,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.json").write_text(
        json.dumps({"items": [it.to_json() for it in dataset.items], "user_ids": dataset.user_ids})
    )
    lengths = [len(s) for s in split.train_sequences]
    test_lengths = [len(t) for t in split.test_items]
    np.savez(
        folder / "split.npz",
        train=np.concatenate(split.train_sequences),
        train_lengths=lengths,
        test=np.concatenate(split.test_items),
        test_lengths=test_lengths,
        user_features=dataset.user_features,
    )
    torch.save(
        {"user_tower": user_tower.state_dict(), "item_tower": item_tower.state_dict()}, folder / "two_tower.pt"
    )
    torch.save(ranker.state_dict(), folder / "ranker.pt")
    manifest = {
        "run_id": folder.name,
        "data": data_spec,
        "dataset": dataset.summary(),
        "split": split.kind,
        "train_config": train_config.to_dict(),
        "two_tower": two_tower_config.to_dict(),
        "ranker": ranker_config.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _unpack(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1]) if len(lengths) else []


def load_run(folder: Path) -> TrainedRun:
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{folder} is not a finished training run (no {MANIFEST})")
    manifest = json.loads((folder / MANIFEST).read_text())
    catalog = json.loads((folder / "catalog.json").read_text())
    items = [Item.from_json(row) for row in catalog["items"]]
    with np.load(folder / "split.npz") as arrays:
        train = _unpack(arrays["train"], arrays["train_lengths"])
        test = _unpack(arrays["test"], arrays["test_lengths"])
        user_features = arrays["user_features"]
    split = Split(len(train), len(items), train, test, manifest["split"])
    item_features = build_item_features(items)
    two_tower_config = TwoTowerConfig(**manifest["two_tower"])
    towers = torch.load(folder / "two_tower.pt", weights_only=True)
    user_tower, item_tower = UserTower(two_tower_config), ItemTower(two_tower_config)
    user_tower.load_state_dict(towers["user_tower"])
    item_tower.load_state_dict(towers["item_tower"])
    ranker = DCNRanker(RankerConfig(**manifest["ranker"]))
    ranker.load_state_dict(torch.load(folder / "ranker.pt", weights_only=True))
    tables = build_feature_tables(split, item_features)
    return TrainedRun(
        folder=folder,
        manifest=manifest,
        items=items,
        user_ids=list(catalog["user_ids"]),
        split=split,
        item_features=item_features,
        user_features=user_features,
        tables=tables,
        user_tower=user_tower.eval(),
        item_tower=item_tower.eval(),
        ranker=ranker.eval(),
    )
