"""Late acks: a job whose worker is killed mid-run is delivered again to the next worker, which
resumes its training loops from their last checkpoints instead of starting again."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest

from cinesync.settings import Settings
from conftest import SMALL_SYNTHETIC
from launcher.services.process import ManagedProcess
from launcher.services.redis_server import ensure_redis
from workers.tasks import train

pytestmark = pytest.mark.slow
VISIBILITY_TIMEOUT_S = 2


def _worker(name: str, queue: str, home: Path) -> ManagedProcess:
    return ManagedProcess(
        name,
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queue, "--pool=solo",
         "--loglevel=INFO", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"],
        log_path=home / f"{name}.log",
        env={"CINESYNC_CELERY_QUEUE": queue, "CINESYNC_HOME": str(home),
             "CINESYNC_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S)},
    )


def test_killed_worker_job_is_redelivered(tmp_path: Path) -> None:
    settings = Settings()
    redis_process = ensure_redis(settings.redis_url, logs_dir=tmp_path, data_dir=tmp_path / "redis")
    queue = f"redelivery-{uuid.uuid4().hex[:8]}"
    first = _worker("first", queue, tmp_path)
    second = None
    try:
        slow = {"options": {"two_tower": {"epochs": 12, "patience": 12}, "dcn_fusion": {"epochs": 2}}}
        result = train.apply_async((SMALL_SYNTHETIC, slow), queue=queue)
        checkpoints = tmp_path / "checkpoints" / result.id
        deadline = time.monotonic() + 60
        while not list(checkpoints.glob("two_tower-*.pt")):  # an epoch of the two-tower has been saved
            assert time.monotonic() < deadline, "first worker never checkpointed the job"
            time.sleep(0.05)
        first.popen.kill()  # SIGKILL: no chance to ack or requeue
        first.popen.wait(10)
        second = _worker("second", queue, tmp_path)
        value = result.get(timeout=240)
        manifest = json.loads(Path(value["run_dir"], "manifest.json").read_text())
        assert f"Task cinesync.train[{result.id}] received" in second.log_tail(200)
        resumed = manifest["resumed_from_checkpoints"]
        assert resumed and resumed[0]["loop"].startswith("two_tower-") and resumed[0]["after_epoch"] >= 1
        assert "resumed from the checkpoint of epoch" in second.log_tail(400)
        assert not checkpoints.exists()  # removed once the step is done
    finally:
        for process in (first, second, redis_process):
            if process is not None:
                process.stop()
