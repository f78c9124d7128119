"""Shared test fixtures: a small seeded training run, its ONNX export, and isolation settings."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from recsys.pipeline import PipelineSpec

# Every test session gets its own Celery queue, so a stray worker elsewhere cannot take its jobs.
os.environ.setdefault("CINESYNC_CELERY_QUEUE", f"cinesync-test-{uuid.uuid4().hex[:8]}")
# Tests choose free ports: a Triton or SuperLink the tests start never takes a default port.
for _port in ("CINESYNC_TRITON_HTTP_PORT", "CINESYNC_TRITON_GRPC_PORT", "CINESYNC_TRITON_METRICS_PORT",
              "CINESYNC_SUPERLINK_PORT", "CINESYNC_SUPERLINK_HEALTH_PORT"):
    os.environ.setdefault(_port, "0")

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
SMALL_SYNTHETIC = "synthetic:n_users=300,n_items=200,mean_interactions=20,seed=3"


def small_pipeline(**changes: object) -> PipelineSpec:
    """The default pipeline with few epochs, for tests."""
    from recsys.pipeline import PipelineSpec

    options = {"two_tower": {"epochs": 3}, "dcn_fusion": {"epochs": 4}}
    return PipelineSpec(**{"options": options, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.pipeline import evaluate, train

    folder = train(SMALL_SYNTHETIC, tmp_path_factory.mktemp("runs"), small_pipeline())
    evaluate(folder)
    return folder


@pytest.fixture(scope="session")
def exported_run(small_run: Path) -> Path:
    from exporters.onnx_export import export_run
    from recsys.run import load_run

    export_run(load_run(small_run), small_run / "onnx")
    return small_run / "onnx"
