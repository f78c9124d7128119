"""The fusion ranker: a DCN-v2 stacker over every member's score and the ranking features.

It learns from candidate lists whose members were fitted without the labels (validation items),
with a listwise softmax loss, early-stopped on a held-out share of those users. It is the last
step of the Triton ranking ensemble: one input per member score, plus the dense features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.candidates import CandidateLists, evaluate_lists
from recsys.data.splits import Split
from recsys.kinds.base import ModelKind, Progress, Role, no_progress
from recsys.metrics import K
from recsys.models import DCN
from recsys.training import minibatches, train_loop

WEIGHTS_FILE = "fusion.pt"
DENSE_INPUT = "dense"


@dataclass
class FusionParams:
    epochs: int = 40
    patience: int = 4
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    lists_per_batch: int = 128
    cross_layers: int = 2
    hidden: int = 64
    early_stopping_share: float = 0.2  # of the validation users, held out to stop training


class FusionNetwork(torch.nn.Module):
    """Standardises [member scores..., dense] with constants from training, then a DCN-v2."""

    def __init__(self, n_features: int, params: FusionParams) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        # -1: the DCN ranks; i >= 0: feature i (a member's score) passes through unchanged.
        self.register_buffer("passthrough", torch.tensor(-1))
        self.dcn = DCN(n_features, cross_layers=params.cross_layers, hidden=params.hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.dcn((features - self.mean) / self.scale).squeeze(-1)


class FusionServing(torch.nn.Module):
    """The exported form: ``(score_<member> [B,1] ..., dense [B,D]) -> score [B,1]``."""

    def __init__(self, network: FusionNetwork) -> None:
        super().__init__()
        self.network = network
        self.passthrough = int(network.passthrough)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.passthrough >= 0:
            return inputs[self.passthrough] + 0.0
        return self.network(torch.cat(inputs, dim=1)).unsqueeze(1)


class DcnFusion(ModelKind):
    """Re-ranks candidate lists; see the module docstring."""

    name = "dcn_fusion"
    roles = frozenset({Role.FUSION})
    Params = FusionParams

    network: FusionNetwork

    def fit(
        self, lists: CandidateLists, split_for_metrics: Split, member_names: list[str], progress: Progress = no_progress
    ) -> None:
        """Train on ``lists`` (labels: their held-out items) from ``split_for_metrics``; the first
        ``len(member_names)`` features are those members' scores."""
        p = self.params
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        labels = lists.labels
        with_positive = np.flatnonzero(labels.sum(axis=1) > 0)
        stop_rows = rng.random(len(lists.users)) < p.early_stopping_share
        train_rows = np.intersect1d(with_positive, np.flatnonzero(~stop_rows))
        stopping = lists.take(np.flatnonzero(stop_rows))
        features = torch.from_numpy(lists.features[train_rows])
        mask = torch.from_numpy(lists.mask[train_rows])
        targets = torch.from_numpy(labels[train_rows])
        self.network = FusionNetwork(lists.features.shape[2], p)
        valid = features[mask]
        self.network.mean.copy_(valid.mean(dim=0))
        self.network.scale.copy_(valid.std(dim=0).clamp(min=1e-6))
        optimizer = torch.optim.Adam(self.network.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)

        def run_epoch(epoch: int) -> float:
            total, batches = 0.0, minibatches(len(train_rows), p.lists_per_batch, generator)
            for rows in batches:
                logits = self.network(features[rows]).masked_fill(~mask[rows], float("-inf"))
                log_probs = torch.log_softmax(logits, dim=1).masked_fill(~mask[rows], 0.0)
                target = targets[rows]
                loss = -((log_probs * target).sum(dim=1) / target.sum(dim=1)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
            return total / max(len(batches), 1)

        def validate() -> float:
            return evaluate_lists(stopping, self.score(stopping), split_for_metrics)[f"ndcg@{K}"]

        result = train_loop(
            self.network, stage="fusion", epochs=p.epochs, run_epoch=run_epoch,
            validate=validate if len(stopping.users) else None, progress=progress, patience=p.patience,
        )
        self.chosen = {"epochs": result.best_epoch, f"early_stopping_ndcg@{K}": result.best_value}
        if len(stopping.users):
            self._guard(stopping, split_for_metrics, result.best_value, member_names)

    def _guard(self, stopping: CandidateLists, split: Split, fused: float, member_names: list[str]) -> None:
        """Never serve worse than the best member: pass its score through if the fusion does not beat it."""
        alone = {
            index: evaluate_lists(stopping, stopping.features[:, :, index], split)[f"ndcg@{K}"]
            for index in range(len(member_names))
        }
        best = max(alone, key=alone.__getitem__)
        self.chosen["members_alone_ndcg@10"] = {member_names[i]: v for i, v in alone.items()}
        if alone[best] >= fused:
            self.network.passthrough.fill_(best)
            self.chosen["passthrough"] = member_names[best]

    def score(self, lists: CandidateLists) -> np.ndarray:
        """Scores ``[L, W]`` of the candidate lists (pads get some value; rank_lists ignores them)."""
        return self.score_features(lists.features)

    @torch.no_grad()
    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Scores ``[..., W]`` of pair features ``[..., W, F]`` (member scores, then dense)."""
        passthrough = int(self.network.passthrough)
        if passthrough >= 0:
            return features[..., passthrough]
        return self.network(torch.from_numpy(features)).numpy()

    def serving_module(self) -> torch.nn.Module:
        return FusionServing(self.network.eval())

    def save_state(self, folder: Path) -> None:
        torch.save({"n_features": int(self.network.mean.shape[0]), "state": self.network.state_dict()},
                   folder / WEIGHTS_FILE)

    def load_state(self, folder: Path) -> None:
        saved = torch.load(folder / WEIGHTS_FILE, weights_only=True)
        self.network = FusionNetwork(saved["n_features"], self.params)
        self.network.load_state_dict(saved["state"])
        self.network.eval()
