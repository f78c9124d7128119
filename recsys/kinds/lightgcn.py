"""LightGCN (He et al. 2020): id embeddings smoothed over the normalised user-item graph, trained with
BPR against negatives drawn uniformly from the items each user has not seen, early-stopped on
validation.

Propagation is one sparse-matrix product per layer over the whole graph (torch CSR), and batches are
large (8,192 triples by default), so an epoch costs a few hundred sparse products rather than
RecBole's rebuilding and propagating per small batch. Served as the two-tower is: FAISS over its
item vectors, and an inner-product scorer in the ranking ensemble.

A user's vector is folded in from their history at request time, never looked up: LightGCN's user
vector is the mean over layers k = 0..K of e_u^(k), with e_u^(k+1) = Σ_{i∈h} e_i^(k) / √(|h|·d_i).
Layer 0 (the learnt user id embedding) is unknown for a history, so the vector is the rest of that
sum, Σ_{i∈h} fold_in[i] / √|h| with fold_in[i] = Σ_{k<K} e_i^(k) / (√d_i·(K+1)); training validates
on that same fold-in, so early stopping sees what serving will. Without layers (BPR) nothing but
layer 0 is left: the history's mean item vector stands in for it.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from recsys.data.splits import Split
from recsys.kinds.base import Catalog, Progress, Role, no_progress, number_grid
from recsys.kinds.embedding import EmbeddingMember, PooledHistoryEncoder
from recsys.kinds.new_items import grown
from recsys.metrics import K, evaluate_full_ranking
from recsys.negatives import UnseenSampler
from recsys.training import minibatches, optimise, train_loop


class TrainingGrid:
    """Parameters with ``batch_sizes`` and ``l2_grid``, comma-separated candidates; validation picks
    one pair."""

    batch_sizes: str
    l2_grid: str

    def __post_init__(self) -> None:
        if any(size != int(size) for size in self._batch_candidates()):
            raise ValueError(f"batch_sizes must list whole numbers, e.g. 1024,8192; got {self.batch_sizes!r}")
        _ = self.l2s  # raise on a bad grid

    def _batch_candidates(self) -> list[float]:
        return number_grid(self.batch_sizes, name="batch_sizes", example="1024,8192")

    @property
    def batch_grid(self) -> list[int]:
        return [int(size) for size in self._batch_candidates()]

    @property
    def l2s(self) -> list[float]:
        return number_grid(self.l2_grid, name="l2_grid", example="1e-4,1e-5", zero_allowed=True)


@dataclass
class LightGcnParams(TrainingGrid):
    epochs: int = 400
    patience: int = 10
    layers: int = 2
    dim: int = 64
    batch_sizes: str = "8192"  # comma-separated candidates; validation picks one
    # On the batch's layer-0 embeddings, as the paper; comma-separated candidates, validation picks
    # one. With patience 10, 1e-4 beat 1e-5 on the validation of anime (0.1881 vs 0.1801) and ML-1M.
    l2_grid: str = "1e-4"
    learning_rate: float = 5e-3


def normalised_graph(sequences: list[np.ndarray], n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph (users first, then items), as a CSR tensor."""
    users = np.repeat(np.arange(n_users), [len(s) for s in sequences])
    items = np.concatenate(sequences).astype(np.int64) + n_users
    rows, cols = np.concatenate([users, items]), np.concatenate([items, users])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    inverse_root = np.power(degree, -0.5, out=np.zeros_like(degree), where=degree > 0)
    values = inverse_root[rows] * inverse_root[cols]
    size = (n_users + n_items,) * 2
    graph = torch.sparse_coo_tensor(np.stack([rows, cols]), values, size, check_invariants=True).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return graph.to_sparse_csr()


class SymmetricProduct(torch.autograd.Function):
    """graph @ x for a symmetric graph; the backward product reuses the graph instead of transposing
    it (torch's CSR backward does, which took 0.17 s of a 0.2 s step on ML-1M; this takes 0.036 s)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, graph: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph  # type: ignore[attr-defined]
        return graph @ x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.graph @ grad  # type: ignore[attr-defined]


class LightGcnNetwork(torch.nn.Module):
    """Layer-0 embeddings of users and items; ``forward`` gives the layer mean for every node."""

    def __init__(self, n_nodes: int, *, dim: int, layers: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(n_nodes, dim)
        torch.nn.init.xavier_normal_(self.embedding.weight)
        self.layers = layers

    def forward(self, graph: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.layer_embeddings(graph)).mean(dim=0)

    def layer_embeddings(self, graph: torch.Tensor) -> list[torch.Tensor]:
        """Every node's embedding at layers 0..layers."""
        layers = [self.embedding.weight]
        for _ in range(self.layers):
            layers.append(SymmetricProduct.apply(graph, layers[-1]))
        return layers


