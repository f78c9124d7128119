"""Group recommendation, offline: seeded synthetic groups of test users and their lists from the
served cascade, aggregated by cinesync.groups (as the control plane does), against the average of
the members' individual lists; a group's hit is an item held out for any of its members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cinesync.groups import MISERY_WEIGHT, aggregate
from recsys.cascade import list_features, retrieve
from recsys.data.splits import Split
from recsys.features import recent
from recsys.run import TrainedRun

GROUP_SIZES = (2, 5)  # members per group, both included
GROUP_SEED = 2026


def draw_groups(users: np.ndarray, *, count: int, seed: int = GROUP_SEED) -> list[np.ndarray]:
    """``count`` groups of GROUP_SIZES members drawn from ``users`` (no member twice in a group)."""
    rng = np.random.default_rng(seed)
    low, high = GROUP_SIZES
    sizes = rng.integers(low, min(high, len(users)) + 1, count)
    return [rng.choice(users, size, replace=False) for size in sizes]


class GroupRanker:
    """The served cascade of a trained run, for the members of a group: each member's candidates,
    every member's fusion score of every candidate of the group."""

    def __init__(self, run: TrainedRun, split: Split) -> None:
        self.run, self.split = run, split
        self.retrievers = run.spec.retrieving(run.members)

    def _histories(self, members: np.ndarray) -> list[np.ndarray]:
        return recent([self.split.train_sequences[m] for m in members], self.run.spec.history_length)

    def _excluded(self, members: np.ndarray) -> np.ndarray:
        return np.unique(np.concatenate(self.split.excluded(members)))

    def scores(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Each member's fusion score ``[M, W]`` of ``items``."""
        histories = self._histories(members)
        tiled = np.tile(items, (len(members), 1))
        return self.run.fusion.score_features(list_features(self.run.members, self.run.tables, histories, tiled))

    def candidates(self, members: np.ndarray) -> list[np.ndarray]:
        """Each member's candidates, every item any member has seen left out."""
        excluded = self._excluded(members)
        proposed = retrieve(self.retrievers, self._histories(members), [excluded] * len(members), self.run.spec.depth)
        return [row[row >= 0] for row in proposed]

    def group(self, members: np.ndarray) -> ScoredGroup:
        """The union of the members' candidates with every member's score of each, computed once for
        every list made from them."""
        own = self.candidates(members)
        items = np.unique(np.concatenate(own))
        return ScoredGroup(items, self.scores(members, items), np.stack([np.isin(items, o) for o in own]))


@dataclass(frozen=True)
class ScoredGroup:
    """A group's candidates (the union of its members'), each member's score of each ``[M, W]`` and
    which of them each member's own retrieval proposed ``[M, W]``."""

    items: np.ndarray
    scores: np.ndarray
    own: np.ndarray

    def aggregated(self, k: int, *, misery_weight: float = MISERY_WEIGHT) -> np.ndarray:
        """The group's top ``k`` by cinesync.groups.aggregate, as the control plane ranks it."""
        order = np.argsort(-aggregate(self.scores, misery_weight=misery_weight), kind="stable")
        return self.items[order[:k]]

    def average_of_individual_lists(self, k: int) -> np.ndarray:
        """The baseline: each member's own top ``k`` (their candidates by their score), items ordered
        by their summed Borda points over those lists (k for a first place, 0 when absent)."""
        points = np.zeros(len(self.items))
        for scores, own in zip(self.scores, self.own, strict=True):
            mine = np.flatnonzero(own)
            top = mine[np.argsort(-scores[mine], kind="stable")[:k]]
            points[top] += k - np.arange(len(top))
        order = np.argsort(-points, kind="stable")[: min(k, int(np.count_nonzero(points)))]
        return self.items[order]


def group_hit_rate(lists: Sequence[np.ndarray], groups: Sequence[np.ndarray], split: Split) -> float:
    """Share of groups whose list holds an item held out for any of its members."""
    hits = [np.isin(items, np.concatenate([split.test_items[m] for m in group])).any()
            for items, group in zip(lists, groups, strict=True)]
    return float(np.mean(hits)) if hits else 0.0
