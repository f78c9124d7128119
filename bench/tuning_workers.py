"""Benchmark: one study's wall time with one Celery worker against two, the trial budget fixed.

Each worker is a real Celery worker process held to one thread (torch, BLAS, OpenMP); the study
tunes the two-tower on --data over learning rate and temperature only (which do not change a
trial's cost), a fixed number of epochs, no pruning possible before the budget ends (the pruner's
warm-up exceeds the epochs), so both runs do the same work. Redis is the stack's; every worker
started is stopped.

    .venv/bin/python -m bench.tuning_workers --data ../shared/data/ml-100k --trials 12

Writes docs/bench/tuning-workers.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.machine import machine
from bench.open_loop import RESULTS
from cinesync.jobs import celery_app
from cinesync.settings import Settings
from launcher.services.process import ManagedProcess
from launcher.services.redis_server import ensure_redis
from launcher.tuning import follow, queue_trials
from recsys.kinds.space import FloatRange
from recsys.studies import create_or_resume
from recsys.tuning import Target, checked_space

ONE_THREAD = {name: "1" for name in ("CINESYNC_TORCH_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}


def study_seconds(settings: Settings, target: Target, workers: int, trials: int) -> float:
    """Wall time from queueing ``trials`` trials to the last one finished, with ``workers`` workers."""
    started_workers = [ManagedProcess(
        f"worker-{n}", [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", settings.job_queue,
                        "--pool=solo", "--loglevel=WARNING", "-n", f"bench-{n}-{uuid.uuid4().hex[:6]}@%h"],
        log_path=settings.home / f"worker-{workers}-{n}.log",
        env={"CINESYNC_HOME": str(settings.home), "CINESYNC_CELERY_QUEUE": settings.celery_queue,
             "REDIS_URL": settings.redis_url, **ONE_THREAD}) for n in range(workers)]
    try:
        name = f"bench-{workers}-{uuid.uuid4().hex[:6]}"
        space = checked_space(target.kind, {"learning_rate": FloatRange(1e-3, 5e-3, log=True),
                                            "temperature": FloatRange(0.03, 0.1, log=True)})
        space = {key: space[key] for key in ("learning_rate", "temperature")}
        create_or_resume(settings, name, target, space, trials)
        time.sleep(5)  # the workers connect (not timed)
        started = time.perf_counter()
        queue_trials(celery_app(settings), name, trials)
        follow(settings, name, lambda line: None, timeout_s=7200, poll_s=0.5)
        return time.perf_counter() - started
    finally:
        for worker in started_workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    data = str(Path(args.data).resolve()) if Path(args.data).is_dir() else args.data
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(home=Path(folder) / "home", celery_queue=f"bench-tune-{uuid.uuid4().hex[:8]}")
        settings.home.mkdir(parents=True)
        redis_process = ensure_redis(settings.redis_url, logs_dir=settings.home, data_dir=settings.home / "redis")
        try:
            target = Target(data, "two_tower", options={"epochs": args.epochs, "patience": args.epochs})
            seconds = {workers: study_seconds(settings, target, workers, args.trials) for workers in (1, 2)}
        finally:
            if redis_process is not None:
                redis_process.stop()
    result = {"data": args.data, "trials": args.trials, "epochs": args.epochs, "seconds": seconds,
              "speedup": seconds[1] / seconds[2], "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tuning-workers.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.trials} trials of the two-tower on {args.data}: one worker {seconds[1]:.1f} s, two workers "
          f"{seconds[2]:.1f} s, {result['speedup']:.2f} x")


if __name__ == "__main__":
    main()
