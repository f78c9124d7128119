"""A federated client's data on its device: its users' training sequences with their validation and
test held-out items, and the item catalog. ``write_devices`` cuts a training run's users into such
folders for `cinesync federated simulate` (iid, by dominant genre, or by dominant domain); a client
reads only its own folder, which nothing sends anywhere."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data import Item
from recsys.data.splits import Split
from recsys.features import build_item_features
from recsys.run import MANIFEST

PARTITIONS = ("iid", "genre", "domain")
HISTORY_FILE = "history.npz"
CATALOG_FILE = "catalog.json"


@dataclass
class Device:
    """One client's own users: ``validation`` (training sequences without the validation items,
    which are held out) and ``test`` (the validation items inside the sequences, test items held out)."""

    items: list[Item]
    validation: Split
    test: Split

    @classmethod
    def load(cls, folder: Path) -> Device:
        folder = Path(folder)
        items = [Item.from_json(row) for row in json.loads((folder / CATALOG_FILE).read_text())["items"]]
        with np.load(folder / HISTORY_FILE) as arrays:
            kinds = json.loads(str(arrays["kinds"]))
            test = Split.from_arrays(arrays, "test", n_items=len(items), kind=kinds["test"])
            validation = Split.from_arrays(arrays, "validation", n_items=len(items), kind=kinds["validation"])
        return cls(items=items, validation=validation, test=test)


def users_of(split: Split, users: np.ndarray) -> Split:
    """``split`` restricted to ``users`` (renumbered 0..len(users) - 1), as a device holds it."""
    return Split(len(users), split.n_items, [split.train_sequences[u] for u in users],
                 [split.test_items[u] for u in users], split.kind, split.target)


def partition_users(test: Split, items: list[Item], *, clients: int, partition: str, seed: int) -> list[np.ndarray]:
    """Users of ``test`` cut into ``clients`` groups: "iid" at random; "genre" and "domain" in order
    of each user's dominant genre (or share of TV titles), so that clients differ in taste."""
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {', '.join(PARTITIONS)}, got {partition!r}")
    if not 1 <= clients <= test.n_users:
        raise ValueError(f"clients must be between 1 and the {test.n_users} users, got {clients}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(test.n_users)
    if partition != "iid":
        features = build_item_features(items)
        if partition == "genre":
            key = np.array([int(features.genres[test.train_sequences[u]].sum(axis=0).argmax())
                            if len(test.train_sequences[u]) else -1 for u in order])
        else:
            key = np.array([float(features.domain[test.train_sequences[u]].mean())
                            if len(test.train_sequences[u]) else 0.0 for u in order])
        order = order[np.argsort(key, kind="stable")]
    return [np.sort(part) for part in np.array_split(order, clients)]


def write_devices(run_folder: Path, out_dir: Path, *, clients: int, partition: str = "iid", seed: int = 0) -> list[Path]:
    """One device folder per client under ``out_dir`` with its share of the users of the training
    run at ``run_folder`` (the same split files the run was evaluated on); returns the folders."""
    run_folder = Path(run_folder)
    manifest = json.loads((run_folder / MANIFEST).read_text())
    catalog = json.loads((run_folder / CATALOG_FILE).read_text())
    items = [Item.from_json(row) for row in catalog["items"]]
    kinds = {"test": manifest["split"]["test"], "validation": manifest["split"]["validation"]}
    with np.load(run_folder / "split.npz") as arrays:
        test = Split.from_arrays(arrays, "test", n_items=len(items), kind=kinds["test"])
        validation = Split.from_arrays(arrays, "validation", n_items=len(items), kind=kinds["validation"])
    folders = []
    for index, users in enumerate(partition_users(test, items, clients=clients, partition=partition, seed=seed)):
        folder = Path(out_dir) / f"client-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / HISTORY_FILE, kinds=np.array(json.dumps(kinds)),
                 **users_of(test, users).to_arrays("test"), **users_of(validation, users).to_arrays("validation"))
        shutil.copy2(run_folder / CATALOG_FILE, folder / CATALOG_FILE)
        folders.append(folder)
    return folders
