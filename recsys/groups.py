"""Group recommendation, offline: seeded synthetic groups of held-out users and their lists from the
served cascade, aggregated by cinesync.groups (as the control plane does), against the average of
the members' individual lists; a group's hit is an item held out for any of its members. The
pipeline chooses the aggregation's tilt here, on validation groups (``choose_tilt``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cinesync.groups import DEFAULT_TILT, TILTS, aggregate
from recsys.cascade import list_features, retrieve
from recsys.data.splits import Split
from recsys.feature_assembly import FeatureTables
from recsys.features import recent
from recsys.kinds.base import MemberKind
from recsys.kinds.fusion import DcnFusion
from recsys.run import TrainedRun

GROUP_SIZES = (2, 5)  # members per group, both included
GROUP_SEED = 2026
VALIDATION_GROUPS = 500  # groups the pipeline chooses the tilt on
K = 10


def draw_groups(users: np.ndarray, *, count: int, seed: int = GROUP_SEED) -> list[np.ndarray]:
    """``count`` groups of GROUP_SIZES members drawn from ``users`` (no member twice in a group)."""
    rng = np.random.default_rng(seed)
    low, high = GROUP_SIZES
    sizes = rng.integers(low, min(high, len(users)) + 1, count)
    return [rng.choice(users, size, replace=False) for size in sizes]


class GroupRanker:
    """The served cascade (members, retrievers, fusion, ranking tables, depth) for the members of a
    group of ``split``'s users: each member's candidates, every member's fusion score of every
    candidate of the group."""

    def __init__(self, *, members: Sequence[MemberKind], retrievers: Sequence[MemberKind], fusion: DcnFusion,
                 tables: FeatureTables, split: Split, depth: int) -> None:
        self.members, self.retrievers, self.fusion = members, retrievers, fusion
        self.tables, self.split, self.depth = tables, split, depth

    @classmethod
    def of_run(cls, run: TrainedRun, split: Split) -> GroupRanker:
        return cls(members=run.members, retrievers=run.spec.retrieving(run.members), fusion=run.fusion,
                   tables=run.tables, split=split, depth=run.spec.depth)

    def _histories(self, members: np.ndarray) -> list[np.ndarray]:
        return recent([self.split.train_sequences[m] for m in members], self.tables.history_length)

    def scores(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Each member's fusion score ``[M, W]`` of ``items``."""
        tiled = np.tile(items, (len(members), 1))
        return self.fusion.score_features(list_features(self.members, self.tables, self._histories(members), tiled))

    def candidates(self, members: np.ndarray) -> list[np.ndarray]:
        """Each member's candidates, every item any member has seen left out."""
        excluded = np.unique(np.concatenate(self.split.excluded(members)))
        proposed = retrieve(self.retrievers, self._histories(members), [excluded] * len(members), self.depth)
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

    def aggregated(self, k: int, *, tilt: float = DEFAULT_TILT) -> np.ndarray:
        """The group's top ``k`` by cinesync.groups.aggregate, as the control plane ranks it."""
        order = np.argsort(-aggregate(self.scores, tilt=tilt), kind="stable")
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


def choose_tilt(ranker: GroupRanker, *, count: int = VALIDATION_GROUPS, seed: int = GROUP_SEED + 1
                ) -> dict[str, Any]:
    """The tilt of TILTS whose aggregated lists have the best group hit rate@K on ``count`` seeded
    groups of ``ranker.split``'s held-out users (ties: the one nearest the plain average), with every
    tilt's rate and the average of individual lists' beside it."""
    users = ranker.split.test_users()
    if len(users) < 2:
        return {"tilt": DEFAULT_TILT, "groups": 0}
    count = min(count, len(users))
    groups = draw_groups(users, count=count, seed=seed)
    scored = [ranker.group(members) for members in groups]
    rates = {tilt: group_hit_rate([group.aggregated(K, tilt=tilt) for group in scored], groups, ranker.split)
             for tilt in TILTS}
    best = max(TILTS, key=lambda tilt: (rates[tilt], -abs(tilt)))
    baseline = group_hit_rate([group.average_of_individual_lists(K) for group in scored], groups, ranker.split)
    return {"tilt": best, "groups": count, f"validation_group_hit_rate@{K}": {str(t): round(r, 4) for t, r in rates.items()},
            f"validation_average_of_individual_lists@{K}": round(baseline, 4)}
