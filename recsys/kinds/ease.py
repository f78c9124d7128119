"""EASE (Steck 2019): a closed-form item-item model, B = I - P·diag(1/diag(P)), P = (XᵀX + Λ)⁻¹.

Λ = λI + c·diag(XᵀX): c > 0 is EDLAE's dropout emphasis (Steck 2020, "Autoencoders that don't
overfit towards the identity"; c = p / (1 - p) for dropout rate p), which penalises the weights of
popular source items more. Each target item's column is then divided by its training count to the
power β (a popularity tilt, folded into the weights, so serving is unchanged). Users may be
weighted in XᵀX by their history length to the power -α (a long history says less about each pair
of its items; the weights are rescaled to keep the trace of XᵀX, so λ keeps its scale): training
only, serving is unchanged. λ, c, β and α are chosen together on validation from grids. Then,
where ``low_rank_grid`` offers weights above 0, a rank-k item-item part is added to the weights
before pruning: GF-CF's ideal low-pass filter (Shen et al. 2021), the top k right singular vectors
V of the degree-normalised X, as D⁻½VVᵀD½ (D the items' counts), scaled to the weights' norm; its
weight is chosen on validation (0 keeps EASE alone). Fitting needs items² floats in memory and items³ time, so only
the ``max_items`` most-watched titles are fitted (all of them in every shared data set); the others
get no weights, as sources or targets, and the pipeline's other members rank them. What is kept and
served is B pruned to the ``neighbours`` largest |weights| into each item, O(items × neighbours),
and evaluation uses that same pruned matrix (sparse), so served and evaluated scores agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

from recsys.data.splits import Split
from recsys.kinds.base import Catalog, MemberKind, Progress, Role, no_progress, number_grid
from recsys.kinds.new_items import content_to_rows
from recsys.kinds.space import FloatRange, searched
from recsys.metrics import K, evaluate_full_ranking

STATE_FILE = "ease.npz"
USER_WEIGHTING = "user_weighting"  # α's name in ``chosen``
LOW_RANK = "low_rank_weight"  # the low-pass part's weight in ``chosen``
DENSE_SCORING_BYTES = 2**30  # the largest item x item float32 matrix scoring keeps dense (16,384 items)


@dataclass
class EaseParams:
    # λ candidates, comma-separated; validation picks one
    l2_grid: str = searched("50,200,500,1000,3000", FloatRange(10.0, 20_000.0, log=True))
    emphasis_grid: str = searched("0,0.25", FloatRange(0.0, 0.5))  # EDLAE's c candidates (0: plain EASE)
    popularity_tilt_grid: str = searched("0,0.1,0.2", FloatRange(0.0, 0.4))  # β candidates (0: no tilt)
    # α candidates: each user's row in XᵀX weighted by history length ** -α (0: every user alike)
    user_weighting_grid: str = searched("0", FloatRange(0.0, 1.0))
    # weights of the low-pass part added to the EASE weights, relative to their norm (0: none)
    low_rank_grid: str = searched("0", FloatRange(0.0, 1.0))
    low_rank: int = 128  # its rank (singular vectors kept)
    neighbours: int = 1024  # kept weights into each item (0: keep all); 256 cost 2% NDCG@10 on ML-1M
    # The most-watched titles fitted (0: all): items² float64 three times over in memory (1.5 GiB at
    # 8,000) and items³ time per grid point; the rest are left to the other members.
    max_items: int = 8000

    def __post_init__(self) -> None:
        _ = self.grid, self.emphases, self.tilts, self.user_weightings, self.low_rank_weights  # raise on a bad grid
        if self.low_rank < 1:
            raise ValueError(f"low_rank must be 1 or more, got {self.low_rank}")
        if self.neighbours < 0:
            raise ValueError(f"neighbours must be 0 (all) or more, got {self.neighbours}")
        if self.max_items < 0:
            raise ValueError(f"max_items must be 0 (all) or more, got {self.max_items}")

    @property
    def grid(self) -> list[float]:
        return number_grid(self.l2_grid, name="l2_grid", example="200,500,1000")

    @property
    def emphases(self) -> list[float]:
        return number_grid(self.emphasis_grid, name="emphasis_grid", example="0,0.25", zero_allowed=True)

    @property
    def tilts(self) -> list[float]:
        return number_grid(self.popularity_tilt_grid, name="popularity_tilt_grid", example="0,0.1",
                           zero_allowed=True)

    @property
    def low_rank_weights(self) -> list[float]:
        return number_grid(self.low_rank_grid, name="low_rank_grid", example="0,0.35", zero_allowed=True)

    @property
    def user_weightings(self) -> list[float]:
        return number_grid(self.user_weighting_grid, name="user_weighting_grid", example="0,0.5",
                           zero_allowed=True)


def multi_hot(sequences: Sequence[np.ndarray], n_items: int) -> sparse.csr_array:
    """Binary user × item matrix [len(sequences), n_items] (float32, sparse)."""
    columns = np.concatenate(sequences).astype(np.int64) if len(sequences) else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(sequences)), [len(seq) for seq in sequences])
    matrix = sparse.csr_array((np.ones(len(columns), dtype=np.float32), (rows, columns)),
                              shape=(len(sequences), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # an item watched twice is one
    return matrix


def history_matrix(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Binary user × item matrix [len(sequences), n_items] (float32, dense)."""
    return multi_hot(sequences, n_items).toarray()


