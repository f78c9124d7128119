"""Runs one RecBole 1.2.1 model on fixed train / valid / test atomic files and prints one JSON line.

Runs inside the benchmark's own venv (.venv-recbole), never the product's: bench/quality.py writes
the files and starts this script. The shims below make RecBole 1.2.1 run on numpy 2, scipy 1.17 and
torch 2.13 (see ../shared/docs/stack-notes.md).

    .venv-recbole/bin/python bench/recbole_runner.py DATA_DIR NAME MODEL '{"reg_weight": 500}'

Besides RecBole's settings, the overrides may hold ``threads`` (torch's, default 2), ``time_limit_s``
(no epoch starts once that much time has gone, and the best epoch so far is the one tested) and
``history_length`` (a sequential model's MAX_ITEM_LIST_LENGTH unless that is given; default 200).

Sequential models (SASRec, BERT4Rec, GRU4Rec, ...) need the files' ``timestamp`` column (quality.py
writes it for leave-one-out-by-time splits: each user's position in our order, train then valid then
test). RecBole 1.2.1 itself reads benchmark files of a sequential model as already augmented rows
(``item_id_list`` given) and skips its augmentation; here its own ``data_augmentation`` runs over the
three files joined (every prefix of each user's time-ordered sequence, the last MAX_ITEM_LIST_LENGTH
items of it) and each (prefix, next item) row goes to the part its next item came from: a valid row
predicts the user's validation item from all train items, a test row the test item from the train
items and the validation item, and train rows are the prefixes within the train part.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

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
from recbole.data.dataset import Dataset, SequentialDataset
from recbole.utils import ModelType, get_model, get_trainer, init_seed

PARTS = ("train", "valid", "test")
DEFAULT_HISTORY_LENGTH = 200  # our pipeline's default history_length (recsys.kinds.base)


class OutOfTime(Exception):
    """Raised before an epoch would start past the run's time limit."""


class FixedSplitSequentialDataset(SequentialDataset):
    """RecBole's sequential dataset on our train / valid / test files of plain timestamped interactions:
    RecBole's augmentation over the files joined, each row in the part of its target (module docstring)."""

    inter_feat: Any  # RecBole's, declared for mypy
    file_size_list: list[int]
    seen_before: dict[str, scipy.sparse.csr_matrix]

    def _benchmark_presets(self) -> None:  # the item lists are built by _change_feat_format below
        pass

    def _change_feat_format(self) -> None:
        Dataset._change_feat_format(self)  # DataFrames -> Interactions, no augmentation yet
        users = self.inter_feat[self.uid_field].numpy()
        items = self.inter_feat[self.iid_field].numpy()
        part = np.repeat(np.arange(len(self.file_size_list)), self.file_size_list)
        for held in (1, 2):
            per_user = np.bincount(users[part == held], minlength=self.user_num)
            if per_user.max(initial=0) > 1:
                raise ValueError(f"{PARTS[held]}: a user has {per_user.max()} items; a sequential model "
                                 "needs leave-one-out (one validation and one test item per user)")
        key = users.astype(np.int64) * self.item_num + items
        if len(np.unique(key)) != len(key):
            raise ValueError("a user has an item twice: the target of a prefix would not say its part")
        # Per part, the items each user had before it (what our evaluation excludes as seen).
        self.seen_before = {
            PARTS[held]: scipy.sparse.csr_matrix(
                (np.ones(int((part < held).sum()), dtype=np.float32), (users[part < held], items[part < held])),
                shape=(self.user_num, self.item_num),
            )
            for held in (1, 2)
        }
        self.data_augmentation()
        row_keys = (self.inter_feat[self.uid_field].numpy().astype(np.int64) * self.item_num
                    + self.inter_feat[self.iid_field].numpy())
        order = np.argsort(key)
        row_part = part[order][np.searchsorted(key[order], row_keys)]
        rows = np.argsort(row_part, kind="stable")
        self.inter_feat = self.inter_feat[rows]
        self.file_size_list = np.bincount(row_part, minlength=len(PARTS)).tolist()


