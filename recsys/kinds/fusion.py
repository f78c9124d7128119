"""The fusion ranker: a DCN-v2 stacker over every member's score and the ranking features.

It learns from candidate lists whose members were fitted without the labels (validation items),
with a listwise softmax loss, early-stopped on a held-out share of those users. It scores as the
best member alone (the anchor) plus a learned correction that starts at zero. It is the last
step of the Triton ranking ensemble: one input per member score, plus the request's history and
candidates, from which it computes the dense features itself.

Cold titles (no training interactions: a popularity feature of 0) get slots: the ranking decides
where in a list cold titles go (the set of scores it gives them), and one member decides which cold
title takes which slot (its best cold candidate the highest one): the member that ranks validation's
cold held-out titles among the cold candidates significantly better than the ranking itself (the
content kind, built for them), else none. Warm titles keep their places, and among themselves cold
titles rank exactly as that member ranks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.candidates import PAD, CandidateLists, ndcg_per_list, rank_lists
from recsys.data.splits import Split
from recsys.feature_assembly import POPULARITY_FROM_END, DenseFeatures, FeatureTables
from recsys.kinds.base import ModelKind, Progress, Role, no_progress
from recsys.kinds.space import Choice, FloatRange, IntRange, searched
from recsys.metrics import K, per_user_metrics
from recsys.models import DCN
from recsys.training import minibatches, optimise, train_loop

WEIGHTS_FILE = "fusion.pt"
MIN_SPREAD = 1e-6  # a feature spread less than this on the training lists is constant
NO_COLD_MEMBER = -1  # the cold_member buffer when no member orders the cold titles' slots


@dataclass
class FusionParams:
    epochs: int = 40
    patience: int = 4
    learning_rate: float = searched(2e-3, FloatRange(3e-4, 1e-2, log=True))
    weight_decay: float = searched(1e-5, FloatRange(1e-7, 1e-3, log=True))
    lists_per_batch: int = 128
    cross_layers: int = searched(2, IntRange(1, 4))
    hidden: int = searched(64, Choice((32, 64, 128)))
    folds: int = 4  # cross-fitting folds of the validation lists
    early_stopping_share: float = 0.15  # of each fold's training lists, held out to stop its training
    # The network replaces the best member only if its out-of-fold gain over it is significant:
    # one-sided paired z-test over the lists, p below this.
    max_gain_p_value: float = 0.05

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2 (each fold is scored by the others), got {self.folds}")
        if not 0 < self.max_gain_p_value <= 1:
            raise ValueError(f"max_gain_p_value must be in (0, 1], got {self.max_gain_p_value}")
        if not 0 < self.early_stopping_share < 1:
            raise ValueError(f"early_stopping_share must be in (0, 1), got {self.early_stopping_share}")


def bounded_scale(spread: torch.Tensor) -> torch.Tensor:
    """Each feature's standardising divisor: its spread on the training lists, or 1 where it had none.
    A feature constant in training (a genre no candidate had) taught the network nothing; divided by a
    spread near zero, the first candidate that has it would be a million-fold outlier (scores of 1e10,
    and an export whose ONNX and torch outputs differ by 3e5), where 1 leaves it at its own size."""
    return torch.where(spread > MIN_SPREAD, spread, torch.ones_like(spread))


class FusionNetwork(torch.nn.Module):
    """Standardises [member scores..., dense] with constants from training; the score is the anchor
    member's standardised score, weighted, plus a DCN-v2's correction. The correction starts at
    zero, so training starts from the anchor's ranking and moves only where the labels say so."""

    mean: torch.Tensor  # registered buffers, declared for the type checker
    scale: torch.Tensor
    passthrough: torch.Tensor
    anchor: torch.Tensor
    cold_member: torch.Tensor

    def __init__(self, n_features: int, params: FusionParams, *, anchor: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        # -1: the network ranks; i >= 0: feature i (a member's score) passes through unchanged.
        self.register_buffer("passthrough", torch.tensor(-1))
        self.register_buffer("anchor", torch.tensor([anchor]))
        self.register_buffer("cold_member", torch.tensor(NO_COLD_MEMBER))  # see slot_cold
        self.anchor_weight = torch.nn.Parameter(torch.ones(()))
        self.dcn = DCN(n_features, cross_layers=params.cross_layers, hidden=params.hidden)
        torch.nn.init.zeros_(self.dcn.head.weight)
        torch.nn.init.zeros_(self.dcn.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        standard = (features - self.mean) / self.scale
        base = standard.index_select(-1, self.anchor).squeeze(-1)
        return self.anchor_weight * base + self.dcn(standard).squeeze(-1)


def cold_places(keys: torch.Tensor, cold: torch.Tensor) -> torch.Tensor:
    """Each candidate's place (0: first) among its row's ``cold`` candidates by descending ``keys``
    (``[B, W]``), ties by position; pairwise comparisons, which export to ONNX and agree everywhere."""
    position = torch.arange(keys.shape[1], device=keys.device)
    other, this = keys.unsqueeze(1), keys.unsqueeze(2)  # [B, 1, W] against [B, W, 1]
    ahead = (other > this) | ((other == this) & (position.view(1, 1, -1) < position.view(1, -1, 1)))
    return (ahead & cold.unsqueeze(1)).sum(dim=2)


def slot_cold(ranked: torch.Tensor, member: torch.Tensor, cold: torch.Tensor) -> torch.Tensor:
    """``ranked`` (``[B, W]``) with the scores of each row's ``cold`` candidates handed out again: the
    candidate ``member`` scores highest among them takes the highest of them, and so on."""
    wanted, held = cold_places(member.to(ranked.dtype), cold), cold_places(ranked, cold)
    takes = (held.unsqueeze(1) == wanted.unsqueeze(2)) & cold.unsqueeze(1)  # [B, i, j]: i takes j's score
    return torch.where(cold, (takes.to(ranked.dtype) * ranked.unsqueeze(1)).sum(dim=2), ranked)


class FusionServing(torch.nn.Module):
    """The exported form: ``(score_<member> [B, W] ..., history [B, L], items [B, W]) -> score [B, W]``;
    the dense features are computed inside, from the run's item tables."""

    def __init__(self, network: FusionNetwork, tables: FeatureTables) -> None:
        super().__init__()
        self.network = network
        self.dense = DenseFeatures(tables)
        self.passthrough = int(network.passthrough)
        self.cold_member = int(network.cold_member)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *scores, history, items = inputs
        if self.passthrough >= 0:
            ranked = scores[self.passthrough] + 0.0
        else:
            ranked = self.network(torch.cat([*(s.unsqueeze(2) for s in scores), self.dense(history, items)], dim=2))
        if self.cold_member < 0:
            return ranked
        no_evidence = torch.index_select(self.dense.item_log_popularity, 0, items.reshape(-1)).reshape(items.shape) <= 0
        return slot_cold(ranked, scores[self.cold_member], no_evidence & (items > 0))  # 0 pads the list


def paired_gain_p_value(differences: np.ndarray) -> float:
    """One-sided p-value that the mean of paired ``differences`` is above zero (normal approximation)."""
    spread = float(differences.std(ddof=1)) if len(differences) > 1 else 0.0
    if spread == 0.0:
        return 0.0 if float(differences.mean()) > 0 else 1.0
    z = float(differences.mean()) / (spread / math.sqrt(len(differences)))
    return 0.5 * math.erfc(z / math.sqrt(2))


class DcnFusion(ModelKind):
    """Re-ranks candidate lists; see the module docstring."""

    name = "dcn_fusion"
    roles = frozenset({Role.FUSION})
    Params = FusionParams
    quantizable = True

    network: FusionNetwork

    def fit(
        self, lists: CandidateLists, split_for_metrics: Split, member_names: list[str], progress: Progress = no_progress,
        *, cold_lists: tuple[CandidateLists, Split] | None = None,
    ) -> None:
        """Learn from ``lists`` (labels: their held-out items in ``split_for_metrics``); the first
        ``len(member_names)`` features are those members' scores.

        Cross-fitting: for each of ``folds`` folds of the lists, a network trained on the others
        (early-stopped on a share of them) scores the fold, so every list gets an out-of-fold score
        that no choice was made on. Unless those rank better than the best member alone over all
        lists, significantly (a one-sided paired z-test over the lists, p < max_gain_p_value), that
        member's score passes through; else the final network learns from every list for the
        folds' mean best epoch count.

        ``cold_lists``: validation lists of cold titles alone with their labels (a cold-item split's
        validation cold view), on which the member that orders cold slots is chosen; else ``lists``.
        """
        p = self.params
        rng = np.random.default_rng(self.seed)
        fold_of = rng.integers(0, p.folds, len(lists.users))
        stop = rng.random(len(lists.users)) < p.early_stopping_share
        out_of_fold = np.zeros(lists.items.shape, dtype=np.float32)
        best_epochs = []
        for fold in range(p.folds):
            train_rows, held = np.flatnonzero((fold_of != fold) & ~stop), np.flatnonzero(fold_of == fold)
            stopping = lists.take(np.flatnonzero((fold_of != fold) & stop))
            network, best_epoch = self._train(lists.take(train_rows), stopping, split_for_metrics, p.epochs,
                                              progress, stage=f"fusion fold {fold + 1}/{p.folds}",
                                              members=len(member_names))
            with torch.no_grad():
                out_of_fold[held] = network(torch.from_numpy(lists.features[held])).numpy()
            best_epochs.append(best_epoch)
        fused = ndcg_per_list(lists, out_of_fold, split_for_metrics)
        alone = {name: ndcg_per_list(lists, lists.features[:, :, index], split_for_metrics)
                 for index, name in enumerate(member_names)}
        best = max(alone, key=lambda name: float(alone[name].mean()))
        p_value = paired_gain_p_value(fused - alone[best])
        epochs = max(1, round(float(np.mean(best_epochs))))
        self.chosen = {"epochs": epochs, f"out_of_fold_ndcg@{K}": float(fused.mean()),
                       f"members_alone_ndcg@{K}": {name: float(v.mean()) for name, v in alone.items()},
                       "gain_p_value": p_value}
        if p_value >= p.max_gain_p_value:
            self.network = FusionNetwork(lists.features.shape[2], p)  # never ranks: the member passes through
            self.network.passthrough.fill_(member_names.index(best))
            self.chosen["passthrough"] = best
        else:
            self.network, _ = self._train(lists, None, split_for_metrics, epochs, progress, stage="fusion",
                                          members=len(member_names))
        self._choose_cold_member(*(cold_lists or (lists, split_for_metrics)), member_names)

    def _choose_cold_member(self, lists: CandidateLists, split: Split, member_names: list[str]) -> None:
        """The member whose order of the cold candidates ranks the lists' cold held-out titles best among
        them, kept to order the cold slots if it does so significantly better than the fitted ranking
        (a one-sided paired test over the lists with a cold title held out)."""
        if lists.features.shape[2] - len(member_names) < POPULARITY_FROM_END:
            return  # lists of member scores alone: nothing tells which titles are cold
        ranked = self.score_features(lists.features, lists.mask)  # no member orders cold slots yet
        cold = (lists.features[:, :, -POPULARITY_FROM_END] <= 0) & lists.mask
        relevant = [split.test_items[u] for u in lists.users]
        cold_relevant = [held[np.isin(held, row[flags])] for held, row, flags in zip(relevant, lists.items, cold,
                                                                                     strict=True)]
        rows = np.flatnonzero([len(held) > 0 for held in cold_relevant])
        self.chosen["cold_titles"] = {"lists_with_cold_titles_held_out": len(rows)}
        if not len(rows):
            return
        among_cold = np.where(cold, lists.items, PAD)[rows]

        def cold_ndcg(scores: np.ndarray) -> np.ndarray:
            return per_user_metrics(rank_lists(among_cold, scores[rows]), [cold_relevant[r] for r in rows],
                                    K)[f"ndcg@{K}"]

        alone = {name: cold_ndcg(lists.features[:, :, index]) for index, name in enumerate(member_names)}
        best = max(alone, key=lambda name: float(alone[name].mean()))
        by_ranking = cold_ndcg(ranked)
        p_value = paired_gain_p_value(alone[best] - by_ranking)
        slotted = self._slotted(ranked, lists.features[:, :, member_names.index(best)], cold)
        gain = ndcg_per_list(lists, slotted, split) - ndcg_per_list(lists, ranked, split)
        self.chosen["cold_titles"].update({
            f"ranking_ndcg@{K}": float(by_ranking.mean()),
            f"members_ndcg@{K}": {name: float(values.mean()) for name, values in alone.items()},
            "gain_p_value": p_value, f"slotted_ndcg@{K}_gain": float(gain.mean())})
        if p_value < self.params.max_gain_p_value:
            self.network.cold_member.fill_(member_names.index(best))
            self.chosen["cold_titles"]["ordered_by"] = best

    @staticmethod
    def _slotted(ranked: np.ndarray, member: np.ndarray, cold: np.ndarray, *, rows: int = 256) -> np.ndarray:
        """slot_cold over ``[L, W]`` arrays, ``rows`` lists at a time (its comparisons are W² per list)."""
        parts = [slot_cold(*(torch.from_numpy(np.ascontiguousarray(a[start : start + rows]))
                             for a in (ranked, member, cold))).numpy() for start in range(0, len(ranked), rows)]
        return np.concatenate(parts) if parts else ranked

    def pass_through(self, member: str, members: list[str], n_features: int) -> None:
        """Rank by ``member``'s score alone (of ``members``, whose scores lead ``n_features``), with
        nothing learnt: for runs fitted where no candidate lists exist (federated rounds)."""
        self.network = FusionNetwork(n_features, self.params)
        self.network.passthrough.fill_(members.index(member))
        self.chosen = {"passthrough": member}

    def _train(
        self, lists: CandidateLists, stopping: CandidateLists | None, split: Split, epochs: int, progress: Progress,
        *, stage: str, members: int,
    ) -> tuple[FusionNetwork, int]:
        """A network trained on the lists that hold a positive, anchored on the best of the first
        ``members`` features alone on those lists; early-stopped on ``stopping`` if given."""
        p = self.params
        anchor = max(range(members), key=lambda i: float(ndcg_per_list(lists, lists.features[:, :, i], split).mean()))
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        labels = lists.labels
        rows_with_positive = np.flatnonzero(labels.sum(axis=1) > 0)
        features = torch.from_numpy(lists.features[rows_with_positive])
        mask = torch.from_numpy(lists.mask[rows_with_positive])
        targets = torch.from_numpy(labels[rows_with_positive])
        network = FusionNetwork(lists.features.shape[2], p, anchor=anchor)
        valid = features[mask]
        network.mean.copy_(valid.mean(dim=0))
        network.scale.copy_(bounded_scale(valid.std(dim=0)))
        optimizer = torch.optim.Adam(network.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:
            logits = network(features[rows]).masked_fill(~mask[rows], float("-inf"))
            log_probs = torch.log_softmax(logits, dim=1).masked_fill(~mask[rows], 0.0)
            target = targets[rows]
            return -((log_probs * target).sum(dim=1) / target.sum(dim=1)).mean()

        def run_epoch(epoch: int) -> float:
            return optimise(optimizer, minibatches(len(rows_with_positive), p.lists_per_batch, generator), batch_loss)

        def validate() -> float:
            assert stopping is not None
            with torch.no_grad():
                scores = network(torch.from_numpy(stopping.features)).numpy()
            return float(ndcg_per_list(stopping, scores, split).mean())

        result = train_loop(
            network, stage=stage, epochs=epochs, run_epoch=run_epoch,
            validate=validate if stopping is not None and len(stopping.users) else None, progress=progress,
            patience=p.patience, optimizer=optimizer, generators={"batches": generator},
            checkpoint=self.loop_checkpoint(stage),
        )
        return network.eval(), result.best_epoch

    def score(self, lists: CandidateLists) -> np.ndarray:
        """Scores ``[L, W]`` of the candidate lists (pads get some value; rank_lists ignores them)."""
        return self.score_features(lists.features, lists.mask)

    @torch.no_grad()
    def score_features(self, features: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[..., W]`` of pair features ``[..., W, F]`` (member scores, then dense); ``mask``
        (``[..., W]``) marks the real candidates where some pad the lists."""
        passthrough = int(self.network.passthrough)
        ranked = features[..., passthrough] if passthrough >= 0 else self.network(torch.from_numpy(features)).numpy()
        member = int(self.network.cold_member)
        if member < 0:
            return ranked
        cold = features[..., -POPULARITY_FROM_END] <= 0
        if mask is not None:
            cold &= mask
        width = features.shape[-2]
        flat = (a.reshape(-1, width) for a in (ranked, features[..., member], cold))
        return self._slotted(*flat).reshape(ranked.shape)

    def serving_module(self, tables: FeatureTables) -> torch.nn.Module:
        """The module the exporter writes as the fusion's ONNX model, with ``tables``' features inside."""
        return FusionServing(self.network.eval(), tables)

    def save_state(self, folder: Path) -> None:
        torch.save({"n_features": int(self.network.mean.shape[0]), "state": self.network.state_dict()},
                   folder / WEIGHTS_FILE)

    def load_state(self, folder: Path) -> None:
        saved = torch.load(folder / WEIGHTS_FILE, weights_only=True)
        self.network = FusionNetwork(saved["n_features"], self.params)
        # Runs saved before cold slots order them by the ranking.
        self.network.load_state_dict({"cold_member": torch.tensor(NO_COLD_MEMBER), **saved["state"]})
        self.network.scale.copy_(bounded_scale(self.network.scale))  # runs saved before the bound
        self.network.eval()