class LightGcn(EmbeddingMember):
    """Graph-smoothed matrix factorisation; retrieves through FAISS and scores in Triton."""

    name = "lightgcn"
    roles = frozenset({Role.RETRIEVER, Role.SCORER})
    Params: ClassVar[type[TrainingGrid]] = LightGcnParams  # BPR's has no layers
    # Of the training run under way: a grid point in fit, the chosen one in refit.
    batch_size: int
    l2: float
    fold_in: np.ndarray  # [n_items, dim]: what each history item adds to a user vector
    fold_in_power: float  # the sum over the history is divided by its length to this power

    def fit(self, split: Split, progress: Progress = no_progress) -> None:
        """Early-stopped training at each grid point (batch size × l2); the best on validation is kept
        and chosen (with its epoch count) for the refit."""
        best: tuple[float, dict[str, object], np.ndarray, np.ndarray] | None = None
        for batch_size, l2 in itertools.product(self.params.batch_grid, self.params.l2s):
            self.batch_size, self.l2 = batch_size, l2
            super().fit(split, progress)
            if best is None or self.best_validation > best[0]:
                best = (self.best_validation, {"batch_size": batch_size, "l2": l2, **self.chosen},
                        self.fold_in, self.item_vectors)
        assert best is not None  # the grid is never empty
        self.best_validation, self.chosen, self.fold_in, self.item_vectors = best

    def refit(self, sequences: list[np.ndarray], progress: Progress = no_progress) -> None:
        self.batch_size, self.l2 = int(self.chosen["batch_size"]), float(self.chosen["l2"])
        super().refit(sequences, progress)

    def _train(self, sequences: list[np.ndarray], epochs: int, split: Split | None, progress: Progress) -> int:
        p, n_users, n_items = self.params, self.catalog.n_users, self.catalog.n_items
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        graph = normalised_graph(sequences, n_users, n_items)
        network = LightGcnNetwork(n_users + n_items, dim=p.dim, layers=self.layers())
        optimizer = torch.optim.Adam(network.parameters(), lr=p.learning_rate)
        users = torch.from_numpy(np.repeat(np.arange(n_users), [len(s) for s in sequences]))
        positives = torch.from_numpy(np.concatenate(sequences).astype(np.int64))
        negatives = UnseenSampler(sequences, n_items, generator)

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:
            u, i = users[rows], positives[rows] + n_users
            j = negatives.sample(u) + n_users
            nodes = network(graph)
            margin = (nodes[u] * nodes[i]).sum(1) - (nodes[u] * nodes[j]).sum(1)
            base = network.embedding.weight
            penalty = (base[u].pow(2).sum() + base[i].pow(2).sum() + base[j].pow(2).sum()) / len(rows)
            return -F.logsigmoid(margin).mean() + self.l2 * penalty

        def run_epoch(epoch: int) -> float:
            return optimise(optimizer, minibatches(len(users), self.batch_size, generator), batch_loss)

        degree = np.bincount(positives.numpy(), minlength=n_items).astype(np.float32)

        def embed() -> None:
            with torch.no_grad():
                layers = [layer.numpy()[n_users:] for layer in network.layer_embeddings(graph)]
            self.item_vectors = np.mean(layers, axis=0)
            if len(layers) == 1:
                self.fold_in, self.fold_in_power = self.item_vectors, 1.0
            else:
                scale = 1.0 / (np.sqrt(np.maximum(degree, 1.0)) * len(layers))
                self.fold_in, self.fold_in_power = np.sum(layers[:-1], axis=0) * scale[:, None], 0.5

        def validate() -> float:
            assert split is not None  # called only with a validation split
            embed()
            return evaluate_full_ranking(self.user_scores(split), split)[f"ndcg@{K}"]

        result = train_loop(
            network, stage=self.name, epochs=epochs, run_epoch=run_epoch,
            validate=validate if split is not None else None, progress=progress, patience=p.patience,
            optimizer=optimizer, generators={"batches": generator},
            checkpoint=self.loop_checkpoint(f"{self.name} batch {self.batch_size} l2 {self.l2:g}"),
        )
        embed()
        self.best_validation = result.best_value
        return result.best_epoch

    def layers(self) -> int:
        """Propagation layers over the graph (0: plain matrix factorisation)."""
        return int(self.params.layers)

    def encoder_module(self) -> torch.nn.Module:
        return PooledHistoryEncoder(self.fold_in, self.fold_in_power)

    def add_items(self, catalog: Catalog, content: np.ndarray, warm: np.ndarray) -> None:
        self.item_vectors, self.fold_in = grown(self.item_vectors, content, warm), grown(self.fold_in, content, warm)
        self.catalog = catalog

    def save_state(self, folder: Path) -> None:
        self.save_vectors(folder, fold_in=self.fold_in, fold_in_power=np.array(self.fold_in_power))

    def load_state(self, folder: Path) -> None:
        arrays = self.load_vectors(folder)
        self.fold_in, self.fold_in_power = arrays["fold_in"], float(arrays["fold_in_power"])