def sequential_settings(data_dir: str, name: str, history_length: int) -> dict[str, Any]:
    """RecBole settings of a sequential model on our files: time order, full ranking, the history
    length our models read, cross-entropy over all items (no sampled negatives)."""
    header = (Path(data_dir) / name / f"{name}.train.inter").read_text().partition("\n")[0].split("\t")
    if "timestamp:float" not in header:
        raise SystemExit("a sequential model needs the files' timestamp column, which bench/quality.py writes "
                         "for a leave-one-out-by-time split only (--split loo-time)")
    return {
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
        "MAX_ITEM_LIST_LENGTH": history_length,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "train_batch_size": 2048,  # RecBole's default; the reference SASRec runs used it
        "eval_batch_size": 1024,  # rows (one per user), each a whole sequence through the model
    }


def main() -> None:
    data_dir, name, model_name, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    torch.set_num_threads(int(overrides.pop("threads", 2)))
    time_limit_s = float(overrides.pop("time_limit_s", "inf"))
    history_length = int(overrides.pop("history_length", DEFAULT_HISTORY_LENGTH))
    sequential = get_model(model_name).type == ModelType.SEQUENTIAL
    config = Config(
        model=model_name,
        dataset=name,
        config_dict={
            "data_path": data_dir,
            "benchmark_filename": list(PARTS),
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
            **(sequential_settings(data_dir, name, history_length) if sequential else {}),
            **overrides,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = FixedSplitSequentialDataset(config) if sequential else create_dataset(config)
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
    extra: dict[str, Any] = {}
    if sequential:  # RecBole ranks a sequential model's seen items too; ours excludes them: both figures
        extra["max_item_list_length"] = config["MAX_ITEM_LIST_LENGTH"]
        for part, data in (("valid", valid_data), ("test", test_data)):
            extra[f"{part}_excluding_seen"] = metrics(excluding_seen(trainer, dataset, data, part))
    print(json.dumps({
        "model": model_name,
        "model_type": "sequential" if sequential else str(config["MODEL_TYPE"].name).lower(),
        "overrides": overrides,
        "valid": metrics(valid_result),
        "test": metrics(test_result),
        **extra,
        "users": {part: int(data._dataset.inter_feat[dataset.uid_field].unique().numel())
                  for part, data in (("valid", valid_data), ("test", test_data))},
        "items": int(dataset.item_num - 1),  # RecBole's item 0 pads
        "best_epoch": best["epoch"],
        "epochs_run": len(epoch_seconds),
        "seconds_to_best": round(best["seconds"], 1),
        "fit_seconds": round(fit_seconds, 1),
        "train_epoch_seconds": epoch_seconds,
        "valid_ndcg@10_by_epoch": valid_by_epoch,
        "time_limit_s": time_limit_s if time_limit_s < float("inf") else None,
        "cut_by_time_limit": cut,
    }))


def metrics(result: dict[str, Any]) -> dict[str, float]:
    return {k.lower(): float(v) for k, v in result.items()}


def excluding_seen(trainer: Any, dataset: FixedSplitSequentialDataset, data: Any, part: str) -> dict[str, Any]:
    """The loaded (best) model on ``data`` with each row's seen items (everything its user had before
    ``part``, not only the last MAX_ITEM_LIST_LENGTH) ranked last, as our evaluation excludes them."""
    seen = dataset.seen_before[part]
    full_sort = trainer._full_sort_batch_eval

    def masked(batched_data: Any) -> Any:
        interaction, scores, positive_u, positive_i = full_sort(batched_data)
        rows = seen[interaction[dataset.uid_field].cpu().numpy()].tocoo()
        scores[torch.from_numpy(rows.row).long(), torch.from_numpy(rows.col).long()] = -np.inf
        return interaction, scores, positive_u, positive_i

    trainer._full_sort_batch_eval = masked
    try:
        return trainer.evaluate(data, load_best_model=False, show_progress=False)
    finally:
        trainer._full_sort_batch_eval = full_sort


if __name__ == "__main__":
    main()
