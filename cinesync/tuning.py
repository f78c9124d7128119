"""Tuning studies as every role sees them: the Celery task of one trial, where studies live
(Optuna's journal storage on the stack's Redis, so any worker on any machine works on one study),
how a study is loaded with the sampler and pruner every worker uses, and the named configurations
a finished study leaves for `cinesync train --config NAME`."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinesync.settings import Settings

if TYPE_CHECKING:
    import optuna

TRIAL = "cinesync.tune_trial"
STUDY = "cinesync.tune_study"  # checks a study's target and space, creates or resumes it, queues its trials
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
STARTUP_TRIALS = 4  # trials the median pruner lets finish before it compares, and TPE samples at random
WARMUP_EPOCHS = 2  # epochs of a trial before the pruner may stop it


class UnknownConfig(LookupError):
    """No configuration of that name; the message lists the known ones."""


def storage(settings: Settings) -> optuna.storages.BaseStorage:
    """The studies' storage: Optuna's journal on the settings' Redis, under the installation's namespace."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, journal

    with warnings.catch_warnings():  # the Redis journal is "experimental" since Optuna 3.1; said once here
        warnings.simplefilter("ignore", ExperimentalWarning)
        backend = journal.JournalRedisBackend(settings.redis_url, prefix=f"{settings.redis_namespace}:optuna")
    return JournalStorage(backend)


def load_study(settings: Settings, name: str) -> optuna.Study:
    """Study ``name`` with the sampler (TPE, lying about running trials so parallel workers spread
    out) and the pruner (median of earlier trials at the same epoch) every worker uses. A trial must
    take less than CINESYNC_VISIBILITY_TIMEOUT_S (1 h): Redis delivers a task unacknowledged for longer
    again, and its second delivery records the first's trial failed as lost."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage(settings))
    # Seeded by the study's seed and how many trials it has: each load draws anew, reproducibly.
    seed = int(study.user_attrs.get("target", {}).get("seed", 0)) * 100_003 + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=STARTUP_TRIALS)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS)
    return study


def studies_dir(settings: Settings) -> Path:
    return settings.home / "studies"


def configs_dir(settings: Settings) -> Path:
    return settings.home / "configs"


def save_config(settings: Settings, name: str, config: dict[str, Any]) -> Path:
    """Write configuration ``name``: {"options": {kind: {param: value}}, "study", "trial", "value", ...}."""
    path = configs_dir(settings) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_config(settings: Settings, name: str) -> dict[str, Any]:
    path = configs_dir(settings) / f"{name}.json"
    if not NAME.match(name) or not path.is_file():
        known = sorted(p.stem for p in configs_dir(settings).glob("*.json"))
        raise UnknownConfig(f"no configuration {name!r} in {configs_dir(settings)}; known: {', '.join(known) or 'none'}")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that have ended: complete, pruned or failed."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that ended with a value."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]


def best_value(study: optuna.Study) -> float | None:
    """The best complete trial's value (None before any)."""
    values = [t.value for t in complete_trials(study) if t.value is not None]
    return max(values) if values else None


def watch(settings: Settings, name: str, *, timeout_s: float, poll_s: float = 2.0) -> Iterator[dict[str, Any]]:
    """Study ``name`` as its trials finish: first (when some had finished before) a summary with
    trial None, then one event per newly finished trial: trial, state (complete, pruned, fail),
    value, detail (error, pruning or loss), done, budget, best. Ends once the budget's trials have
    all finished; TimeoutError after ``timeout_s``."""
    import optuna

    store = storage(settings)
    deadline = time.monotonic() + timeout_s
    seen: set[int] | None = None
    while True:
        study = optuna.load_study(study_name=name, storage=store)
        budget = int(study.user_attrs["budget"])
        finished, best = finished_trials(study), best_value(study)
        if seen is None:
            seen = {t.number for t in finished}
            if seen:
                yield {"trial": None, "done": len(finished), "budget": budget, "best": best}
        for trial in sorted((t for t in finished if t.number not in seen), key=lambda t: t.number):
            seen.add(trial.number)
            detail = (trial.user_attrs.get("error") or trial.user_attrs.get("pruned")
                      or study.user_attrs.get(f"lost_trial_{trial.number}", ""))
            yield {"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value, "detail": detail,
                   "done": len(finished), "budget": budget, "best": best}
        if len(finished) >= budget:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {name!r} did not finish its {budget} trials in {timeout_s:.0f} s; "
                               f"`cinesync tune {name} ...` again resumes it")
        time.sleep(poll_s)
