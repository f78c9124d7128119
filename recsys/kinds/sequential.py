"""The base of the sequential kinds (SASRec, BERT4Rec): a transformer encodes the history into a user
vector, items are scored by inner product with the tied item embeddings over the whole catalog
(full softmax cross-entropy in training, as "SASRec+" of Klenitskiy & Vasilev 2023), trained on the
shared loop with AdamW, warm-up and cosine decay, early-stopped on validation NDCG@10, on the GPU
with bfloat16 autocast where there is one. Served like every embedding member: the encoder and an
inner-product scorer in Triton, FAISS over the item embeddings."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.data.splits import Split
from recsys.kinds.base import Catalog, Progress, no_progress
from recsys.kinds.embedding import EmbeddingMember
from recsys.kinds.new_items import content_to_rows
from recsys.kinds.space import Choice, FloatRange, IntRange, searched
from recsys.metrics import K, evaluate_full_ranking
from recsys.models.sequence import SequenceConfig, SequenceEncoder, full_softmax_loss
from recsys.training import adamw, autocast, optimise, train_loop, training_device

WEIGHTS_FILE = "encoder.pt"


@dataclass
class SequentialParams:
    """What both sequential kinds take."""

    # The schedule decays to the cap: on ML-1M loo-time (validation) 60 epochs at 2e-3 peaked at epoch 35
    # (validation NDCG@10 0.179), where 150 at 1e-3 was still at 0.13 after 9 epochs.
    epochs: int = searched(60, IntRange(20, 200, log=True))
    patience: int = 10
    batch_size: int = 128
    learning_rate: float = searched(2e-3, FloatRange(2e-4, 1e-2, log=True))
    weight_decay: float = searched(0.0, Choice((0.0, 1e-4, 1e-2)))  # AdamW's, decoupled
    schedule: str = "cosine"  # warm-up over warmup_share of the steps, then a half cosine to the epoch cap
    warmup_share: float = 0.02
    max_length: int = searched(200, Choice((50, 100, 200)))  # the most recent items the encoder reads
    dim: int = searched(64, Choice((32, 64, 128, 256)))
    heads: int = searched(2, Choice((1, 2, 4)))
    layers: int = searched(2, IntRange(1, 4))
    dropout: float = searched(0.2, FloatRange(0.0, 0.5))

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be cosine or constant, got {self.schedule!r}")


def windows(sequences: list[np.ndarray], length: int) -> list[np.ndarray]:
    """Every user's sequence cut from its end into windows of at most ``length`` items (a long
    history gives several training sequences; the most recent one always ends at the last item)."""
    cut = []
    for seq in sequences:
        for end in range(len(seq), 0, -length):
            cut.append(seq[max(0, end - length) : end])
    return cut


def left_padded(rows: list[np.ndarray], length: int, fill: int) -> np.ndarray:
    """``rows`` as a ``[len(rows), length]`` matrix, right-aligned, ``fill`` before each row."""
    matrix = np.full((len(rows), length), fill, dtype=np.int64)
    for index, row in enumerate(rows):
        if len(row):
            matrix[index, length - len(row) :] = row
    return matrix


def similar_lengths(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Batches of rows of similar length (ties broken at random), in a random order: a batch of short
    windows is not padded to the longest window of the epoch."""
    order = torch.argsort(lengths.double() + torch.rand(len(lengths), generator=generator, dtype=torch.float64))
    batches = list(order.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class SequentialMember(EmbeddingMember):
    """Trains a SequenceEncoder; subclasses say whether it is causal and what one batch's
    (input ids, targets) are (``training_examples``)."""

    encoder: SequenceEncoder
    causal: bool

    def _config(self) -> SequenceConfig:
        p = self.params
        return SequenceConfig(self.catalog.n_items, max_length=p.max_length, dim=p.dim, heads=p.heads,
                              layers=p.layers, dropout=p.dropout, causal=self.causal)

    @abstractmethod
    def training_examples(
        self, sequences: list[np.ndarray], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids ``[N, L]``, targets ``[N, L]`` as item index, -1 where there is none) for one epoch."""

    def _train(self, sequences: list[np.ndarray], epochs: int, split: Split | None, progress: Progress) -> int:
        p = self.params
        device = training_device()
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        self.encoder = SequenceEncoder(self._config()).to(device)
        trainable = [s for s in windows(sequences, p.max_length + 1) if len(s) >= 2]
        per_epoch = math.ceil(len(trainable) / p.batch_size)
        # The schedule spans the epoch cap in fit and refit alike, so a refit for the chosen epochs
        # follows the learning rates the validated run had.
        optimizer, scheduler = adamw(self.encoder.parameters(), learning_rate=p.learning_rate,
                                     weight_decay=p.weight_decay, steps=p.epochs * per_epoch,
                                     warmup_share=p.warmup_share, schedule=p.schedule)

        def run_epoch(epoch: int) -> float:
            inputs, targets = self.training_examples(trainable, generator)
            lengths = (inputs > 0).sum(dim=1)

            def batch_loss(rows: torch.Tensor) -> torch.Tensor:
                width = int(lengths[rows].max())  # left padding no row of the batch needs is cut off
                with autocast(device):
                    hidden = self.encoder.hidden(inputs[rows, -width:].to(device))
                    return full_softmax_loss(self.encoder, hidden, targets[rows, -width:].to(device))

            return optimise(optimizer, similar_lengths(lengths, p.batch_size, generator), batch_loss,
                            scheduler=scheduler)

        def validate() -> float:
            assert split is not None  # called only with a validation split
            self._set_item_vectors()
            return evaluate_full_ranking(self.user_scores(split), split)[f"ndcg@{K}"]

        result = train_loop(
            self.encoder, stage=self.name, epochs=epochs, run_epoch=run_epoch,
            validate=validate if split is not None else None, progress=progress, patience=p.patience,
            optimizer=optimizer, scheduler=scheduler, generators={"batches": generator},
            checkpoint=self.loop_checkpoint(self.name),
        )
        self.encoder = self.encoder.cpu().eval()
        self._set_item_vectors()
        self.best_validation = result.best_value
        return result.best_epoch

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        """Keep the validated fit: a held-out item a refit would add as one more training target reaches
        the model as input history at request time, which is how a sequential model uses it (the
        protocol of SASRec, BERT4Rec and RecBole); retraining would double the training time."""
        del sequences
        progress(f"{self.name} refit: the validated fit is kept", 1, 1, 0.0, "")

    @torch.no_grad()
    def _set_item_vectors(self) -> None:
        self.item_vectors = self.encoder.item_table().float().cpu().numpy().copy()

    def encoder_module(self) -> torch.nn.Module:
        return self.encoder

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        # The (tied) item table is rows 1..n of the id embedding: 0 pads, the mask token comes last.
        state = self.encoder.state_dict()
        ids = state["items.weight"].numpy()
        known = self.catalog.n_items
        new_rows = content_to_rows(content, ids[1 : known + 1], warm)
        state["items.weight"] = torch.from_numpy(np.concatenate([ids[: known + 1], new_rows, ids[known + 1 :]]))
        self.catalog = catalog
        self.encoder = SequenceEncoder(self._config()).eval()
        self.encoder.load_state_dict(state)
        self._set_item_vectors()

    def save_state(self, folder: Path) -> None:
        torch.save(self.encoder.state_dict(), folder / WEIGHTS_FILE)
        self.save_vectors(folder)

    def load_state(self, folder: Path) -> None:
        self.encoder = SequenceEncoder(self._config()).eval()
        self.encoder.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
        self.load_vectors(folder)

