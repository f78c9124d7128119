"""Full-ranking metrics on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.data.splits import Split
from recsys.metrics import evaluate_ranked, ranking_metrics, top_k_excluding


def test_top_k_excludes_seen_items_and_orders_best_first() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    assert top_k_excluding(scores, [np.array([0])], 2).tolist() == [[1, 3]]


def test_metrics_match_hand_computation() -> None:
    ranked = np.array([[5, 3, 7], [1, 2, 4]])
    metrics = ranking_metrics(ranked, [np.array([3]), np.array([9, 4])], 3)
    assert metrics["recall@3"] == pytest.approx((1 + 0.5) / 2)
    ndcg_first = 1 / math.log2(3)
    ndcg_second = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics["ndcg@3"] == pytest.approx((ndcg_first + ndcg_second) / 2)
    assert metrics["mrr@3"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert metrics["hr@3"] == 1.0


def test_ties_go_to_the_lower_item_index() -> None:
    scores = np.array([[0.5, 0.7, 0.5, 0.5, 0.7]])
    assert top_k_excluding(scores, [np.array([1])], 3).tolist() == [[4, 0, 2]]


def test_hit_rate_coverage_and_novelty() -> None:
    split = Split(2, 4, [np.array([0, 1]), np.array([0])], [np.array([2]), np.array([3])], "t")
    ranked = np.array([[2, 3] + [-1] * 18, [1, 2] + [-1] * 18])  # short lists are padded with -1
    metrics = evaluate_ranked(ranked, split, np.array([0, 1]))
    assert metrics["hr@10"] == 0.5 and metrics["recall@20"] == 0.5
    assert metrics["coverage@10"] == 3 / 4  # items 1, 2, 3 shown to someone
    # users with item (floored at 1) of 2 users: item 1 -> 1, 2 -> 1, 3 -> 1 (floor), all self-information 1 bit
    assert metrics["novelty@10"] == pytest.approx(1.0)


def test_a_row_with_fewer_unseen_items_than_k_is_padded_never_given_seen_ones() -> None:
    scores = np.array([[0.1, 0.9, 0.5]])
    assert top_k_excluding(scores, [np.array([1, 2])], 3).tolist() == [[0, -1, -1]]


def test_top_k_equals_a_full_stable_sort_under_many_ties_and_exclusions() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(200, 30)).astype(np.float32)  # four values: ties everywhere
    scores[rng.random(scores.shape) < 0.05] = np.nan
    exclude = [rng.choice(30, size=rng.integers(0, 29), replace=False) for _ in range(200)]
    for k in (1, 5, 20, 30):
        masked = np.where(np.isnan(scores), -np.inf, scores).astype(np.float64)
        for row, items in enumerate(exclude):
            masked[row, items] = -np.inf
        full = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        expected = np.where(np.isneginf(np.take_along_axis(masked, full, axis=1)), -1, full)
        assert np.array_equal(top_k_excluding(scores, exclude, k), expected)
