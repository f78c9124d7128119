"""EASE with content cold start: every item, with interactions or none, gets item-item weights. A
title's text (recsys.content: all-MiniLM-L6-v2 embeddings E) is mapped into the collaborative space by
a bilinear map W fitted on warm items: the score of item c for a history h is (hE) W e_c, with W the
ridge solution that predicts a random half of each user's items from the other half through their
content (DropoutNet's idea in closed form: the map is trained on items it cannot see in the input).
Each item's weights are then blended with EASE's by its training count n: α(n) = n / (n + κ) of
EASE's, the rest of the content's (scaled to EASE's by least squares on warm items), so a new title
starts from its content and moves to its interactions as they arrive. κ is chosen on validation.

The result is one item x item matrix, served and retrieved as EASE's. W and E are kept with the
kind, so new titles can get weights from their content without refitting (``content_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.content import content_embeddings
from recsys.data.splits import Split
from recsys.kinds.base import Catalog, Progress, no_progress, number_grid
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

CONTENT_FILE = "content.npz"
MASK_SEED = 17


@dataclass
class EaseContentParams(EaseParams):
    blend_grid: str = "2,10,50"  # κ candidates: interactions at which an item is half EASE, half content
    content_l2: float = 100.0  # ridge of the map's history side (chosen on ML-1M validation cold items)
    content_item_l2: float = 1.0  # ridge of its item side

    def __post_init__(self) -> None:
        super().__post_init__()
        _ = self.blends
        if self.content_l2 <= 0 or self.content_item_l2 <= 0:
            raise ValueError("content_l2 and content_item_l2 must be positive")

    @property
    def blends(self) -> list[float]:
        return number_grid(self.blend_grid, name="blend_grid", example="2,10,50")


def content_map(history: np.ndarray, embeddings: np.ndarray, *, l2: float, item_l2: float,
                seed: int = MASK_SEED) -> np.ndarray:
    """W ``[d, d]``: the ridge fit of a random half of each user's items (targets) from the other half
    (inputs) through content, (X_in E) W Eᵀ ≈ X_out, separably regularised."""
    history = history.astype(np.float64)
    embeddings = embeddings.astype(np.float64)
    held = (np.random.default_rng(seed).random(history.shape) < 0.5) & (history > 0)
    inputs = np.where(held, 0.0, history) @ embeddings  # [users, d]
    targets = np.where(held, history, 0.0) @ embeddings
    warm = history.sum(axis=0) > 0
    items = embeddings[warm].T @ embeddings[warm]
    dimension = embeddings.shape[1]
    left = np.linalg.solve(inputs.T @ inputs + l2 * np.eye(dimension), inputs.T @ targets)
    return left @ np.linalg.inv(items + item_l2 * np.eye(dimension))


class EaseContent(Ease):
    """EASE whose item weights are blended with a content map's by interaction count."""

    name = "ease_content"
    Params = EaseContentParams
    params: EaseContentParams
    embeddings: np.ndarray | None = None
    mapping: np.ndarray | None = None
    scale = 1.0  # of the content map's weights, fitted to EASE's on warm items

    def _embeddings(self, progress: Progress) -> np.ndarray:
        if self.embeddings is None:
            if len(self.catalog.items) != self.catalog.n_items:
                raise ValueError("ease_content needs the catalog's items (their titles and genres)")
            self.embeddings = content_embeddings(self.catalog.items, progress=progress)
        return self.embeddings

    def content_columns(self, items: np.ndarray) -> np.ndarray:
        """The content map's weights ``[n_items, len(items)]`` from every item into ``items``."""
        assert self.embeddings is not None and self.mapping is not None
        return (self.embeddings @ self.mapping) @ self.embeddings[items].T

    def _blended(self, sequences: list[np.ndarray], choice: dict[str, float], progress: Progress
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """EASE's weights, the content map's (scaled to them) and the items' training counts."""
        history = history_matrix(sequences, self.catalog.n_items)
        collaborative = ease_weights(gram_of(history, choice.get(USER_WEIGHTING, 0.0)), choice["l2"], choice["emphasis"])
        self.mapping = content_map(history, self._embeddings(progress), l2=self.params.content_l2,
                                   item_l2=self.params.content_item_l2)
        content = self.content_columns(np.arange(self.catalog.n_items))
        np.fill_diagonal(content, 0.0)
        counts = item_counts(history)
        warm = counts > 0
        block = content[np.ix_(warm, warm)]
        self.scale = float(np.sum(collaborative[np.ix_(warm, warm)] * block) / max(np.sum(block * block), 1e-12))
        return collaborative, (self.scale * content).astype(np.float32), counts

    def _state(self, collaborative: np.ndarray, content: np.ndarray, counts: np.ndarray,
               choice: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        share = counts / (counts + choice["blend"])  # of EASE's weights, per target item
        sources, weights = prune(collaborative * share[None, :] + content * (1.0 - share)[None, :],
                                 self.params.neighbours)
        return sources, tilted(weights, counts, choice["popularity_tilt"])

    def _fit_with(self, sequences: list[np.ndarray], choice: dict[str, float]) -> None:
        collaborative, content, counts = self._blended(sequences, choice, no_progress)
        self._set_state(*self._state(collaborative, content, counts, choice))

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        super().fit(split, progress)  # λ, c and β of EASE
        collaborative, content, counts = self._blended(split.train_sequences, self.chosen, progress)
        self._choose_on_validation(
            split, "blend", self.params.blends,
            lambda blend: self._state(collaborative, content, counts, {**self.chosen, "blend": blend}), progress,
        )

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        """A new title's weights are the content map's alone (no interactions: α = 0), as a cold item's
        are after fitting; ``warm`` is not needed, the map was fitted with the kind."""
        del warm
        known = self.catalog.n_items
        self.embeddings = content.astype(np.float32)
        columns = self.scale * self.content_columns(np.arange(known, catalog.n_items))[:known]
        self._append_targets(catalog, columns.T.astype(np.float32))

    def save_state(self, folder: Path) -> None:
        super().save_state(folder)
        assert self.embeddings is not None and self.mapping is not None
        np.savez(folder / CONTENT_FILE, embeddings=self.embeddings, mapping=self.mapping, scale=self.scale)

    def load_state(self, folder: Path) -> None:
        super().load_state(folder)
        with np.load(folder / CONTENT_FILE) as state:
            self.embeddings, self.mapping, self.scale = state["embeddings"], state["mapping"], float(state["scale"])
