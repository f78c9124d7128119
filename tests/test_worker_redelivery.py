"""Late acks: a job whose worker is killed mid-run is delivered again to the next worker."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from cinesync.settings import Settings
from conftest import SMALL_SYNTHETIC
from launcher.services.process import ManagedProcess
from launcher.services.redis_server import ensure_redis
from workers.tasks import PROGRESS, train

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
        deadline = time.monotonic() + 60
        while result.state != PROGRESS or "epoch" not in (result.info or {}):
            assert time.monotonic() < deadline, "first worker never started the job"
            time.sleep(0.2)
        first.popen.kill()  # SIGKILL: no chance to ack or requeue
        first.popen.wait(10)
        second = _worker("second", queue, tmp_path)
        value = result.get(timeout=240)
        assert Path(value["run_dir"], "manifest.json").is_file()
        assert f"Task cinesync.train[{result.id}] received" in second.log_tail(200)
    finally:
        for process in (first, second, redis_process):
            if process is not None:
                process.stop()
