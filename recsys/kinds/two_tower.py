"""Two-tower retrieval: a sampled softmax over mixed negatives, early-stopped on validation.

Negatives of each example (Yang et al. 2020, "Mixed Negative Sampling"): the batch's other targets,
``uniform_negatives`` items drawn uniformly per batch, and ``hard_negatives`` per example mined from
a pool of ``hard_pool`` uniform items scored by the current towers (the highest-scoring ones that
are not the target). Sampled logits are logQ-corrected by the log of each item's expected count in
the sample: B·q(item) for in-batch items (q = training frequency), U/N for uniform ones. Hard
negatives are the pool's top scores, not a sample with a known probability, and stay uncorrected.

Served twice: its item embeddings fill the control plane's FAISS index, which is searched with the
user tower's encoding of the request's history, and the same inner product scores candidates as a
step of the Triton ranking ensemble.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.nn import functional as F

from recsys.data.splits import Split
from recsys.features import YEAR_BUCKETS, item_tower_inputs
from recsys.kinds.base import Catalog, Progress, Role, no_progress
from recsys.kinds.embedding import EmbeddingMember
from recsys.kinds.new_items import content_to_rows, grown
from recsys.kinds.space import Choice, FloatRange, IntRange, searched
from recsys.metrics import K, evaluate_full_ranking
from recsys.models import ItemTower, TwoTowerConfig, UserTower
from recsys.training import adamw, minibatches, optimise, train_loop

WEIGHTS_FILE = "two_tower.pt"
TowerState = dict[str, dict[str, torch.Tensor]]


@dataclass
class TwoTowerParams:
    epochs: int = searched(10, IntRange(5, 40, log=True))
    patience: int = 2
    batch_size: int = 512
    learning_rate: float = searched(3e-3, FloatRange(3e-4, 1e-2, log=True))
    weight_decay: float = 0.0  # AdamW's, decoupled
    schedule: str = "constant"  # or "cosine": warm-up over warmup_share of the steps, then a half cosine
    warmup_share: float = 0.05
    history_length: int = searched(20, Choice((10, 20, 50, 100)))
    temperature: float = searched(0.05, FloatRange(0.02, 0.2, log=True))
    dim: int = searched(64, Choice((32, 64, 128)))
    hidden: int = searched(128, Choice((64, 128, 256)))
    uniform_negatives: int = 0
    hard_negatives: int = 0
    hard_pool: int = 1024


def retrieval_examples(sequences: list[np.ndarray], history_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(history of the previous items as index + 1, target item) for every interaction."""
    histories, targets = [], []
    for seq in sequences:
        if not len(seq):
            continue
        padded = np.concatenate([np.zeros(history_length, dtype=np.int64), seq + 1])
        histories.append(sliding_window_view(padded, history_length)[: len(seq)])
        targets.append(seq)
    return np.concatenate(histories), np.concatenate(targets).astype(np.int64)


def mine_hard_negatives(scores: torch.Tensor, pool: torch.Tensor, target: torch.Tensor, count: int) -> torch.Tensor:
    """[B, count] items of ``pool`` with the highest ``scores`` [B, len(pool)] per row, never the row's target."""
    scores = scores.masked_fill(pool == target.unsqueeze(1), -torch.inf)
    return pool[scores.topk(min(count, len(pool)), dim=1).indices]


