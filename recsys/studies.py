"""Tuning studies (recsys.tuning's trials under Optuna): create or resume one, checked against the
target and space it was made with, and finish it: the best trial as a named configuration and the
study's plots (Optuna's matplotlib views) under its folder. Celery and the command line are the
callers' (workers.tasks, launcher.tuning)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cinesync import tuning
from cinesync.settings import Settings
from recsys.kinds.space import Space, to_json
from recsys.tuning import METRIC, Target


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
    return max(budget - len(tuning.finished_trials(study)), 0)


def finish(settings: Settings, name: str) -> dict[str, Any]:
    """The best trial as configuration ``name`` and the study's plots; what was written."""
    import optuna

    study = optuna.load_study(study_name=name, storage=tuning.storage(settings))
    target = study.user_attrs["target"]
    if tuning.best_value(study) is None:
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
    complete = tuning.complete_trials(study)
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