def gram_of(history: np.ndarray | sparse.csr_array, user_weighting: float = 0.0) -> np.ndarray:
    """XᵀWX in float64 (dense, from a dense or sparse binary X): W weights each user by their history
    length ** -``user_weighting``, rescaled so that the trace is XᵀX's; 0 gives XᵀX, whose diagonal
    holds the items' training counts."""
    wide = history.astype(np.float64)
    if user_weighting == 0.0:
        return wide.T @ wide if isinstance(wide, np.ndarray) else np.asarray((wide.T @ wide).toarray())
    lengths = np.asarray(wide.sum(axis=1)).ravel()
    weights = np.maximum(lengths, 1.0) ** -user_weighting
    weights *= lengths.sum() / max(float(weights @ lengths), 1e-12)
    if isinstance(wide, np.ndarray):
        return wide.T @ (wide * weights[:, None])
    return np.asarray((wide.T @ (sparse.diags_array(weights) @ wide)).toarray())


def low_pass(history: sparse.csr_array, rank: int) -> np.ndarray:
    """GF-CF's ideal low-pass filter as item × item weights [source, target] (float64): D⁻½VVᵀD½,
    V the top ``rank`` right singular vectors of D_u⁻½ X D⁻½ (D_u users' lengths, D items' counts)."""
    from scipy.sparse.linalg import svds

    wide = sparse.csr_array(history, dtype=np.float64)
    users = np.maximum(np.asarray(wide.sum(axis=1)).ravel(), 1.0) ** -0.5
    items = np.maximum(item_counts(wide), 1.0) ** -0.5
    normalised = sparse.diags_array(users) @ wide @ sparse.diags_array(items)
    rank = min(rank, min(wide.shape) - 1)
    _, _, top = svds(normalised, k=rank, rng=np.random.default_rng(0))  # [rank, items]
    return (items[:, None] * top.T) @ (top / items[None, :])


def item_counts(history: np.ndarray | sparse.csr_array) -> np.ndarray:
    """Each item's training users (the column sums of a binary X), float64."""
    return np.asarray(history.sum(axis=0), dtype=np.float64).ravel()


def ease_weights(gram: np.ndarray, l2: float, emphasis: float = 0.0) -> np.ndarray:
    """The closed-form item × item weights with a zero diagonal (float32), from the Gram matrix XᵀX."""
    inverse = np.linalg.inv(gram + np.diag(l2 + emphasis * np.diag(gram)))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def tilted(weights: np.ndarray, counts: np.ndarray, tilt: float) -> np.ndarray:
    """Pruned weights [target, neighbour] with each target's row divided by its count ** tilt."""
    return (weights / np.maximum(counts, 1.0)[:, None] ** tilt).astype(np.float32)


