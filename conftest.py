"""Shared test fixtures: a small seeded training run, its ONNX export, and isolation settings (each
test session, each xdist worker included, has its own Celery queue and its own Redis)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from launcher.services.process import ManagedProcess
    from recsys.pipeline import PipelineSpec

# Every test session gets its own Celery queue, so a stray worker elsewhere cannot take its jobs.
os.environ.setdefault("CINESYNC_CELERY_QUEUE", f"cinesync-test-{uuid.uuid4().hex[:8]}")
# Tests choose free ports: a Triton or SuperLink the tests start never takes a default port.
for _port in ("CINESYNC_TRITON_HTTP_PORT", "CINESYNC_TRITON_GRPC_PORT", "CINESYNC_TRITON_METRICS_PORT",
              "CINESYNC_SUPERLINK_PORT", "CINESYNC_SUPERLINK_HEALTH_PORT"):
    os.environ.setdefault(_port, "0")
# With several xdist workers sharing the cores, one thread per process (torch, BLAS, OpenMP): pools
# sized for the whole machine in every process oversubscribe it, and their threads spin-wait.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CINESYNC_TORCH_THREADS"):
        os.environ.setdefault(_threads, "1")
_REDIS = pytest.StashKey[tuple["ManagedProcess | None", Path]]()


def pytest_configure(config: pytest.Config) -> None:
    """Start this session's Redis on a free port unless REDIS_URL names one (not in xdist's controller,
    which runs no tests): tests that need Redis find it, so none starts, or stops, one that another
    worker's tests are using."""
    controller = getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")
    if controller or "REDIS_URL" in os.environ or "CINESYNC_REDIS_URL" in os.environ or not shutil.which("redis-server"):
        return
    from launcher.services.process import free_port
    from launcher.services.redis_server import ensure_redis

    folder = Path(tempfile.mkdtemp(prefix="cinesync-test-redis-"))
    url = f"redis://127.0.0.1:{free_port()}/0"
    config.stash[_REDIS] = (ensure_redis(url, logs_dir=folder, data_dir=folder), folder)
    os.environ["REDIS_URL"] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    if _REDIS in config.stash:
        process, folder = config.stash[_REDIS]
        if process is not None:
            process.stop()
        shutil.rmtree(folder, ignore_errors=True)


SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
SMALL_SYNTHETIC = "synthetic:n_users=300,n_items=200,mean_interactions=20,seed=3"


def small_pipeline(*, options: dict[str, dict[str, object]] | None = None, **changes: object) -> PipelineSpec:
    """The default pipeline with few epochs, for tests (``options``: more kinds' options)."""
    from recsys.pipeline import PipelineSpec

    few_epochs = {"two_tower": {"epochs": 3}, "dcn_fusion": {"epochs": 4}}
    return PipelineSpec(options={**few_epochs, **(options or {})}, **changes)  # type: ignore[arg-type]


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
