"""Celery tasks of the training pipeline; each passes a JSON dict to the next and reports progress.

Importing this module imports no torch: the CLI builds chains from it, and the heavy imports
happen inside the tasks, on the worker.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Task
from celery.canvas import Signature

from cinesync import jobs, tuning
from cinesync.jobs import PROGRESS
from cinesync.settings import get_settings
from workers.celery_app import app


def _report(task: Task, step: str, **meta: Any) -> None:
    if task.request.id:  # also callable directly, outside a worker
        task.update_state(state=PROGRESS, meta={"step": step, **meta})


def _reporter(task: Task, step: str) -> Callable[[str, int, int, float, str], None]:
    """A kind's progress (stage, step, steps, value, measure) as task state of ``step``."""

    def report(stage: str, done: int, steps: int, value: float, measure: str) -> None:
        measured = {measure: round(value, 5)} if measure else {}
        _report(task, step, stage=stage, epoch=done, epochs=steps, percent=round(100 * done / max(steps, 1), 1),
                **measured)

    return report


def _use_threads() -> None:
    import torch

    torch.set_num_threads(get_settings().torch_threads)


@app.task(bind=True, name=jobs.TRAIN)
def train(self: Task, data: str, pipeline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the pipeline's kinds on ``data`` (validation-driven), stack the fusion; returns {'run_dir': ...}."""
    from recsys.pipeline import PipelineSpec
    from recsys.pipeline import train as train_pipeline

    _use_threads()
    spec = PipelineSpec.from_dict(pipeline or {})
    _report(self, "train", stage="loading data", percent=0.0)
    settings = get_settings()
    # One folder per job: a job delivered again (its worker died) finds its loops' checkpoints there.
    checkpoints = settings.home / "checkpoints" / self.request.id if self.request.id else None
    run_dir = train_pipeline(data, settings.runs_dir, spec, _reporter(self, "train"), checkpoint_dir=checkpoints)
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return {"run_dir": str(run_dir), "data": data}


@app.task(bind=True, name=jobs.EVALUATE)
def evaluate(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """Test-split metrics of every kind and of the served cascade, saved as metrics.json in the run."""
    from recsys.pipeline import CASCADE
    from recsys.pipeline import evaluate as evaluate_run

    _use_threads()
    _report(self, "evaluate", percent=0.0)
    return {**previous, "metrics": evaluate_run(Path(previous["run_dir"])), "served": CASCADE}


@app.task(bind=True, name=jobs.REFIT)
def refit(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """Refit the members on every interaction for the version users get (the evaluated figures stay)."""
    from recsys.pipeline import refit_on_everything

    _use_threads()
    _report(self, "refit", percent=0.0)
    refit_on_everything(Path(previous["run_dir"]), _reporter(self, "refit"))
    return {**previous, "fitted_on": "all"}


@app.task(bind=True, name=jobs.EXPORT)
def export(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """ONNX export of every member scorer and the fusion, with parity against the kinds."""
    from dataclasses import asdict

    from exporters.onnx_export import export_run
    from recsys.run import load_run

    _report(self, "export", percent=0.0)
    run_dir, fitted_on = Path(previous["run_dir"]), previous.get("fitted_on", "train")
    export_dir = run_dir / f"onnx-{fitted_on}"
    settings = get_settings()
    exported = export_run(load_run(run_dir, fitted_on=fitted_on), export_dir, precision=settings.precision,
                          max_loss=settings.int8_max_ndcg_loss)
    return {**previous, "export_dir": str(export_dir), "onnx": [asdict(m) for m in exported]}


@app.task(bind=True, name=jobs.PUBLISH)
def publish(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """New Triton model version plus serving bundle, checked in Triton; made current (the control plane
    picks it up) unless ``previous`` says ``make_current: False``."""
    from exporters.publish import publish as publish_run
    from recsys.run import load_run

    settings = get_settings()
    _report(self, "publish", percent=0.0)
    run = load_run(Path(previous["run_dir"]), fitted_on=previous.get("fitted_on", "train"))
    version = publish_run(run, Path(previous["export_dir"]), settings, make_current=previous.get("make_current", True))
    return {**previous, "version": version}


@app.task(bind=True, name=jobs.ADD_TITLES)
def add_titles(self: Task, run_dir: str, titles_file: str, serve: str | None = None) -> dict[str, Any]:
    """A new run: ``run_dir`` with the titles of ``titles_file`` added to every member without
    retraining (recsys.catalog_update); returns {'run_dir': ..., 'fitted_on': the fit to serve}."""
    from recsys.catalog_update import add_titles as grow
    from recsys.run import FITS

    _use_threads()
    _report(self, "add titles", stage="reading titles", percent=0.0)
    grown = grow(Path(run_dir), Path(titles_file), get_settings().runs_dir, _reporter(self, "add titles"))
    fitted_on = serve or ("all" if (grown / FITS["all"]).is_dir() else "train")
    return {"run_dir": str(grown), "parent_run_dir": run_dir, "fitted_on": fitted_on}


@app.task(bind=True, name=tuning.STUDY)
def tune_study(self: Task, name: str, target: dict[str, Any], space: dict[str, str], budget: int) -> dict[str, Any]:
    """Check study ``name``'s target and space (``space``: field -> range text replacing the kind's
    declared one), create or resume it, and queue one trial task per trial still to run; raises
    (the caller's error) on an unknown kind or field, a bad budget, or a name used for another space."""
    from recsys.kinds.space import from_text
    from recsys.studies import create_or_resume
    from recsys.tuning import Target, checked_space

    wanted = Target(**target)
    checked = checked_space(wanted.kind, {field: from_text(text) for field, text in space.items()})
    remaining = create_or_resume(get_settings(), name, wanted, checked, budget)
    for _ in range(remaining):
        app.send_task(tuning.TRIAL, args=(name,))  # on this worker's queue
    return {"study": name, "queued": remaining, "space": sorted(checked)}


@app.task(bind=True, name=tuning.TRIAL)
def tune_trial(self: Task, study_name: str) -> dict[str, Any]:
    """One trial of study ``study_name`` (recsys.tuning): ask, fit the study's kind with the
    suggested hyper-parameters on validation, report each epoch (pruning), tell. A trial that raises
    is recorded failed with its error and the study goes on; a trial this same task left running when
    its worker died (the task is delivered again) is recorded failed first. Nothing is done once the
    study's budget of finished and running trials is reached."""
    import itertools
    import traceback

    import optuna
    from optuna.trial import TrialState

    from recsys.kinds.space import from_json, suggest
    from recsys.tuning import Target, validation_ndcg

    _use_threads()
    settings = get_settings()
    study = tuning.load_study(settings, study_name)
    task_id = self.request.id or ""
    for left in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if task_id and left.user_attrs.get("task_id") == task_id:
            study.tell(left.number, state=TrialState.FAIL)
            study.set_user_attr(f"lost_trial_{left.number}", "its worker was lost mid-trial; the task ran again")
    counted = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                       TrialState.RUNNING))
    if len(counted) >= int(study.user_attrs["budget"]):
        return {"study": study_name, "trial": None, "state": "budget reached"}
    target = Target(**study.user_attrs["target"])
    space = from_json(study.user_attrs["space"])
    trial = study.ask()
    trial.set_user_attr("task_id", task_id)
    trial.set_user_attr("worker", self.request.hostname or "")
    params = suggest(trial, target.kind, space)
    steps = itertools.count(1)
    report = _reporter(self, f"trial {trial.number}")

    def on_epoch(stage: str, epoch: int, value: float) -> None:
        trial.report(value, next(steps))
        if trial.should_prune():
            raise optuna.TrialPruned(f"{stage} epoch {epoch}: validation ndcg@10 {value:.4f} below the median")

    outcome: dict[str, Any] = {"study": study_name, "trial": trial.number, "params": params}
    try:
        value = validation_ndcg(target, params, progress=report, on_epoch=on_epoch)
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("pruned", str(pruned))
        study.tell(trial, state=TrialState.PRUNED)
        outcome["state"] = "pruned"
    except Exception as error:  # noqa: BLE001  # recorded with the trial; the study goes on
        trial.set_user_attr("error", "".join(traceback.format_exception_only(error)).strip()[:2000])
        study.tell(trial, state=TrialState.FAIL)
        outcome.update(state="failed", error=str(error))
    else:
        try:
            study.tell(trial, value)
            outcome.update(state="complete", value=value)
        except optuna.exceptions.UpdateFinishedTrialError:  # another delivery of this task recorded it lost
            return {**outcome, "state": "lost", "value": value}
    _finish_when_done(settings, study_name)  # whichever way the budget's last trial ended
    return outcome


def _finish_when_done(settings: Any, study_name: str) -> None:
    """Once every trial of the budget has finished, write the configuration and plots (the last
    trial's worker does; writing them twice writes the same)."""
    from recsys.studies import finish

    study = tuning.load_study(settings, study_name)
    if len(tuning.finished_trials(study)) >= int(study.user_attrs["budget"]) and tuning.best_value(study) is not None:
        finish(settings, study_name)


def training_pipeline(
    data: str, pipeline: dict[str, Any] | None = None, *, publish_model: bool = True, serve: str = "all"
) -> Signature:
    """train → evaluate (→ refit → export → publish) as one Celery chain (cinesync.jobs.pipeline)."""
    return jobs.pipeline(app, data, pipeline, publish=publish_model, serve=serve)
