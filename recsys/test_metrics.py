"""Full-ranking metrics on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.data.catalog import Domain, Item
from recsys.data.splits import Split
from recsys.features import build_item_features
from recsys.metrics import (
    evaluate_ranked,
    gini,
    intra_list_diversity,
    ranking_metrics,
    report,
    top_k_excluding,
)


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
    # AP: first row one hit at rank 2 over min(1, 3) relevant; second row one hit at 3 over min(2, 3)
    assert metrics["map@3"] == pytest.approx((1 / 2 + (1 / 3) / 2) / 2)


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


def test_gini_of_exposure_is_zero_for_equal_shares_and_grows_with_concentration() -> None:
    assert gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)  # (n - 1) / n when one item has all
    assert 0 < gini(np.array([1, 2, 3, 10])) < 0.75
    assert gini(np.zeros(5)) == 0.0


def test_intra_list_diversity_is_the_mean_cosine_distance_of_genre_vectors() -> None:
    genres = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    assert intra_list_diversity(np.array([[0, 1]]), genres) == pytest.approx(0.0)  # same genres
    assert intra_list_diversity(np.array([[0, 2]]), genres) == pytest.approx(1.0)  # disjoint genres
    # items 0, 2, 3: distances 1 (0-2), 1 - 1/sqrt(2) (0-3 and 2-3); item 4 has no genre and a pad is no item
    expected = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3
    assert intra_list_diversity(np.array([[0, 2, 3, 4, -1]]), genres) == pytest.approx(expected)
    assert intra_list_diversity(np.array([[4, -1]]), genres) == 0.0  # no list with two genre-bearing items


def test_popularity_bias_is_the_mean_share_of_users_who_have_a_shown_item() -> None:
    split = Split(4, 3, [np.array([0]), np.array([0]), np.array([0, 1]), np.array([1])],
                  [np.array([2]), np.array([2]), np.array([2]), np.array([2])], "t")
    metrics = evaluate_ranked(np.array([[0] + [-1] * 19, [1] + [-1] * 19]), split, np.array([0, 1]))
    assert metrics["popularity@10"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert metrics["gini@10"] == pytest.approx(gini(np.array([1, 1, 0])))
    assert {"ndcg@5", "ndcg@20", "map@10", "hr@20", "mrr@5"} <= set(metrics) and "diversity@10" not in metrics


def test_report_breaks_down_by_held_out_domain_and_short_histories() -> None:
    items = [Item(str(i), f"t{i}", ("Drama",) if i % 2 else ("Comedy",), None, Domain.TV if i >= 4 else Domain.MOVIE)
             for i in range(8)]
    long_history = np.arange(0, 8)[[0, 1, 2, 5, 6, 7]]
    split = Split(3, 8, [np.array([0]), long_history, np.array([1, 2])],
                  [np.array([3]), np.array([3, 4]), np.array([5])], "t")
    ranked = np.array([[3, 4] + [-1] * 18, [4, 3] + [-1] * 18, [6, 5] + [-1] * 18])
    groups = report(ranked, split, np.array([0, 1, 2]), build_item_features(items))
    assert set(groups) == {"all", "domain movie", "domain tv", "history <= 5"}
    assert groups["domain movie"]["users"] == 2 and groups["domain tv"]["users"] == 2
    # user 1's list puts the TV item 4 first: a perfect TV list, a movie hit only at rank 2
    assert groups["domain tv"]["hr@10"] == 1.0 and groups["domain tv"]["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert groups["domain movie"]["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert groups["history <= 5"]["users"] == 2  # users 0 and 2; user 1 has six training items
    assert groups["all"]["diversity@10"] == pytest.approx(1.0)  # each list pairs a comedy with a drama


def test_a_single_domain_report_has_no_domain_breakdown() -> None:
    items = [Item(str(i), f"t{i}", ("Drama",), None, Domain.MOVIE) for i in range(3)]
    split = Split(1, 3, [np.array([0])], [np.array([1])], "t")
    groups = report(np.array([[1, 2] + [-1] * 18]), split, np.array([0]), build_item_features(items))
    assert set(groups) == {"all", "history <= 5"}
