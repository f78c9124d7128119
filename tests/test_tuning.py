"""Tuning studies with real processes: Redis (Optuna's journal storage and the Celery broker) and
Celery worker processes. Two workers share one study's trials and its best trial becomes a named
configuration with its plots; a study that exists with another space, an empty budget and a trial
that raises are handled; a worker SIGKILLed mid-trial leaves a failed trial and the study finishes on
the next worker."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from cinesync import tuning
from cinesync.jobs import celery_app
from cinesync.settings import Settings, get_settings
from conftest import SMALL_SYNTHETIC
from launcher.cli import with_configuration
from launcher.services.process import ManagedProcess
from launcher.services.redis_server import ensure_redis
from launcher.tuning import follow, queue_trials
from recsys.kinds.space import IntRange
from recsys.pipeline import PipelineSpec
from recsys.studies import StudyRefused, create_or_resume, finish
from recsys.tuning import Target, checked_space

pytestmark = pytest.mark.slow
KILLED_VISIBILITY_TIMEOUT_S = 3  # the kill test's: a dead worker's task runs again soon (its trials take ~1.5 s)


@pytest.fixture()
def settings(tmp_path: Path) -> Iterator[Settings]:
    configured = Settings(home=tmp_path / "home", celery_queue=f"tune-{uuid.uuid4().hex[:8]}")
    redis_process = ensure_redis(configured.redis_url, logs_dir=tmp_path, data_dir=tmp_path / "redis")
    try:
        yield configured
    finally:
        if redis_process is not None:
            redis_process.stop()


def _worker(name: str, settings: Settings, *, visibility_timeout_s: int = 3600) -> ManagedProcess:
    """A worker on the study's queue, held to one thread; a dead worker's task runs again after
    ``visibility_timeout_s`` (which must exceed a trial's time)."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", settings.job_queue,
         "--pool=solo", "--loglevel=INFO", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"],
        log_path=settings.home / f"{name}.log",
        env={"CINESYNC_HOME": str(settings.home), "CINESYNC_CELERY_QUEUE": settings.celery_queue,
             "REDIS_URL": settings.redis_url, "CINESYNC_TORCH_THREADS": "1",
             "CINESYNC_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s)},
    )


def _trials(settings: Settings, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=tuning.storage(settings)).get_trials(deepcopy=False)


def test_two_workers_share_a_study_whose_best_trial_becomes_a_configuration(settings: Settings) -> None:
    (settings.home).mkdir(parents=True, exist_ok=True)
    workers = [_worker("first", settings), _worker("second", settings)]
    try:
        target = Target(SMALL_SYNTHETIC, "two_tower", options={"patience": 4})
        space = checked_space("two_tower", {"epochs": IntRange(2, 4)})
        with pytest.raises(StudyRefused, match="at least 1"):
            create_or_resume(settings, "towers", target, space, 0)
        assert create_or_resume(settings, "towers", target, space, 4) == 4
        queue_trials(celery_app(settings), "towers", 4)
        said: list[str] = []
        follow(settings, "towers", said.append, timeout_s=300, poll_s=0.5)
        written = finish(settings, "towers")
    finally:
        for worker in workers:
            worker.stop()
    trials = _trials(settings, "towers")
    assert len(trials) == 4 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert len({str(t.params) for t in trials}) == 4  # every trial tried something else
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert len(said) == 4 and said[-1].split("·")[1].strip() == "4/4 done"
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value or 0.0)
    assert written["trial"] == best.number and written["value"] == best.value
    assert written["options"]["two_tower"] == {"patience": 4, **{k.split(".", 1)[1]: v for k, v in best.params.items()}}
    assert {Path(p).name for p in written["plots"]} >= {"history.png", "parallel-coordinates.png"}
    assert all(Path(p).stat().st_size > 10_000 for p in written["plots"])
    # `cinesync train --config towers`: the options, recorded in the run's manifest as its configuration.
    pipeline = with_configuration(settings, "towers", {"options": {"two_tower": {"dim": 32}}})
    spec = PipelineSpec.from_dict(pipeline)
    assert spec.options["two_tower"] == {**written["options"]["two_tower"], "dim": 32}
    assert spec.configuration == {"name": "towers", "study": "towers", "trial": best.number,
                                  "validation": best.value}
    # The same name for another space is refused, saying which; the same space resumes (nothing to run).
    with pytest.raises(StudyRefused, match="exists with another space"):
        create_or_resume(settings, "towers", target, checked_space("two_tower", {"epochs": IntRange(2, 5)}), 4)
    assert create_or_resume(settings, "towers", target, space, 4) == 0


