"""The model-kind interface: how a recommender trains, scores, exports and serves.

Every recommender the pipeline trains is a kind: one small class in its own file under
recsys/kinds/, registered by name. Member kinds score (user, item) pairs from users' histories;
the fusion kind re-ranks candidates from the members' scores. Training, evaluation, export and the
Triton repository iterate over the kinds a pipeline names.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsys.data.splits import Split
from recsys.features import ItemFeatures

# stage, step (1-based), steps, value, what the value is ("loss", "validation ndcg@10"; "" for none)
Progress = Callable[[str, int, int, float, str], None]
PARAMS_FILE = "params.json"


def no_progress(stage: str, step: int, steps: int, value: float, measure: str) -> None:
    del stage, step, steps, value, measure


class Role(StrEnum):
    """What a kind does in serving."""

    RETRIEVER = "retriever"  # proposes candidates (FAISS or item-item index in the control plane)
    SCORER = "scorer"  # scores candidates as a parallel step of the Triton ranking ensemble
    FUSION = "fusion"  # the ensemble's last step: re-ranks from every scorer's output


class UnknownOption(ValueError):
    """A kind name or hyper-parameter that does not exist; the message lists the valid ones."""


@dataclass(frozen=True)
class Catalog:
    """What every kind may read besides interactions: sizes and side features."""

    n_users: int
    n_items: int
    item_features: ItemFeatures
    user_features: np.ndarray  # [n_users, n_user_features] categorical codes
    user_feature_cardinalities: list[int]
    ordered: bool  # histories are in time order; without timestamps a history is a set


def number_grid(text: str, *, name: str, example: str, zero_allowed: bool = False) -> list[float]:
    """The candidates of a comma-separated hyper-parameter grid ("200,500,1000"), all positive
    (or non-negative where ``zero_allowed``)."""
    try:
        grid = [float(value) for value in text.split(",")]
    except ValueError:
        grid = []
    if not grid or not np.isfinite(grid).all() or min(grid) < 0 or (min(grid) == 0 and not zero_allowed):
        sign = "non-negative" if zero_allowed else "positive"
        raise ValueError(f"{name} must list {sign} numbers, e.g. {example}; got {text!r}")
    return grid


def parse_params(params_type: type[Any], options: Mapping[str, Any], *, owner: str) -> Any:
    """Build a kind's parameter dataclass from ``options``; unknown keys raise UnknownOption."""
    fields = {f.name: f for f in dataclasses.fields(params_type)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise UnknownOption(
            f"{owner}: unknown hyper-parameter(s) {', '.join(unknown)}; valid: {', '.join(fields) or 'none'}"
        )
    values = {}
    for key, raw in options.items():
        default = fields[key].default
        try:
            values[key] = type(default)(raw) if isinstance(default, (int, float, str)) and raw is not None else raw
        except (TypeError, ValueError):
            raise UnknownOption(f"{owner}: {key}={raw!r} is not a valid {type(default).__name__}") from None
    try:
        return params_type(**values)
    except ValueError as error:  # a Params class's own check (__post_init__)
        raise UnknownOption(f"{owner}: {error}") from None


class ModelKind(ABC):
    """A recommender of the pipeline. Subclasses set ``name``, ``roles`` and ``Params``."""

    name: ClassVar[str]
    roles: ClassVar[frozenset[Role]]
    Params: ClassVar[type[Any]]
    quantizable: ClassVar[bool] = False  # a neural model the exporter may serve as INT8 (QDQ)

    def __init__(self, catalog: Catalog, params: Any, *, seed: int = 0) -> None:
        self.catalog = catalog
        self.params = params
        self.seed = seed
        self.chosen: dict[str, Any] = {}  # hyper-parameters and epochs chosen on validation

    def describe(self) -> dict[str, Any]:
        """What the run manifest records of this kind."""
        return {"kind": self.name, "roles": sorted(self.roles), "params": dataclasses.asdict(self.params),
                "chosen": self.chosen}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PARAMS_FILE).write_text(json.dumps(self.describe(), indent=2))
        self.save_state(folder)

    @abstractmethod
    def save_state(self, folder: Path) -> None:
        """Write the fitted state (arrays, weights) into ``folder``."""

    @abstractmethod
    def load_state(self, folder: Path) -> None:
        """Read what ``save_state`` wrote."""


class MemberKind(ModelKind):
    """A kind that scores users × items from the histories it was last fitted on. Every member is a
    scorer of the ranking ensemble (the fusion reads all their scores); some also retrieve."""

    index_kind: ClassVar[str | None] = None  # retrievers: the control plane index that serves retrieval_arrays

    @abstractmethod
    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        """Learn from ``split.train_sequences``; use ``split.test_items`` (validation) to choose
        hyper-parameters and epochs, recording them in ``self.chosen``."""

    @abstractmethod
    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        """Learn from ``sequences`` with the choices of ``fit``, no held-out data needed."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``[len(users), n_items]`` (higher is better) from each user's fitted history."""

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of the pairs (users[i], items[i]); kinds with a cheaper way override this."""
        order = np.argsort(users, kind="stable")
        unique, starts = np.unique(users[order], return_index=True)
        out = np.empty(len(users), dtype=np.float32)
        for user, rows in zip(unique, np.split(order, starts[1:]), strict=True):
            out[rows] = self.score(np.array([user]))[0, items[rows]]
        return out

    @abstractmethod
    def scorer_module(self) -> Any:
        """A torch module ``(user_idx [B,1] int64, item_idx [B,1] int64) -> score [B,1] float32``
        equal to ``score_pairs``, with the fitted user state inside; it is exported to ONNX."""

    def retrieval_arrays(self) -> dict[str, np.ndarray]:
        """For retrievers: the arrays the control plane's index of this kind loads."""
        raise NotImplementedError(f"{self.name} is not a retriever")
