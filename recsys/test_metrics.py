"""Full-ranking metrics on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.metrics import ranking_metrics, top_k_excluding


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