def test_a_trial_that_raises_is_recorded_failed_and_the_study_goes_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.tasks import tune_trial

    monkeypatch.setenv("CINESYNC_HOME", str(settings.home))  # the task, run here, reads the settings
    get_settings.cache_clear()
    try:
        _two_failed_trials(settings, tune_trial)
    finally:
        get_settings.cache_clear()  # the next reader sees the environment as the test found it


def _two_failed_trials(settings: Settings, tune_trial: Any) -> None:
    target = Target(SMALL_SYNTHETIC, "ease")
    space = checked_space("ease", {"neighbours": IntRange(-5, -1)})  # refused by EaseParams' own check
    create_or_resume(settings, "broken", target, space, 2)
    results = [tune_trial.run("broken") for _ in range(3)]
    assert [r["state"] for r in results] == ["failed", "failed", "budget reached"]
    assert "neighbours must be 0 (all) or more" in results[0]["error"]
    trials = _trials(settings, "broken")
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"] and "neighbours" in trials[0].user_attrs["error"]
    with pytest.raises(StudyRefused, match="no complete trial"):
        finish(settings, "broken")


def test_a_study_whose_worker_is_killed_mid_trial_finishes_on_the_next(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    first = _worker("first", settings, visibility_timeout_s=KILLED_VISIBILITY_TIMEOUT_S)
    second = None
    try:
        target = Target(SMALL_SYNTHETIC, "two_tower", options={"patience": 20})
        space = checked_space("two_tower", {"epochs": IntRange(5, 5)})
        create_or_resume(settings, "killed", target, space, 2)
        queue_trials(celery_app(settings), "killed", 2)
        deadline = time.monotonic() + 120
        while not any(t.state.name == "RUNNING" and t.intermediate_values for t in _trials(settings, "killed")):
            assert time.monotonic() < deadline, "no trial reached its first epoch"
            time.sleep(0.1)
        first.popen.kill()  # SIGKILL mid-trial: no chance to tell the study or ack the task
        first.popen.wait(10)
        second = _worker("second", settings, visibility_timeout_s=KILLED_VISIBILITY_TIMEOUT_S)
        follow(settings, "killed", lambda line: None, timeout_s=300, poll_s=0.5)
        written = finish(settings, "killed")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
    trials = _trials(settings, "killed")
    states = sorted(t.state.name for t in trials)
    assert len(trials) == 2 and states.count("FAIL") == 1 and "RUNNING" not in states, states
    lost = next(t for t in trials if t.state.name == "FAIL")
    study = optuna.load_study(study_name="killed", storage=tuning.storage(settings))
    assert "worker was lost" in study.user_attrs[f"lost_trial_{lost.number}"]
    assert second is not None and "Task cinesync.tune_trial[" in second.log_tail(400)
    assert written["value"] == max(t.value for t in trials if t.value is not None)


def test_the_admin_api_starts_a_study_and_streams_its_trials(settings: Settings) -> None:
    """AdminService.StartTuning on a real control plane: the worker checks and queues the study,
    the stream says each trial and ends with the configuration file; a bad space is refused."""
    import grpc

    from cinesync.v1 import admin_pb2 as admin
    from cinesync.v1 import admin_pb2_grpc as admin_grpc
    from launcher.stack import Stack

    settings.home.mkdir(parents=True, exist_ok=True)
    worker = _worker("worker", settings)
    try:
        with Stack(settings.model_copy(update={"grpc_port": 0, "metrics_port": 0}), say=print) as stack:
            stack.start_control_plane()
            token = settings.admin_token_file.read_text().strip()
            with grpc.insecure_channel(stack.grpc_address) as channel:
                stub = admin_grpc.AdminServiceStub(channel)
                metadata = (("authorization", f"Bearer {token}"),)
                request = admin.TuningRequest(name="by-rpc", data=SMALL_SYNTHETIC, kind="ease", trials=2,
                                              space={"l2_grid": "50:2000:log"})
                stream = list(stub.StartTuning(request, metadata=metadata, timeout=300))
                with pytest.raises(grpc.RpcError) as refused:
                    list(stub.StartTuning(admin.TuningRequest(name="bad", data=SMALL_SYNTHETIC, kind="ease", trials=2,
                                                              space={"colour": "1:2"}), metadata=metadata, timeout=300))
    finally:
        worker.stop()
    trials = [m for m in stream if m.trial >= 0]
    assert [m.state for m in trials] == ["complete"] * 2 and trials[-1].done == 2 == trials[-1].budget
    assert stream[-1].config.endswith("by-rpc.json") and Path(stream[-1].config).is_file()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown hyper-parameter(s) colour" in (refused.value.details() or "")
