"""Shared test fixtures: a small seeded training run, its ONNX export, and isolation settings."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# Every test session gets its own Celery queue, so a stray worker elsewhere cannot take its jobs.
os.environ.setdefault("CINESYNC_CELERY_QUEUE", f"cinesync-test-{uuid.uuid4().hex[:8]}")

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
SMALL_SYNTHETIC = "synthetic:n_users=300,n_items=200,mean_interactions=20,seed=3"


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.pipeline import evaluate, train
    from recsys.training import TrainConfig

    folder = train(
        SMALL_SYNTHETIC, tmp_path_factory.mktemp("runs"), TrainConfig(retrieval_epochs=3, ranker_epochs=1),
        lambda *_: None,
    )
    evaluate(folder)
    return folder


@pytest.fixture(scope="session")
def exported_run(small_run: Path) -> Path:
    from exporters.onnx_export import export_run
    from recsys.run import load_run

    export_run(load_run(small_run), small_run / "onnx")
    return small_run / "onnx"
