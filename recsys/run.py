"""A training run on disk: what train writes and evaluate, export and publish read.

Layout: manifest.json (data, split kinds, pipeline spec, each kind with its hyper-parameters and
the choices validation made), catalog.json, split.npz (test and validation splits), kinds/<name>/
with each kind's state fitted on the test split's training part (what evaluation scores), and,
after the refit step, kinds-all/<name>/ with the members refit on every interaction (what users get).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.data import InteractionDataset, Item
from recsys.data.splits import Protocol, Split
from recsys.feature_assembly import FeatureTables
from recsys.features import build_feature_tables, build_item_features
from recsys.kinds import MemberKind, create
from recsys.kinds.base import Catalog
from recsys.kinds.fusion import DcnFusion

if TYPE_CHECKING:
    from recsys.pipeline import PipelineSpec

MANIFEST = "manifest.json"
KINDS_DIR = "kinds"
# Which interactions the members were fitted on -> the folder holding them.
FITS = {"train": KINDS_DIR, "all": "kinds-all"}


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class TrainedRun:
    """Everything a finished training run produced, loaded in memory. ``history`` holds, as its
    training part, the interactions the members were fitted on ("train": the test split's training
    part; "all": every interaction); ``tables`` are the ranking features of that same history."""

    folder: Path
    manifest: dict[str, Any]
    items: list[Item]
    user_ids: list[str]
    protocol: Protocol
    spec: PipelineSpec
    catalog: Catalog
    members: list[MemberKind]
    fusion: DcnFusion
    tables: FeatureTables
    fitted_on: str
    history: Split


def save_run(
    folder: Path,
    *,
    dataset: InteractionDataset,
    data_spec: str,
    protocol: Protocol,
    spec: PipelineSpec,
    members: list[MemberKind],
    fusion: DcnFusion,
    train_seconds: float,
    resumed: list[dict[str, Any]],
    groups: dict[str, Any],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.json").write_text(
        json.dumps({"items": [it.to_json() for it in dataset.items], "user_ids": dataset.user_ids})
    )
    cold = {} if protocol.cold_items is None else {"cold_items": protocol.cold_items}
    np.savez(
        folder / "split.npz",
        **protocol.test.to_arrays("test"),
        **protocol.validation.to_arrays("validation"),
        **cold,
    )
    for kind in [*members, fusion]:
        kind.save(folder / KINDS_DIR / kind.name)
    manifest = {
        "run_id": folder.name,
        "data": data_spec,
        "dataset": dataset.summary(),
        "split": protocol.summary(),
        "ordered": protocol.by_time,
        "pipeline": spec.to_dict(),
        "kinds": [kind.describe() for kind in [*members, fusion]],
        "members_fitted_on": "training part of the test split (validation items included)",
        "train_seconds": round(train_seconds, 1),  # of this attempt, when it resumed from checkpoints
        "resumed_from_checkpoints": resumed,
        "groups": groups,  # the group aggregation's tilt and the validation figures it was chosen on
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def load_run(folder: Path, *, fitted_on: str = "train") -> TrainedRun:
    """The run at ``folder`` with its members as fitted on ``fitted_on`` ("train" or "all")."""
    from recsys.pipeline import PipelineSpec

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{folder} is not a finished training run (no {MANIFEST})")
    if fitted_on not in FITS:
        raise ValueError(f"fitted_on must be one of {', '.join(FITS)}, not {fitted_on!r}")
    if not (folder / FITS[fitted_on]).is_dir():
        raise FileNotFoundError(f"{folder} has no members fitted on {fitted_on!r} ({FITS[fitted_on]}/): run its refit step")
    manifest = json.loads((folder / MANIFEST).read_text())
    catalog_json = json.loads((folder / "catalog.json").read_text())
    spec = PipelineSpec.from_dict(manifest["pipeline"])
    items = [Item.from_json(row) for row in catalog_json["items"]]
    with np.load(folder / "split.npz") as arrays:
        test = Split.from_arrays(arrays, "test", n_items=len(items), kind=manifest["split"]["test"])
        validation = Split.from_arrays(arrays, "validation", n_items=len(items), kind=manifest["split"]["validation"])
        cold_items = arrays["cold_items"].astype(np.int64) if "cold_items" in arrays else None
    catalog = Catalog(
        n_users=test.n_users,
        n_items=len(items),
        items=tuple(items),
        item_features=build_item_features(items),
        ordered=bool(manifest["ordered"]),
        history_length=spec.history_length,
    )
    kinds = {}
    for described in manifest["kinds"]:
        kind = create(described["kind"], catalog, described["params"], seed=spec.seed)
        kind.chosen = described["chosen"]
        fit = FITS[fitted_on] if kind.name in spec.members else KINDS_DIR  # the fusion is fitted once
        kind.load_state(folder / fit / kind.name)
        kinds[kind.name] = kind
    members = [kinds[name] for name in spec.members]
    fusion = kinds[spec.fusion]
    assert all(isinstance(m, MemberKind) for m in members) and isinstance(fusion, DcnFusion)
    history = test if fitted_on == "train" else test.everything()
    return TrainedRun(
        folder=folder,
        manifest=manifest,
        items=items,
        user_ids=list(catalog_json["user_ids"]),
        protocol=Protocol(test=test, validation=validation, by_time=bool(manifest["ordered"]),
                          target_domain=manifest["split"].get("target_domain"),
                          cold_items=cold_items).sampled(spec.evaluation_users, seed=spec.seed),
        spec=spec,
        catalog=catalog,
        members=members,  # type: ignore[arg-type]
        fusion=fusion,
        tables=build_feature_tables(history, catalog.item_features, history_length=spec.history_length),
        fitted_on=fitted_on,
        history=history,
    )
