"""The model-kind interface: how a recommender trains, scores, exports and serves.

Every recommender the pipeline trains is a kind: one small class in its own file under
recsys/kinds/, registered by name. Member kinds score items from a user's recent history (their
last ``Catalog.history_length`` items, oldest first), the same input serving sends at request time:
no kind scores from a per-user table. The fusion kind re-ranks candidates from the members' scores.
Training, evaluation, export and the Triton repository iterate over the kinds a pipeline names.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from recsys.data.catalog import Item
from recsys.data.splits import Split
from recsys.features import ItemFeatures, history_matrix, recent
from recsys.metrics import ScoreFunction

if TYPE_CHECKING:
    from recsys.training import Checkpoints, LoopCheckpoint

# stage, step (1-based), steps, value, what the value is ("loss", "validation ndcg@10"; "" for none)
Progress = Callable[[str, int, int, float, str], None]
PARAMS_FILE = "params.json"
DEFAULT_HISTORY_LENGTH = 200
ENCODE_BATCH = 1024


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
    ordered: bool  # histories are in time order; without timestamps a history is a set
    history_length: int = DEFAULT_HISTORY_LENGTH  # the most recent items of a history a kind sees (what serving sends)
    items: tuple[Item, ...] = ()  # the catalog's items, for kinds that read their content


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
        self.checkpoints: Checkpoints | None = None  # set by a training job: where its loops checkpoint
        self._loops = 0

    def loop_checkpoint(self, stage: str) -> LoopCheckpoint | None:
        """The checkpoint of the next training loop this kind starts (None outside a training job).
        Loops are numbered in the order a kind starts them, which a job run again repeats."""
        if self.checkpoints is None:
            return None
        self._loops += 1
        identity = {"kind": self.name, "stage": stage, "params": dataclasses.asdict(self.params), "seed": self.seed,
                    "users": self.catalog.n_users, "items": self.catalog.n_items}
        return self.checkpoints.loop(f"{self.name}-{self._loops}", identity)

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


class ScorerInput(StrEnum):
    """One input of a member's exported scorer; the values are cinesync.triton's ONNX tensor names."""

    HISTORY = "history"  # [B, L] item index + 1, oldest first, 0 pads on the left
    ITEMS = "items"  # [B, W] candidates as item index + 1, 0 pads
    USER_VECTOR = "user_vector"  # [B, D] the member's own encoder output


class MemberKind(ModelKind):
    """A kind that scores items from users' recent histories. Every member is a scorer of the
    ranking ensemble (the fusion reads all their scores); some also retrieve, and some encode a
    history into a user vector first (``encoder_module``), which FAISS retrieval searches with."""

    index_kind: ClassVar[str | None] = None  # retrievers: the control plane index that serves retrieval_arrays
    scorer_inputs: ClassVar[tuple[ScorerInput, ...]] = (ScorerInput.HISTORY, ScorerInput.ITEMS)

    @abstractmethod
    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        """Learn from ``split.train_sequences``; use ``split.test_items`` (validation) to choose
        hyper-parameters and epochs, recording them in ``self.chosen``."""

    @abstractmethod
    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        """Learn from ``sequences`` with the choices of ``fit``, no held-out data needed."""

    @abstractmethod
    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores ``[len(histories), n_items]`` (higher is better) of users whose recent histories
        (item indices, oldest first, at most ``catalog.history_length``) are ``histories``."""

    def user_scores(self, split: Split) -> ScoreFunction:
        """Users of ``split`` -> their scores, from the recent part of their training sequences."""
        length = self.catalog.history_length
        return lambda users: self.score(recent([split.train_sequences[u] for u in users], length))

    def score_lists(self, histories: Sequence[np.ndarray], items: np.ndarray) -> np.ndarray:
        """Scores ``[B, W]`` of candidate items ``items`` (``[B, W]``, item indices; negative ones
        pad and get some value) of the users with ``histories``; kinds with a cheaper way override."""
        return np.take_along_axis(self.score(histories), np.maximum(items, 0), axis=1).astype(np.float32)

    def encoder_module(self) -> torch.nn.Module | None:
        """For kinds with a history encoder: a torch module ``history [B, L] int64 -> [B, D] float32``
        (its output is what ``scorer_module`` reads as user_vector and FAISS searches with)."""
        return None

    def vector_size(self) -> int:
        """D, the size of the encoder's user vectors."""
        raise NotImplementedError(f"{self.name} has no history encoder")

    @torch.no_grad()
    def encode(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """User vectors ``[len(histories), D]`` from the encoder, as serving computes them."""
        module = self.encoder_module()
        if module is None:
            raise NotImplementedError(f"{self.name} has no history encoder")
        module.eval()
        length = self.catalog.history_length
        device = next(module.parameters(), torch.empty(0)).device  # where training left it (a GPU, maybe)
        parts = [module(torch.from_numpy(history_matrix(histories[start : start + ENCODE_BATCH], length)).to(device))
                 .float().cpu().numpy() for start in range(0, len(histories), ENCODE_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.vector_size()), dtype=np.float32)

    @abstractmethod
    def scorer_module(self) -> torch.nn.Module:
        """A torch module over the ``scorer_inputs`` (in that order) ``-> score [B, W] float32``
        equal to ``score_lists``, holding no per-user state; it is exported to ONNX."""

    @abstractmethod
    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        """Grow to ``catalog`` (this kind's items first, then new titles without interactions) without
        refitting: each new title's parameters come from its content, ``content`` holding every item's
        embedding (recsys.content), through a map fitted on the ``warm`` items (those with training
        interactions; recsys.kinds.new_items). Scores of the items already there stay as they were."""

    def retrieval_arrays(self, sample: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """For retrievers: the arrays the control plane's index of this kind loads; ``sample`` holds
        real users' recent histories, which an index may tune itself on at publish."""
        raise NotImplementedError(f"{self.name} is not a retriever")
