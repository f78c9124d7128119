"""Groups offline: seeded groups of 2-5 test users, lists that leave out every member's seen items,
and the aggregation rule on hand-checked scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cinesync.groups import TILTS, aggregate
from recsys.groups import GroupRanker, K, choose_tilt, draw_groups, group_hit_rate
from recsys.run import load_run


def test_aggregate_tilts_standardised_scores_from_least_misery_to_most_pleasure() -> None:
    scores = np.array([[3.0, 2.0, 1.0], [30.0, 20.0, 10.0]])  # same taste, ten times the scale
    for tilt in TILTS:
        assert aggregate(scores, tilt=tilt) == pytest.approx(aggregate(scores[:1], tilt=tilt))
    loved_and_hated = np.array([[2.0, 1.0, 0.0, 0.5], [-5.0, 1.0, 0.9, 0.5]])
    standard = (loved_and_hated - loved_and_hated.mean(1, keepdims=True)) / loved_and_hated.std(1, keepdims=True)
    assert aggregate(loved_and_hated, tilt=0.0) == pytest.approx(standard.mean(0))
    assert aggregate(loved_and_hated, tilt=200.0) == pytest.approx(standard.max(0), abs=0.01)
    assert aggregate(loved_and_hated, tilt=-200.0) == pytest.approx(standard.min(0), abs=0.01)
    assert np.argmax(aggregate(loved_and_hated, tilt=-2.0)) == 1  # item 0: one member's worst by far
    assert np.argmax(aggregate(loved_and_hated, tilt=8.0)) == 0  # and the other's favourite
    assert aggregate(np.ones((2, 3)), tilt=2.0) == pytest.approx(np.zeros(3))  # no spread: no preference


def test_groups_are_seeded_and_two_to_five_distinct_users() -> None:
    users = np.arange(100, 160)
    groups = draw_groups(users, count=50, seed=1)
    assert all(2 <= len(g) <= 5 and len(set(g)) == len(g) and set(g) <= set(users) for g in groups)
    assert {len(g) for g in groups} == {2, 3, 4, 5}
    assert all(np.array_equal(a, b) for a, b in zip(groups, draw_groups(users, count=50, seed=1), strict=True))


def test_group_lists_leave_out_what_any_member_has_seen(small_run: Path) -> None:
    run = load_run(small_run)
    split = run.protocol.test
    ranker = GroupRanker.of_run(run, split)
    groups = draw_groups(split.test_users(), count=20)
    for members in groups[:5]:
        seen = set(np.concatenate([split.train_sequences[m] for m in members]).tolist())
        scored = ranker.group(members)
        for items in (scored.aggregated(10), scored.average_of_individual_lists(10)):
            assert len(items) == 10 and len(set(items.tolist())) == 10 and not seen & set(items.tolist())
    lists = [ranker.group(members).aggregated(10) for members in groups]
    assert 0 < group_hit_rate(lists, groups, split) <= 1
    # a list holding one member's held-out item is a hit for the whole group
    held = [split.test_items[members[-1]][:1] for members in groups]
    assert group_hit_rate(held, groups, split) == 1.0


def test_the_tilt_chosen_on_validation_groups_is_the_best_of_the_grid(small_run: Path) -> None:
    run = load_run(small_run)
    assert run.manifest["groups"]["tilt"] in TILTS  # chosen at training, on validation groups
    chosen = choose_tilt(GroupRanker.of_run(run, run.protocol.validation), count=40)
    rates = chosen[f"validation_group_hit_rate@{K}"]
    assert set(rates) == {str(t) for t in TILTS} and chosen["groups"] == 40
    assert rates[str(chosen["tilt"])] == max(rates.values())
