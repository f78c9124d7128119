"""The base of member kinds that end as user and item vectors: scored by inner product, retrieved
through FAISS, exported as an inner-product scorer with both tables inside."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from recsys.data.splits import Split
from recsys.kinds.base import MemberKind, Progress, no_progress
from recsys.metrics import K

VECTORS_FILE = "vectors.npz"


class InnerProductScorer(torch.nn.Module):
    """score(u, i) = ⟨user_vectors[u], item_vectors[i]⟩ with both tables inside."""

    user_vectors: torch.Tensor  # registered buffers, declared for the type checker
    item_vectors: torch.Tensor

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("user_vectors", torch.from_numpy(user_vectors))
        self.register_buffer("item_vectors", torch.from_numpy(item_vectors))

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        # F.embedding exports as ONNX Gather, whose table INT8 quantization stores as int8.
        users = F.embedding(user_idx.reshape(-1), self.user_vectors)
        items = F.embedding(item_idx.reshape(-1), self.item_vectors)
        return (users * items).sum(dim=1, keepdim=True)


class EmbeddingMember(MemberKind):
    """A member whose fitted state ends as ``user_vectors`` and ``item_vectors``, trained on the
    shared loop by ``_train``: early-stopped on validation in ``fit``, for the chosen epochs in ``refit``."""

    index_kind = "faiss"
    quantizable = True
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    best_validation: float

    @abstractmethod
    def _train(self, sequences: list[np.ndarray], epochs: int, split: Split | None, progress: Progress) -> int:
        """Train on ``sequences`` for up to ``epochs`` (early-stopped on ``split`` when given, setting
        ``best_validation``), leave the vectors set; returns the epoch whose state was kept."""

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        epochs = self._train(split.train_sequences, self.params.epochs, split, progress)
        self.chosen = {"epochs": epochs, f"validation_ndcg@{K}": self.best_validation}

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        self._train(sequences, int(self.chosen["epochs"]), None, progress)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_vectors[users] @ self.item_vectors.T

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("nd,nd->n", self.user_vectors[users], self.item_vectors[items])

    def scorer_module(self) -> torch.nn.Module:
        return InnerProductScorer(self.user_vectors, self.item_vectors)

    def retrieval_arrays(self) -> dict[str, np.ndarray]:
        return {"user_vectors": self.user_vectors, "item_vectors": self.item_vectors}

    def save_vectors(self, folder: Path) -> None:
        np.savez(folder / VECTORS_FILE, user_vectors=self.user_vectors, item_vectors=self.item_vectors)

    def load_vectors(self, folder: Path) -> None:
        with np.load(folder / VECTORS_FILE) as vectors:
            self.user_vectors, self.item_vectors = vectors["user_vectors"], vectors["item_vectors"]
