"""Runs one RecBole 1.2.1 model on fixed train / valid / test atomic files and prints one JSON line.

Runs inside the benchmark's own venv (.venv-recbole), never the product's: bench/quality.py writes
the files and starts this script. The shims below make RecBole 1.2.1 run on numpy 2, scipy 1.17 and
torch 2.13 (see ../shared/docs/stack-notes.md).

    .venv-recbole/bin/python bench/recbole_runner.py DATA_DIR NAME MODEL '{"reg_weight": 500}'

Besides RecBole's settings, the overrides may hold ``threads`` (torch's, default 2) and ``time_limit_s``:
no epoch starts once that much time has gone, and the best epoch so far is the one tested.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import scipy.sparse
import torch

np.float_ = np.float64  # type: ignore[attr-defined]
np.complex_ = np.complex128  # type: ignore[attr-defined]
np.unicode_ = np.str_  # type: ignore[attr-defined]
_torch_load = torch.load
torch.load = lambda *a, **k: _torch_load(*a, **{**k, "weights_only": False})  # RecBole pickles its config
scipy.sparse.dok_matrix._update = lambda self, d: self._dict.update(d)  # LightGCN builds its graph with it

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed


class OutOfTime(Exception):
    """Raised before an epoch would start past the run's time limit."""


def main() -> None:
    data_dir, name, model_name, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    torch.set_num_threads(int(overrides.pop("threads", 2)))
    time_limit_s = float(overrides.pop("time_limit_s", "inf"))
    config = Config(
        model=model_name,
        dataset=name,
        config_dict={
            "data_path": data_dir,
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
            "metrics": ["NDCG", "Recall", "MRR", "Hit"],
            "topk": [10, 20],
            "valid_metric": "NDCG@10",
            "use_gpu": False,
            "seed": 0,
            "reproducibility": True,
            "show_progress": False,
            "checkpoint_dir": f"{data_dir}/checkpoints",
            "log_wandb": False,
            "train_batch_size": 4096,
            "eval_batch_size": 409600,
            **overrides,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    started = time.perf_counter()
    best = {"epoch": 0, "seconds": 0.0}
    save = trainer._save_checkpoint

    def record_best(epoch: int, *args: object, **kwargs: object) -> None:
        best.update(epoch=epoch + 1, seconds=time.perf_counter() - started)  # called on each new best
        save(epoch, *args, **kwargs)

    trainer._save_checkpoint = record_best
    epoch_seconds: list[float] = []
    train_epoch = trainer._train_epoch

    def timed_epoch(*args: object, **kwargs: object) -> object:
        began = time.perf_counter()
        if began - started >= time_limit_s:
            raise OutOfTime
        loss = train_epoch(*args, **kwargs)
        epoch_seconds.append(round(time.perf_counter() - began, 2))
        return loss

    trainer._train_epoch = timed_epoch
    valid_by_epoch: list[float] = []
    valid_epoch = trainer._valid_epoch

    def recorded_validation(*args: object, **kwargs: object) -> tuple[float, dict[str, float]]:
        score, result = valid_epoch(*args, **kwargs)
        valid_by_epoch.append(round(float(score), 4))  # valid_metric, NDCG@10
        return score, result

    trainer._valid_epoch = recorded_validation
    try:
        _, valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        cut = False
    except OutOfTime:
        valid_result, cut = trainer.best_valid_result, True
    fit_seconds = time.perf_counter() - started
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    print(json.dumps({
        "model": model_name,
        "overrides": overrides,
        "valid": {k.lower(): float(v) for k, v in valid_result.items()},
        "test": {k.lower(): float(v) for k, v in test_result.items()},
        "best_epoch": best["epoch"],
        "seconds_to_best": round(best["seconds"], 1),
        "fit_seconds": round(fit_seconds, 1),
        "train_epoch_seconds": epoch_seconds,
        "valid_ndcg@10_by_epoch": valid_by_epoch,
        "time_limit_s": time_limit_s if time_limit_s < float("inf") else None,
        "cut_by_time_limit": cut,
    }))


if __name__ == "__main__":
    main()
