"""EASE with transfer heads: the joint item-item EASE on both domains, whose cross-domain blocks are
replaced by heads trained for transfer, so that a history from one domain alone predicts the other.

For each ordered pair of domains (source s, target t), the head W_st = (X_sᵀX_s + μI)⁻¹ X_sᵀX_t is the
ridge regression from a user's source-domain items to their target-domain items, fitted on the users
whose training history spans both domains. In the joint EASE the target-domain items explain each
other, so its source -> target weights stay small and a source-only history (a new TV viewer who only
watched films) gets little from them; W_st is fitted on exactly that input. The in-domain blocks stay
EASE's. μ is chosen on validation from a grid after EASE's own choices. The result is one item x item
matrix: pruned, tilted, exported, retrieved and served exactly as EASE's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.splits import Split
from recsys.kinds.base import Progress, no_progress, number_grid
from recsys.kinds.ease import (
    USER_WEIGHTING,
    Ease,
    EaseParams,
    ease_weights,
    gram_of,
    history_matrix,
    item_counts,
    prune,
    tilted,
)


@dataclass
class EaseTransferParams(EaseParams):
    transfer_l2_grid: str = "20,50,200,500,1000"  # μ candidates of the transfer heads' ridge

    def __post_init__(self) -> None:
        super().__post_init__()
        _ = self.transfer_grid

    @property
    def transfer_grid(self) -> list[float]:
        return number_grid(self.transfer_l2_grid, name="transfer_l2_grid", example="50,200,500")


def transfer_heads(history: np.ndarray, domains: np.ndarray, l2: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(source items, target items, W [source, target]) for each ordered pair of the domains present,
    fitted on the rows of ``history`` that have items in both."""
    heads = []
    present = np.unique(domains)
    for source in present:
        for target in present[present != source]:
            src, tgt = np.flatnonzero(domains == source), np.flatnonzero(domains == target)
            both = (history[:, src].sum(axis=1) > 0) & (history[:, tgt].sum(axis=1) > 0)
            inputs = history[np.ix_(both, src)].astype(np.float64)
            outputs = history[np.ix_(both, tgt)].astype(np.float64)
            weights = np.linalg.solve(inputs.T @ inputs + l2 * np.eye(len(src)), inputs.T @ outputs)
            heads.append((src, tgt, weights.astype(np.float32)))
    return heads


class EaseTransfer(Ease):
    """Joint EASE with ridge transfer heads between domains; scores and serves as EASE does."""

    name = "ease_transfer"
    Params = EaseTransferParams
    params: EaseTransferParams

    def _with_heads(self, joint: np.ndarray, history: np.ndarray,
                    choice: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Pruned, tilted sources and weights: ``joint`` EASE with its cross-domain blocks replaced by
        the transfer heads of ridge ``choice["transfer_l2"]``."""
        weights = joint.copy()
        for src, tgt, head in transfer_heads(history, self.catalog.item_features.domain, choice["transfer_l2"]):
            weights[np.ix_(src, tgt)] = head
        sources, kept = prune(weights, self.params.neighbours)
        return sources, tilted(kept, item_counts(history), choice["popularity_tilt"])

    def _fit_with(self, sequences: list[np.ndarray], choice: dict[str, float]) -> None:
        history = history_matrix(sequences, self.catalog.n_items)
        joint = ease_weights(gram_of(history, choice.get(USER_WEIGHTING, 0.0)), choice["l2"], choice["emphasis"])
        self._set_state(*self._with_heads(joint, history, choice))

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        super().fit(split, progress)  # λ, c and β of the joint model
        history = history_matrix(split.train_sequences, self.catalog.n_items)
        joint = ease_weights(gram_of(history, self.chosen[USER_WEIGHTING]), self.chosen["l2"], self.chosen["emphasis"])
        self._choose_on_validation(
            split, "transfer_l2", self.params.transfer_grid,
            lambda transfer_l2: self._with_heads(joint, history, {**self.chosen, "transfer_l2": transfer_l2}),
            progress,
        )
