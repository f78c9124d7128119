"""Group recommendation, offline: seeded synthetic groups of test users and their lists from the
served cascade, aggregated by cinesync.groups (as the control plane does), against the average of
the members' individual lists; a group's hit is an item held out for any of its members."""

from __future__ import annotations

from collections.abc import Sequence

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

    def group_list(self, members: np.ndarray, k: int, *, misery_weight: float = MISERY_WEIGHT) -> np.ndarray:
        """The group's top ``k``: cinesync.groups.aggregate over the members' scores of the union of
        their candidates."""
        items = np.unique(np.concatenate(self.candidates(members)))
        order = np.argsort(-aggregate(self.scores(members, items), misery_weight=misery_weight), kind="stable")
        return items[order[:k]]

    def average_of_individual_lists(self, members: np.ndarray, k: int) -> np.ndarray:
        """The baseline: each member's own top ``k`` (their candidates by their score, the group's seen
        items left out), items ordered by their mean Borda points over those lists (k for a first
        place, 0 when absent)."""
        points: dict[int, float] = {}
        for member, items in zip(members, self.candidates(members), strict=True):
            own = items[np.argsort(-self.scores(np.array([member]), items)[0], kind="stable")[:k]]
            for place, item in enumerate(own.tolist()):
                points[item] = points.get(item, 0.0) + k - place
        ranked = sorted(points, key=lambda item: (-points[item], item))
        return np.array(ranked[:k], dtype=np.int64)


def group_hit_rate(lists: Sequence[np.ndarray], groups: Sequence[np.ndarray], split: Split) -> float:
    """Share of groups whose list holds an item held out for any of its members."""
    hits = [np.isin(items, np.concatenate([split.test_items[m] for m in group])).any()
            for items, group in zip(lists, groups, strict=True)]
    return float(np.mean(hits)) if hits else 0.0
