"""`cinesync tune`: create (or resume) an Optuna study, queue one Celery task per trial of its
budget (any number of workers take them), follow it, then write the best trial as a named
configuration and the study's plots (optuna's matplotlib visualisations) under its folder."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery

from cinesync import tuning
from cinesync.settings import Settings
from recsys.kinds.space import Space, to_json
from recsys.tuning import METRIC, Target

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class StudyRefused(ValueError):
    """A study that cannot start: a bad name or budget, or a name in use with another target or space."""


def create_or_resume(settings: Settings, name: str, target: Target, space: Mapping[str, Space], budget: int) -> int:
    """Create study ``name`` (or take the existing one, if it tunes the same target over the same
    space, raising its budget to ``budget``); returns how many trials are still to run."""
    import optuna

    if not tuning.NAME.match(name):
        raise StudyRefused(f"study name {name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
    if budget < 1:
        raise StudyRefused(f"the trial budget must be at least 1, got {budget}")
    wanted = {"target": target.to_json(), "space": to_json(space)}
    study = optuna.create_study(study_name=name, storage=tuning.storage(settings), direction="maximize",
                                load_if_exists=True)
    if study.user_attrs.get("target") is None:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
    else:
        for key, value in wanted.items():
            if study.user_attrs[key] != value:
                raise StudyRefused(f"study {name!r} exists with another {key}: {study.user_attrs[key]} "
                                   f"(asked: {value}); choose another name")
    study.set_user_attr("budget", budget)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]
    return max(budget - len(done), 0)


def queue_trials(app: Celery, name: str, count: int) -> list[str]:
    """``count`` trial tasks of study ``name`` on the job queue; their ids."""
    return [app.send_task(tuning.TRIAL, args=(name,)).id for _ in range(count)]


def follow(settings: Settings, name: str, say: Callable[[str], None], *, timeout_s: float, poll_s: float = 2.0) -> None:
    """Say each trial as it finishes, until the budget's trials have all finished."""
    import optuna

    storage = tuning.storage(settings)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        study = optuna.load_study(study_name=name, storage=storage)
        budget = int(study.user_attrs["budget"])
        trials = study.get_trials(deepcopy=False)
        for trial in sorted((t for t in trials if t.state.name in FINISHED and t.number not in seen),
                            key=lambda t: t.number):
            seen.add(trial.number)
            done = sum(t.state.name in FINISHED for t in trials)
            best = _best_value(study)
            figure = f"validation {METRIC} {trial.value:.4f}" if trial.value is not None else (
                trial.user_attrs.get("error") or trial.user_attrs.get("pruned")
                or study.user_attrs.get(f"lost_trial_{trial.number}", ""))
            say(f"  trial {trial.number:>3} {trial.state.name.lower():<8} {figure} · {done}/{budget} done"
                + (f" · best {best:.4f}" if best is not None else ""))
        if sum(t.state.name in FINISHED for t in trials) >= budget:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {name!r} did not finish its {budget} trials in {timeout_s:.0f} s; "
                               f"`cinesync tune {name} ...` again resumes it")
        time.sleep(poll_s)


def _best_value(study: Any) -> float | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return max(t.value for t in complete) if complete else None


def finish(settings: Settings, name: str) -> dict[str, Any]:
    """The best trial as configuration ``name`` and the study's plots; what was written."""
    import optuna

    study = optuna.load_study(study_name=name, storage=tuning.storage(settings))
    target = study.user_attrs["target"]
    if _best_value(study) is None:
        raise StudyRefused(f"study {name!r} has no complete trial: every one failed or was pruned")
    best = study.best_trial
    prefix = f"{target['kind']}."
    chosen = {**target["options"], **{k.removeprefix(prefix): v for k, v in best.params.items()}}
    config = {"options": {target["kind"]: chosen},
              "study": name, "trial": best.number, "value": best.value, "metric": f"validation {METRIC}",
              "target": target, "trials": len(study.trials)}
    path = tuning.save_config(settings, name, config)
    return {"config": str(path), "plots": [str(p) for p in plots(study, tuning.studies_dir(settings) / name)],
            **config}


def plots(study: Any, folder: Path) -> list[Path]:
    """Optimisation history, parallel coordinates and parameter importances as PNG in ``folder``
    (importances need two complete trials with different parameters)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from optuna.visualization import matplotlib as views

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    drawings: dict[str, Callable[[Any], Any]] = {"history": views.plot_optimization_history,
                                                 "parallel-coordinates": views.plot_parallel_coordinate}
    if len(complete) >= 2 and len({str(t.params) for t in complete}) >= 2:
        drawings["importances"] = views.plot_param_importances
    for name, draw in drawings.items():
        axes = draw(study)
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=110)
        pyplot.close(figure)
        written.append(path)
    return written