def prune(weights: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Per target item (column), the sources and weights of its ``neighbours`` largest |weights|."""
    n = weights.shape[0] if neighbours <= 0 else min(neighbours, weights.shape[0])
    columns = weights.T  # [target, source]
    sources = np.argpartition(-np.abs(columns), n - 1, axis=1)[:, :n]
    return sources.astype(np.int64), np.take_along_axis(columns, sources, axis=1).astype(np.float32)


class EaseScorer(torch.nn.Module):
    """(history ``[B, L]``, items ``[B, W]``, both index + 1) -> Σₙ w[i, n] · [src[i, n] in history]."""

    sources: torch.Tensor  # registered buffers, declared for the type checker
    weights: torch.Tensor

    def __init__(self, sources: np.ndarray, weights: np.ndarray) -> None:
        super().__init__()
        # Row 0 belongs to the padding item: weight 0, whatever its sources.
        self.register_buffer("sources", torch.from_numpy(np.vstack([np.zeros_like(sources[:1]), sources])))
        self.register_buffer("weights", torch.from_numpy(np.vstack([np.zeros_like(weights[:1]), weights])))
        self.n_items = int(sources.shape[0])

    def forward(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        batch, width = items.shape
        # The history as a multi-hot row per request (column 0, the padding item, cut off).
        seen = torch.zeros(history.shape[0], self.n_items + 1).scatter(1, history, torch.ones(history.shape))[:, 1:]
        flat = items.reshape(-1)
        # index_select exports as one ONNX Gather (indexing with a 2-D tensor would be GatherND).
        sources = torch.index_select(self.sources, 0, flat).reshape(batch, -1)  # [B, W * N]
        weights = torch.index_select(self.weights, 0, flat).reshape(batch, width, -1)  # [B, W, N]
        return (torch.gather(seen, 1, sources).reshape(batch, width, -1) * weights).sum(dim=2)


class Ease(MemberKind):
    """Closed-form item-item model; retrieves through an item-item index and scores in Triton."""

    name = "ease"
    roles = frozenset({Role.RETRIEVER, Role.SCORER})
    Params = EaseParams
    index_kind = "item_item"

    sources: np.ndarray
    weights: np.ndarray

    def _set_state(self, sources: np.ndarray, weights: np.ndarray) -> None:
        self.sources, self.weights = sources, weights
        self.__dict__.pop("item_matrix", None)  # derived from the weights: rebuilt when next scored

    @cached_property
    def item_matrix(self) -> np.ndarray | sparse.csr_array:
        """The pruned weights as a [source, target] matrix, for scoring whole catalogs (built on first
        use: export and publish never need it): dense up to DENSE_SCORING_BYTES (BLAS scores it
        fastest), sparse beyond."""
        n_items, kept = self.sources.shape
        targets = np.repeat(np.arange(n_items), kept)
        matrix = sparse.csr_array((self.weights.ravel(), (self.sources.ravel(), targets)), shape=(n_items, n_items))
        return matrix.toarray() if n_items * n_items * 4 <= DENSE_SCORING_BYTES else matrix

    def _fitted_items(self, history: sparse.csr_array) -> np.ndarray:
        """The indices (ascending) of the ``max_items`` items with the most training users: all where the
        catalog is no larger."""
        cap = self.params.max_items
        if cap <= 0 or history.shape[1] <= cap:
            return np.arange(history.shape[1])
        counts = np.asarray(history.sum(axis=0)).ravel()
        return np.sort(np.argsort(-counts, kind="stable")[:cap])

    def _solve(self, gram: np.ndarray, l2: float, emphasis: float) -> tuple[np.ndarray, np.ndarray]:
        """Pruned sources and untilted weights for one (λ, c), in the fitted items' indices."""
        return prune(ease_weights(gram, l2, emphasis), self.params.neighbours)

    def _set_fitted(self, fitted: np.ndarray, sources: np.ndarray, weights: np.ndarray) -> None:
        """State for the whole catalog from the fitted items' ``sources`` and ``weights``."""
        self._set_state(*self._whole(fitted, sources, weights))

    def _whole(self, fitted: np.ndarray, sources: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole catalog's sources and weights from the fitted items': items not fitted get zero
        weights (from source 0)."""
        if len(fitted) == self.catalog.n_items:
            return sources, weights
        whole_sources = np.zeros((self.catalog.n_items, sources.shape[1]), dtype=np.int64)
        whole_weights = np.zeros((self.catalog.n_items, sources.shape[1]), dtype=np.float32)
        whole_sources[fitted], whole_weights[fitted] = fitted[sources], weights
        return whole_sources, whole_weights

    def _dense(self, history: sparse.csr_array, choice: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """The tilted, unpruned weights of ``choice`` [source, target] and the low-pass part scaled to
        their norm (zeros on both diagonals), over the fitted items (``history`` holds only them)."""
        counts = item_counts(history)
        dense = ease_weights(gram_of(history, choice.get(USER_WEIGHTING, 0.0)), choice["l2"], choice["emphasis"])
        dense = dense / np.maximum(counts, 1.0)[None, :] ** choice["popularity_tilt"]
        low = low_pass(history, self.params.low_rank)
        np.fill_diagonal(low, 0.0)
        return dense, (low * (np.linalg.norm(dense) / max(float(np.linalg.norm(low)), 1e-12))).astype(np.float32)

    def _with_low_pass(self, dense: np.ndarray, low: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """Pruned sources and weights of ``dense`` + ``weight`` × ``low`` (fitted items' indices)."""
        return prune(dense + weight * low if weight else dense, self.params.neighbours)

    def _fit_with(self, sequences: list[np.ndarray], choice: dict[str, float]) -> None:
        history = multi_hot(sequences, self.catalog.n_items)
        fitted = self._fitted_items(history)
        if choice.get(LOW_RANK, 0.0):  # absent in runs before it
            self._set_fitted(fitted, *self._with_low_pass(*self._dense(history[:, fitted], choice), choice[LOW_RANK]))
            return
        gram = gram_of(history[:, fitted], choice.get(USER_WEIGHTING, 0.0))  # absent in runs before it
        sources, weights = self._solve(gram, choice["l2"], choice["emphasis"])
        self._set_fitted(fitted, sources, tilted(weights, item_counts(history[:, fitted]), choice["popularity_tilt"]))

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        history = multi_hot(split.train_sequences, self.catalog.n_items)
        fitted = self._fitted_items(history)
        counts = item_counts(history[:, fitted])
        fits = [(weighting, l2, emphasis) for weighting in self.params.user_weightings
                for l2 in self.params.grid for emphasis in self.params.emphases]
        best_ndcg, gram, gram_weighting = -np.inf, np.zeros(0), None
        for step, (weighting, l2, emphasis) in enumerate(fits, start=1):
            if weighting != gram_weighting:  # one Gram per α, shared by its (λ, c): only the diagonal changes
                gram, gram_weighting = gram_of(history[:, fitted], weighting), weighting
            sources, weights = self._solve(gram, l2, emphasis)
            for tilt in self.params.tilts:  # the tilt needs no refit: it rescales the kept weights
                self._set_fitted(fitted, sources, tilted(weights, counts, tilt))
                ndcg = evaluate_full_ranking(self.user_scores(split), split)[f"ndcg@{K}"]
                if ndcg > best_ndcg:
                    best_ndcg, best_choice, best_state = ndcg, (weighting, l2, emphasis, tilt), (self.sources, self.weights)
            progress("ease λ, c, β, α search", step, len(fits), best_ndcg, f"best validation ndcg@{K}")
        weighting, l2, emphasis, tilt = best_choice
        self.chosen = {"l2": l2, "emphasis": emphasis, "popularity_tilt": tilt, USER_WEIGHTING: weighting,
                       f"validation_ndcg@{K}": best_ndcg}
        self._set_state(*best_state)
        if any(self.params.low_rank_weights):
            dense, low = self._dense(history[:, fitted], self.chosen)
            self._choose_on_validation(split, LOW_RANK, self.params.low_rank_weights,
                                       lambda weight: self._whole(fitted, *self._with_low_pass(dense, low, weight)),
                                       progress)

    def _choose_on_validation(
        self, split: Split, name: str, grid: Sequence[float],
        state_for: Callable[[float], tuple[np.ndarray, np.ndarray]], progress: Progress,
    ) -> None:
        """After EASE's own choices, one more hyper-parameter ``name`` (for a kind built on EASE): each
        value of ``grid`` gives a state (pruned sources and weights) by ``state_for``; the one with
        the best validation NDCG@K is kept and recorded in ``chosen``."""
        best_ndcg, best_value, best_state = -np.inf, 0.0, (self.sources, self.weights)
        for step, value in enumerate(grid, start=1):
            self._set_state(*state_for(value))
            ndcg = evaluate_full_ranking(self.user_scores(split), split)[f"ndcg@{K}"]
            if ndcg > best_ndcg:
                best_ndcg, best_value, best_state = ndcg, value, (self.sources, self.weights)
            progress(f"{self.name} {name} search", step, len(grid), best_ndcg, f"best validation ndcg@{K}")
        self.chosen = {**self.chosen, name: best_value, f"validation_ndcg@{K}": best_ndcg}
        self._set_state(*best_state)

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        self._fit_with(sequences, self.chosen)
        progress("ease refit", 1, 1, 0.0, "")

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        if isinstance(self.item_matrix, np.ndarray):
            return history_matrix(histories, self.catalog.n_items) @ self.item_matrix
        return (multi_hot(histories, self.catalog.n_items) @ self.item_matrix).toarray()

    def scorer_module(self) -> torch.nn.Module:
        return EaseScorer(self.sources, self.weights)

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        # A new title's column (the weights into it) is mapped from its content; as a source it has none.
        matrix = self.item_matrix
        weights = matrix if isinstance(matrix, np.ndarray) else matrix.toarray()
        self._append_targets(catalog, content_to_rows(content, weights.T, warm))

    def _append_targets(self, catalog: Catalog, columns: np.ndarray) -> None:
        """Grow to ``catalog`` with the new items' weights ``columns`` ``[new, items before]`` (pruned
        as the others)."""
        sources, weights = prune(columns.T, self.sources.shape[1])
        self.catalog = catalog
        self._set_state(np.vstack([self.sources, sources]), np.vstack([self.weights, weights]))

    def retrieval_arrays(self, sample: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        del sample
        return {"sources": self.sources, "weights": self.weights}

    def save_state(self, folder: Path) -> None:
        np.savez(folder / STATE_FILE, sources=self.sources, weights=self.weights)

    def load_state(self, folder: Path) -> None:
        with np.load(folder / STATE_FILE) as state:
            self._set_state(state["sources"], state["weights"])
