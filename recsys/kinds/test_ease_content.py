"""ease_content: items without interactions get weights from their content, blended into EASE's by
interaction count, so the cold-item split's new titles are ranked from a user's history."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data import load_dataset
from recsys.data.splits import Protocol, make_protocol
from recsys.kinds import MemberKind, create
from recsys.kinds.ease_content import EaseContent
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import catalog_of

SYNTHETIC = "synthetic:n_users=300,n_items=300,mean_interactions=20,seed=4"


@pytest.fixture(scope="module")
def fitted() -> tuple[EaseContent, Protocol]:
    dataset = load_dataset(SYNTHETIC)
    protocol = make_protocol(dataset, split="cold-items")
    kind = create("ease_content", catalog_of(dataset), {"l2_grid": "200", "emphasis_grid": "0",
                                                        "popularity_tilt_grid": "0", "neighbours": 0})
    assert isinstance(kind, EaseContent)
    kind.fit(protocol.validation)
    kind.refit(protocol.test.train_sequences)
    return kind, protocol


def test_cold_items_are_ranked_from_content_where_ease_cannot(fitted: tuple[EaseContent, Protocol]) -> None:
    kind, protocol = fitted
    cold = protocol.views()["cold"]
    ease = create("ease", kind.catalog, {"l2_grid": "200", "emphasis_grid": "0", "popularity_tilt_grid": "0"})
    assert isinstance(ease, MemberKind)
    ease.fit(protocol.validation)
    ease.refit(protocol.test.train_sequences)
    users = cold.test_users()
    assert protocol.cold_items is not None
    assert np.all(ease.score([cold.train_sequences[u] for u in users[:5]])[:, protocol.cold_items] == 0)
    with_content = evaluate_full_ranking(kind.user_scores(cold), cold)["ndcg@10"]
    without = evaluate_full_ranking(ease.user_scores(cold), cold)["ndcg@10"]  # ties: index order
    assert with_content > without + 0.1, (with_content, without)
    assert kind.chosen["blend"] in (2.0, 10.0, 50.0)


def test_weights_move_from_content_to_ease_as_interactions_arrive(fitted: tuple[EaseContent, Protocol]) -> None:
    kind, _ = fitted
    n = kind.catalog.n_items
    collaborative = np.random.default_rng(0).random((n, n)).astype(np.float32)
    content = np.random.default_rng(1).random((n, n)).astype(np.float32)
    counts = np.zeros(n)
    counts[:3] = (0.0, 10.0, 1e9)  # new, as many as κ, very many
    sources, weights = kind._state(collaborative, content, counts, {"blend": 10.0, "popularity_tilt": 0.0})
    dense = np.zeros((n, n), dtype=np.float32)
    np.put_along_axis(dense, sources, weights, axis=1)  # [target, source]
    np.testing.assert_allclose(dense[0], content[:, 0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dense[1], (collaborative[:, 1] + content[:, 1]) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dense[2], collaborative[:, 2], rtol=1e-5, atol=1e-7)
