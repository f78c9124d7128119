"""Writes the serving bundle (layout in cinesync.bundle): catalog, users, each user's published
history (what the control plane seeds its live histories from), popularity, the history length the
models read, the drift reference (exporters/drift_reference.py), and every retriever's index arrays. Making it current is the publisher's last step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from cinesync import bundle
from cinesync.groups import DEFAULT_TILT
from cinesync.indexes import index_class
from exporters.drift_reference import drift_reference
from recsys.features import recent
from recsys.kinds.base import ScorerInput
from recsys.run import TrainedRun

INDEX_SAMPLE_USERS = 1024  # users whose histories an index may tune itself on


def write_bundle(
    serving_dir: Path, version: int, *, run: TrainedRun, extra_manifest: dict[str, Any], exact_below: int,
    recall_target: float,
) -> Path:
    """Stage the bundle and rename it to <serving>/<version>.

    Each retriever's index kind prepares what the control plane will load (for FAISS: the index,
    exact up to ``exact_below`` items, else tuned to ``recall_target``), and its plan is recorded.

    A user's published history is exactly what the members were fitted on: for a run fitted on its
    training part, what offline evaluation read and excluded, so the served answer for a test user
    is the evaluated one; for a run refit on everything, all the user's interactions.
    """
    serving_dir = Path(serving_dir).resolve()
    serving_dir.mkdir(parents=True, exist_ok=True)
    staging = serving_dir / f".staging-{uuid.uuid4().hex}"
    (staging / bundle.RETRIEVERS_DIR).mkdir(parents=True)
    try:
        histories = run.history.train_sequences
        np.save(staging / bundle.POPULARITY, run.history.item_counts().astype(np.float32))
        np.savez(staging / bundle.SEEN, items=np.concatenate(histories).astype(np.int64),
                 lengths=[len(s) for s in histories])
        (staging / bundle.ITEMS).write_text(json.dumps([it.to_json() for it in run.items]))
        (staging / bundle.USERS).write_text(json.dumps(run.user_ids))
        (staging / bundle.DRIFT_REFERENCE).write_text(json.dumps(drift_reference(run).to_json()))
        retrievers = []
        item_domains = np.array([item.domain.value for item in run.items])
        rng = np.random.default_rng(0)
        sampled = rng.choice(len(histories), min(len(histories), INDEX_SAMPLE_USERS), replace=False)
        sample = recent([histories[u] for u in sampled], run.spec.history_length)
        for member in run.spec.retrieving(run.members):
            assert member.index_kind is not None, f"{member.name} retrieves, so its kind names an index kind"
            arrays, plan = index_class(member.index_kind).prepare(
                member.retrieval_arrays(sample), item_domains, exact_below=exact_below, recall_target=recall_target
            )
            np.savez(staging / bundle.retriever_file(member.name), **arrays)
            retrievers.append({"member": member.name, "index": member.index_kind, "plan": plan})
        manifest = {
            "version": version,
            "run_id": run.manifest["run_id"],
            "data": run.manifest["data"],
            "dataset": run.manifest["dataset"],
            "retrievers": retrievers,
            "depth": run.spec.depth,
            "history_length": run.spec.history_length,
            # Live histories are shared by the versions of one data set, split and fit, never across:
            # an evaluated fit's histories stop before its test items, a fit on everything's do not.
            "history_scope": hashlib.sha256(
                f"{run.manifest['data']}|{run.spec.split}|{run.fitted_on}".encode()).hexdigest()[:10],
            # The encoding ensemble's outputs, and those the ranking ensemble reads back as inputs.
            "encoders": [m.name for m in run.members if m.encoder_module() is not None],
            "ranking_vectors": [m.name for m in run.members if ScorerInput.USER_VECTOR in m.scorer_inputs],
            "fitted_on": run.fitted_on,
            "group_tilt": run.manifest.get("groups", {}).get("tilt", DEFAULT_TILT),
            "published": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra_manifest,
        }
        (staging / bundle.MANIFEST).write_text(json.dumps(manifest, indent=2))
        target = serving_dir / str(version)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