class TwoTower(EmbeddingMember):
    """User tower over the recent history, item tower over id, genres, year, domain."""

    name = "two_tower"
    roles = frozenset({Role.RETRIEVER, Role.SCORER})
    Params = TwoTowerParams

    user_tower: UserTower
    item_tower: ItemTower

    def _model_config(self) -> TwoTowerConfig:
        return TwoTowerConfig(
            n_items=self.catalog.n_items,
            n_genres=self.catalog.item_features.n_genres,
            n_year_buckets=YEAR_BUCKETS,
            dim=self.params.dim,
            hidden=self.params.hidden,
        )

    def _user_tower(self, config: TwoTowerConfig) -> UserTower:
        # Ordered histories: the last history_length items; a set (no timestamps) is pooled whole.
        return UserTower(config, window=self.params.history_length if self.catalog.ordered else None)

    def _train(self, sequences: list[np.ndarray], epochs: int, split: Split | None, progress: Progress, *,
               start: TowerState | None = None, proximal_mu: float = 0.0) -> int:
        """Also the local step of federated training: from the global ``start`` state, with FedProx's
        proximal term (mu / 2) ||w - w_start||^2 keeping the client near it."""
        p = self.params
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        config = self._model_config()
        self.user_tower, self.item_tower = self._user_tower(config), ItemTower(config)
        towers = torch.nn.ModuleDict({"user": self.user_tower, "item": self.item_tower})
        if start is not None:
            self.user_tower.load_state_dict(start["user"])
            self.item_tower.load_state_dict(start["item"])
        anchor = [w.detach().clone() for w in towers.parameters()] if proximal_mu > 0 else []
        features = self.catalog.item_features
        genres, years, domains = (torch.from_numpy(a) for a in (features.genres, features.year_bucket, features.domain))
        rng = np.random.default_rng(self.seed)
        # logQ correction: subtract the log of each item's probability of appearing in a batch.
        counts = torch.from_numpy(np.bincount(np.concatenate(sequences), minlength=self.catalog.n_items)).double()
        log_q = (counts.clamp(min=1.0) / counts.sum()).log().float()
        n_items = self.catalog.n_items
        steps = p.epochs * math.ceil(sum(len(s) for s in sequences) / p.batch_size)  # fit and refit alike
        optimizer, scheduler = adamw(towers.parameters(), learning_rate=p.learning_rate, weight_decay=p.weight_decay,
                                     steps=steps, warmup_share=p.warmup_share, schedule=p.schedule)

        def embed_items(items: torch.Tensor) -> torch.Tensor:
            return self.item_tower(items, genres[items], years[items], domains[items])

        def in_batch_logits(user_vec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            # Column j is the positive of row j; the diagonal is the label, duplicates are masked.
            logits = user_vec @ embed_items(target).T / p.temperature - log_q[target] - math.log(len(target))
            same_item = target.unsqueeze(0) == target.unsqueeze(1)
            return logits.masked_fill(same_item & ~torch.eye(len(target), dtype=torch.bool), float("-inf"))

        def uniform_logits(user_vec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            items = torch.randint(0, n_items, (p.uniform_negatives,), generator=generator)
            logits = user_vec @ embed_items(items).T / p.temperature - math.log(p.uniform_negatives / n_items)
            return logits.masked_fill(items.unsqueeze(0) == target.unsqueeze(1), float("-inf"))

        def hard_logits(user_vec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            pool = torch.randint(0, n_items, (p.hard_pool,), generator=generator)
            with torch.no_grad():
                hardest = mine_hard_negatives(user_vec @ embed_items(pool).T, pool, target, p.hard_negatives)
            logits = torch.einsum("bd,bhd->bh", user_vec, embed_items(hardest)) / p.temperature
            return logits.masked_fill(hardest == target.unsqueeze(1), float("-inf"))

        def run_epoch(epoch: int) -> float:
            # Without time, "the previous items" are a fresh random subset of the user's others each epoch.
            ordered = sequences if self.catalog.ordered else [rng.permutation(s) for s in sequences]
            histories, targets = (torch.from_numpy(a) for a in retrieval_examples(ordered, p.history_length))

            def batch_loss(rows: torch.Tensor) -> torch.Tensor:
                target = targets[rows]
                user_vec = self.user_tower(histories[rows])
                logits = [in_batch_logits(user_vec, target)]
                if p.uniform_negatives:
                    logits.append(uniform_logits(user_vec, target))
                if p.hard_negatives:
                    logits.append(hard_logits(user_vec, target))
                loss = F.cross_entropy(torch.cat(logits, dim=1), torch.arange(len(rows)))
                if anchor:
                    loss = loss + proximal_mu / 2 * sum(((w - w0) ** 2).sum()
                                                        for w, w0 in zip(towers.parameters(), anchor, strict=True))
                return loss

            return optimise(optimizer, minibatches(len(targets), p.batch_size, generator), batch_loss,
                            scheduler=scheduler)

        def validate() -> float:
            assert split is not None  # called only with a validation split
            self._embed_items()
            return evaluate_full_ranking(self.user_scores(split), split)[f"ndcg@{K}"]

        result = train_loop(
            towers, stage="two_tower", epochs=epochs, run_epoch=run_epoch,
            validate=validate if split is not None else None, progress=progress, patience=p.patience,
            optimizer=optimizer, scheduler=scheduler, generators={"batches": generator, "order": rng},
            checkpoint=self.loop_checkpoint("two_tower"),
        )
        self._embed_items()
        self.best_validation = result.best_value
        self.last_loss = result.losses[-1] if result.losses else math.nan
        return result.best_epoch

    def initial_state(self) -> TowerState:
        """Fresh weights, as a training with this seed starts from."""
        torch.manual_seed(self.seed)
        config = self._model_config()
        return {"user": self._user_tower(config).state_dict(), "item": ItemTower(config).state_dict()}

    def tower_state(self) -> TowerState:
        """The trained weights: {"user": user tower state, "item": item tower state}."""
        return {"user": self.user_tower.state_dict(), "item": self.item_tower.state_dict()}

    def train_from(self, start: TowerState, sequences: list[np.ndarray], *, epochs: int,
                   proximal_mu: float = 0.0) -> float:
        """``epochs`` of training on ``sequences`` from the weights ``start`` (a federated client's
        local step); returns the last epoch's mean loss."""
        self._train(sequences, epochs, None, no_progress, start=start, proximal_mu=proximal_mu)
        return self.last_loss

    def load_towers(self, state: TowerState) -> None:
        """Serve the weights ``state`` (as ``tower_state`` gives them), item vectors recomputed."""
        self._load_towers(state)
        self._embed_items()

    @torch.no_grad()
    def _embed_items(self) -> None:
        items = item_tower_inputs(self.catalog.item_features, np.arange(self.catalog.n_items))
        self.item_vectors = self.item_tower(*(torch.from_numpy(a) for a in items)).numpy()

    def encoder_module(self) -> torch.nn.Module:
        return self.user_tower

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        """A new title's id embedding and history embedding are mapped from its content; its genres,
        year and domain enter the item tower as any title's do."""
        state = self.tower_state()
        ids, history = state["item"]["id_embedding.weight"].numpy(), state["user"]["history_embedding.weight"].numpy()
        state["item"]["id_embedding.weight"] = torch.from_numpy(grown(ids, content, warm))
        state["user"]["history_embedding.weight"] = torch.from_numpy(  # row 0 pads
            np.concatenate([history, content_to_rows(content, history[1:], warm)]))
        known = self.catalog.n_items
        self.catalog = catalog
        self._load_towers(state)
        with torch.no_grad():
            inputs = item_tower_inputs(catalog.item_features, np.arange(known, catalog.n_items))
            new_vectors = self.item_tower(*(torch.from_numpy(a) for a in inputs)).numpy()
        self.item_vectors = np.concatenate([self.item_vectors, new_vectors])

    def _load_towers(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        config = self._model_config()
        self.user_tower, self.item_tower = self._user_tower(config).eval(), ItemTower(config).eval()
        self.user_tower.load_state_dict(state["user"])
        self.item_tower.load_state_dict(state["item"])

    def save_state(self, folder: Path) -> None:
        torch.save(self.tower_state(), folder / WEIGHTS_FILE)
        self.save_vectors(folder)

    def load_state(self, folder: Path) -> None:
        self._load_towers(torch.load(folder / WEIGHTS_FILE, weights_only=True))
        self.load_vectors(folder)
