"""The serving bundle: what the control plane needs besides Triton, one folder per model version.

Layout: <serving>/<version>/{manifest.json, items.json, users.json, item_embeddings.npy,
user_embeddings.npy, seen.npz, popularity.npy} and <serving>/CURRENT naming the live version.
The control plane reads it with numpy and json alone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from exporters.files import replace_file, version_folders
from recsys.run import TrainedRun

CURRENT = "CURRENT"


def existing_versions(serving_dir: Path) -> list[int]:
    return version_folders(serving_dir)


def write_bundle(
    serving_dir: Path,
    version: int,
    *,
    run: TrainedRun,
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    extra_manifest: dict[str, Any],
) -> Path:
    """Stage the bundle, rename it to <serving>/<version>, then point CURRENT at it."""
    serving_dir = Path(serving_dir).resolve()
    serving_dir.mkdir(parents=True, exist_ok=True)
    staging = serving_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        seen = [np.union1d(train, test) for train, test in zip(run.split.train_sequences, run.split.test_items, strict=True)]
        np.save(staging / "user_embeddings.npy", user_embeddings.astype(np.float32))
        np.save(staging / "item_embeddings.npy", item_embeddings.astype(np.float32))
        np.save(staging / "popularity.npy", run.split.item_counts().astype(np.float32))
        np.savez(staging / "seen.npz", items=np.concatenate(seen).astype(np.int64), lengths=[len(s) for s in seen])
        (staging / "items.json").write_text(json.dumps([it.to_json() for it in run.items]))
        (staging / "users.json").write_text(json.dumps(run.user_ids))
        manifest = {
            "version": version,
            "run_id": run.manifest["run_id"],
            "data": run.manifest["data"],
            "dataset": run.manifest["dataset"],
            "published": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra_manifest,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        target = serving_dir / str(version)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    point_current(serving_dir, version)
    return target


def point_current(serving_dir: Path, version: int) -> None:
    """Atomically make ``version`` the live bundle."""
    replace_file(Path(serving_dir) / CURRENT, f"{version}\n")
