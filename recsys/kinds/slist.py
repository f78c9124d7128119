"""SLIST (Choi et al. 2021, "Session-aware Linear Item-Similarity/Transition Model"), closed form,
as the cheap order-aware baseline the sequential kinds must beat.

Two item × item models fitted in closed form on the training sequences and blended:
- SLIS, item similarity: EASE over each user's whole history (zero diagonal), and
- SLIT, item transition: a ridge regression from each position's recency-weighted past (the last
  ``window`` items, weight exp(-(distance - 1) / decay)) to the item that came next,
  B = (SᵀS + λI)⁻¹ SᵀT.
A history's scores are ``(1 - transition_weight)`` · its EASE sums plus ``transition_weight`` · its
recency-weighted transition sums. λ, the decay and the blend weight are chosen together on
validation; the refit solves the same closed forms on the training part with those choices. Both
matrices are dense (items² floats each): a scorer for catalogs up to a few ten thousand items.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

from recsys.data.splits import Split
from recsys.kinds.base import Catalog, MemberKind, Progress, Role, no_progress, number_grid
from recsys.kinds.ease import ease_weights, gram_of, history_matrix
from recsys.kinds.new_items import content_to_rows
from recsys.kinds.space import FloatRange, IntRange, searched
from recsys.metrics import K, evaluate_full_ranking

STATE_FILE = "slist.npz"


@dataclass
class SlistParams:
    window: int = searched(20, IntRange(1, 100, log=True))  # past items a transition reads
    # λ of both closed forms, comma-separated; validation picks one
    l2_grid: str = searched("10,100,500", FloatRange(1.0, 10_000.0, log=True))
    decay_grid: str = searched("2,8", FloatRange(1.0, 64.0, log=True))  # recency decay of the transition's inputs, in items
    transition_weight_grid: str = searched("0.25,0.5,0.75,1", FloatRange(0.0, 1.0))  # blend weight of the transition model

    def __post_init__(self) -> None:
        _ = self.l2s, self.decays, self.blend_weights  # raise on a bad grid
        if self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window}")

    @property
    def l2s(self) -> list[float]:
        return number_grid(self.l2_grid, name="l2_grid", example="10,100,500")

    @property
    def decays(self) -> list[float]:
        return number_grid(self.decay_grid, name="decay_grid", example="2,8")

    @property
    def blend_weights(self) -> list[float]:
        grid = number_grid(self.transition_weight_grid, name="transition_weight_grid", example="0.5,1",
                           zero_allowed=True)
        if max(grid) > 1:
            raise ValueError(f"transition_weight_grid must list weights in [0, 1], got {self.transition_weight_grid!r}")
        return grid


def recency_weights(window: int, decay: float) -> np.ndarray:
    """Weights of the last ``window`` items, oldest first: exp(-(distance - 1) / decay)."""
    distance = np.arange(window, 0, -1, dtype=np.float64)
    return np.exp(-(distance - 1.0) / decay)


def transition_inputs(sequences: Sequence[np.ndarray], n_items: int, weights: np.ndarray) -> tuple[
    sparse.csr_array, np.ndarray
]:
    """S (each position's recency-weighted past items) and the item that came next, for every
    position after a user's first."""
    window = len(weights)
    rows, columns, values, targets = [], [], [], []
    row = 0
    for seq in sequences:
        for t in range(1, len(seq)):
            past = seq[max(0, t - window) : t]
            rows.append(np.full(len(past), row))
            columns.append(past)
            values.append(weights[window - len(past) :])
            targets.append(seq[t])
            row += 1
    if not row:
        return sparse.csr_array((0, n_items)), np.zeros(0, dtype=np.int64)
    matrix = sparse.csr_array((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                              shape=(row, n_items))
    return matrix, np.asarray(targets, dtype=np.int64)


def transition_weights(sequences: Sequence[np.ndarray], n_items: int, *, window: int, decay: float,
                       l2: float) -> np.ndarray:
    """B = (SᵀS + λI)⁻¹ SᵀT, float32 ``[source, target]``."""
    inputs, targets = transition_inputs(sequences, n_items, recency_weights(window, decay))
    gram = (inputs.T @ inputs).toarray()
    onehot = sparse.csr_array((np.ones(len(targets)), (np.arange(len(targets)), targets)),
                              shape=(len(targets), n_items))
    cross = (inputs.T @ onehot).toarray()
    return np.linalg.solve(gram + l2 * np.eye(n_items), cross).astype(np.float32)


class SlistScorer(torch.nn.Module):
    """(history ``[B, L]``, items ``[B, W]``, both index + 1) -> the blended SLIS + SLIT scores."""

    similarity: torch.Tensor  # registered buffers, declared for the type checker
    transition: torch.Tensor
    recency: torch.Tensor

    def __init__(self, similarity: np.ndarray, transition: np.ndarray, recency: np.ndarray) -> None:
        super().__init__()
        # Row 0 belongs to the padding item: it adds nothing.
        self.register_buffer("similarity", torch.from_numpy(np.vstack([np.zeros_like(similarity[:1]), similarity])))
        self.register_buffer("transition", torch.from_numpy(np.vstack([np.zeros_like(transition[:1]), transition])))
        self.register_buffer("recency", torch.from_numpy(recency.astype(np.float32)))

    def forward(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # Only the candidates' columns of the history's rows are read (gathers of [B, L, W], not a
        # [B, items] x [items, items] product): each distinct history item's similarity (the fit reads
        # a multi-hot history, so a repeat counts once), each recent position's weighted transition.
        length = history.shape[1]
        n_items = self.similarity.shape[1]
        columns = (items - 1).clamp(min=0).unsqueeze(1)  # [B, 1, W]; a pad reads some column, ignored
        earlier = torch.ones(length, length).tril(diagonal=-1) > 0
        repeat = ((history.unsqueeze(2) == history.unsqueeze(1)) & earlier).any(dim=2)  # [B, L]
        similar = self._gathered(self.similarity, history.unsqueeze(2) * n_items + columns)  # [B, L, W]
        similarity = (similar * (~repeat).to(similar.dtype).unsqueeze(2)).sum(dim=1)
        recent = history[:, -self.recency.shape[0] :]
        moved = self._gathered(self.transition, recent.unsqueeze(2) * n_items + columns)  # [B, window, W]
        transition = (moved * self.recency[-recent.shape[1] :].view(1, -1, 1)).sum(dim=1)
        return similarity + transition

    @staticmethod
    def _gathered(matrix: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``matrix.reshape(-1)[index]``, as one ONNX Gather on a flat index."""
        return torch.index_select(matrix.reshape(-1), 0, index.reshape(-1)).reshape(index.shape)


class Slist(MemberKind):
    """Closed-form item similarity plus recency-weighted item transitions; a scorer (the fusion reads
    it), not a retriever."""

    name = "slist"
    roles = frozenset({Role.SCORER})
    Params = SlistParams

    similarity: np.ndarray  # EASE weights times (1 - transition weight), [source, target]
    transition: np.ndarray  # transition weights times the transition weight, [source, target]
    recency: np.ndarray  # [window], oldest first

    def _solve(self, sequences: list[np.ndarray], l2: float, decay: float) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.catalog.n_items
        ease = ease_weights(gram_of(history_matrix(sequences, n_items)), l2)
        return ease, transition_weights(sequences, n_items, window=self.params.window, decay=decay, l2=l2)

    def _set(self, ease: np.ndarray, transition: np.ndarray, decay: float, weight: float) -> None:
        self.similarity = (1.0 - weight) * ease
        self.transition = weight * transition
        self.recency = recency_weights(self.params.window, decay).astype(np.float32)

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        points = list(itertools.product(self.params.l2s, self.params.decays))
        best = -np.inf
        for step, (l2, decay) in enumerate(points, start=1):
            ease, transition = self._solve(split.train_sequences, l2, decay)
            for weight in self.params.blend_weights:  # the blend needs no new solve
                self._set(ease, transition, decay, weight)
                ndcg = evaluate_full_ranking(self.user_scores(split), split)[f"ndcg@{K}"]
                if ndcg > best:
                    best, choice, kept = ndcg, (l2, decay, weight), (ease, transition)
            progress("slist λ, decay, blend search", step, len(points), best, f"best validation ndcg@{K}")
        l2, decay, weight = choice
        self.chosen = {"l2": l2, "decay": decay, "transition_weight": weight, f"validation_ndcg@{K}": best}
        self._set(*kept, decay, weight)

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        chosen = self.chosen
        self._set(*self._solve(sequences, chosen["l2"], chosen["decay"]), chosen["decay"], chosen["transition_weight"])
        progress("slist refit", 1, 1, 0.0, "")

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        window = len(self.recency)
        recent = np.zeros((len(histories), self.catalog.n_items), dtype=np.float32)
        for row, history in enumerate(histories):
            tail = history[-window:]
            np.add.at(recent[row], tail, self.recency[window - len(tail) :])
        return history_matrix(histories, self.catalog.n_items) @ self.similarity + recent @ self.transition

    def scorer_module(self) -> torch.nn.Module:
        return SlistScorer(self.similarity, self.transition, self.recency)

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        def grown_square(weights: np.ndarray) -> np.ndarray:  # [source, target]: a new column each, no new source
            columns = content_to_rows(content, weights.T, warm)
            return np.block([[weights, columns.T], [np.zeros((len(columns), catalog.n_items), dtype=weights.dtype)]])

        self.similarity, self.transition = grown_square(self.similarity), grown_square(self.transition)
        self.catalog = catalog

    def save_state(self, folder: Path) -> None:
        np.savez(folder / STATE_FILE, similarity=self.similarity, transition=self.transition, recency=self.recency)

    def load_state(self, folder: Path) -> None:
        with np.load(folder / STATE_FILE) as state:
            self.similarity, self.transition, self.recency = state["similarity"], state["transition"], state["recency"]
