"""The global model of a federated run as a training run (recsys.run's layout) that export and publish
take like any other: its kind as the only member and retriever, a fusion passing its score through,
and the base run's catalog and split files (which the exporter's parity and INT8 checks read)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from recsys.kinds import MemberKind, create
from recsys.kinds.fusion import DcnFusion
from recsys.pipeline import CASCADE, METRICS_FILE
from recsys.run import KINDS_DIR, MANIFEST, TrainedRun


def write_global_run(base: TrainedRun, member: MemberKind, folder: Path, *, federated: dict[str, Any],
                     metrics: dict[str, float]) -> Path:
    """``folder`` holding ``member`` (the global model) served alone; ``federated`` (configuration and
    round history) goes into the manifest, ``metrics`` (federated test evaluation) into metrics.json."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in ("catalog.json", "split.npz"):
            shutil.copy2(base.folder / name, staging / name)
        fusion = create(base.spec.fusion, member.catalog, seed=base.spec.seed)
        assert isinstance(fusion, DcnFusion)
        fusion.pass_through(member.name, [member.name], 1 + base.tables.dense_dim)
        for kind in (member, fusion):
            kind.save(staging / KINDS_DIR / kind.name)
        spec = {**base.spec.to_dict(), "members": [member.name], "retrievers": [member.name], "options": {}}
        manifest = {**base.manifest, "run_id": folder.name, "pipeline": spec,
                    "kinds": [member.describe(), fusion.describe()],
                    "members_fitted_on": "federated rounds on the clients' own histories (validation items held out)",
                    "federated": {**federated, "base_run": base.manifest["run_id"]},
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for key in ("groups", "refit_on_all", "catalog_update", "resumed_from_checkpoints"):
            manifest.pop(key, None)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        (staging / METRICS_FILE).write_text(json.dumps({member.name: metrics, CASCADE: metrics}, indent=2))
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
