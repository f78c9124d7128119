"""The base of member kinds that encode a history into a user vector and score items by inner product
with item vectors: retrieved through FAISS with the encoded vector, exported as an encoder (history ->
user vector) and an inner-product scorer (user vector, candidates -> scores) with no per-user table."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from recsys.data.splits import Split
from recsys.kinds.base import MemberKind, Progress, ScorerInput, no_progress
from recsys.metrics import K

VECTORS_FILE = "vectors.npz"


def padded_rows(table: np.ndarray) -> torch.Tensor:
    """``table`` with an all-zero row 0 in front: rows indexed by item index + 1, 0 the padding."""
    return torch.from_numpy(np.concatenate([np.zeros((1, *table.shape[1:]), table.dtype), table]))


class InnerProductScorer(torch.nn.Module):
    """(user_vector ``[B, D]``, items ``[B, W]`` as index + 1) -> ``[B, W]`` inner products."""

    item_vectors: torch.Tensor  # a registered buffer, declared for the type checker

    def __init__(self, item_vectors: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("item_vectors", padded_rows(np.asarray(item_vectors, dtype=np.float32)))

    def forward(self, user_vector: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # F.embedding exports as ONNX Gather, whose table INT8 quantization stores as int8.
        vectors = F.embedding(items, self.item_vectors)  # [B, W, D]
        return (vectors * user_vector.unsqueeze(1)).sum(dim=2)


class PooledHistoryEncoder(torch.nn.Module):
    """history ``[B, L]`` (index + 1) -> Σ fold_in[item] over the history / count ** power: a user
    vector folded in from item rows, for kinds whose training learnt a table of user vectors."""

    fold_in: torch.Tensor  # a registered buffer, declared for the type checker

    def __init__(self, fold_in: np.ndarray, power: float) -> None:
        super().__init__()
        self.register_buffer("fold_in", padded_rows(np.asarray(fold_in, dtype=np.float32)))
        self.power = power

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        count = (history > 0).to(torch.float32).sum(dim=1, keepdim=True).clamp(min=1.0)
        return F.embedding(history, self.fold_in).sum(dim=1) / count.pow(self.power)


class EmbeddingMember(MemberKind):
    """A member whose fitted state is ``item_vectors`` and a history encoder, trained on the shared
    loop by ``_train``: early-stopped on validation in ``fit``, for the chosen epochs in ``refit``."""

    index_kind = "faiss"
    quantizable = True
    scorer_inputs = (ScorerInput.USER_VECTOR, ScorerInput.ITEMS)
    item_vectors: np.ndarray
    best_validation: float

    @abstractmethod
    def _train(self, sequences: list[np.ndarray], epochs: int, split: Split | None, progress: Progress) -> int:
        """Train on ``sequences`` for up to ``epochs`` (early-stopped on ``split`` when given, setting
        ``best_validation``), leave the item vectors and encoder set; returns the epoch whose state was kept."""

    @abstractmethod
    def encoder_module(self) -> torch.nn.Module:
        """history ``[B, L]`` int64 (index + 1, 0 pads on the left) -> user vectors ``[B, D]``."""

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        epochs = self._train(split.train_sequences, self.params.epochs, split, progress)
        self.chosen = {"epochs": epochs, f"validation_ndcg@{K}": self.best_validation}

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        self._train(sequences, int(self.chosen["epochs"]), None, progress)

    def vector_size(self) -> int:
        return int(self.item_vectors.shape[1])

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.encode(histories) @ self.item_vectors.T

    def score_lists(self, histories: Sequence[np.ndarray], items: np.ndarray) -> np.ndarray:
        vectors = self.item_vectors[np.maximum(items, 0)]  # [B, W, D]
        return np.einsum("bwd,bd->bw", vectors, self.encode(histories)).astype(np.float32)

    def scorer_module(self) -> torch.nn.Module:
        return InnerProductScorer(self.item_vectors)

    def retrieval_arrays(self, sample: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {"item_vectors": self.item_vectors, "query_sample": self.encode(sample)}

    def save_vectors(self, folder: Path, **extra: np.ndarray) -> None:
        np.savez(folder / VECTORS_FILE, item_vectors=self.item_vectors, **extra)

    def load_vectors(self, folder: Path) -> dict[str, np.ndarray]:
        """Sets the item vectors; returns every array saved with them."""
        with np.load(folder / VECTORS_FILE) as vectors:
            arrays = dict(vectors)
        self.item_vectors = arrays["item_vectors"]
        return arrays
