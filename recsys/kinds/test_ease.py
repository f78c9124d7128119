"""EASE: the closed form, pruning to neighbour lists, and λ chosen on validation."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from recsys.data import load_dataset
from recsys.data.dataset import InteractionDataset
from recsys.data.splits import make_protocol
from recsys.kinds import create
from recsys.kinds.ease import (
    Ease,
    EaseParams,
    ease_weights,
    gram_of,
    history_matrix,
    low_pass,
    multi_hot,
    prune,
)
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import catalog_of


@pytest.mark.parametrize("emphasis", [0.0, 0.5])
def test_closed_form_reconstructs_each_item_from_the_others(emphasis: float) -> None:
    rng = np.random.default_rng(0)
    history = (rng.random((60, 8)) < 0.4).astype(np.float32)
    weights = ease_weights(gram_of(history), 1.0, emphasis).astype(np.float64)
    assert np.allclose(np.diag(weights), 0.0)
    # The optimum of ||X - XB||² + Σⱼ (λ + c·|j|) ||Bⱼ||² with diag(B) = 0, |j| = item j's count:
    # each column solves a ridge regression whose penalty on a source grows with its popularity.
    for item in range(8):
        others = [j for j in range(8) if j != item]
        x = history[:, others].astype(np.float64)
        penalty = np.diag(1.0 + emphasis * x.sum(axis=0))
        ridge = np.linalg.solve(x.T @ x + penalty, x.T @ history[:, item])
        assert np.allclose(weights[others, item], ridge, atol=1e-5)


def ease_of(dataset: InteractionDataset, options: dict[str, Any]) -> Ease:
    member = create("ease", catalog_of(dataset), options)
    assert isinstance(member, Ease)
    return member


def test_user_weighting_solves_a_ridge_regression_with_long_histories_counting_less() -> None:
    rng = np.random.default_rng(1)
    history = (rng.random((80, 7)) < rng.uniform(0.1, 0.8, size=(80, 1))).astype(np.float32)
    lengths = history.sum(axis=1)
    gram = gram_of(history, 0.5)
    np.testing.assert_allclose(gram, gram_of(multi_hot(list(map(np.flatnonzero, history)), 7), 0.5))  # sparse X
    assert np.trace(gram) == pytest.approx(np.trace(gram_of(history)))  # λ keeps its scale
    user_weights = np.maximum(lengths, 1) ** -0.5 * lengths.sum() / (np.maximum(lengths, 1) ** -0.5 @ lengths)
    weights = ease_weights(gram, 2.0).astype(np.float64)
    for item in range(7):  # each column: ridge regression of the item on the others, users weighted
        others = [j for j in range(7) if j != item]
        x, w = history[:, others].astype(np.float64), user_weights[:, None]
        ridge = np.linalg.solve(x.T @ (w * x) + 2.0 * np.eye(6), x.T @ (w[:, 0] * history[:, item]))
        assert np.allclose(weights[others, item], ridge, atol=1e-5)


def test_validation_chooses_the_user_weighting_and_refit_uses_it() -> None:
    dataset = load_dataset("synthetic:n_users=150,n_items=60,mean_interactions=12,seed=2")
    protocol = make_protocol(dataset)
    options = {"l2_grid": "30", "emphasis_grid": "0", "popularity_tilt_grid": "0", "neighbours": 0}
    found = {}
    for grid in ("0", "1", "0,1"):
        ease = ease_of(dataset, {**options, "user_weighting_grid": grid})
        ease.fit(protocol.validation)
        found[grid] = ease.chosen
    assert found["0"]["validation_ndcg@10"] != found["1"]["validation_ndcg@10"]  # α changes the model
    best = max(("0", "1"), key=lambda grid: found[grid]["validation_ndcg@10"])
    assert found["0,1"]["user_weighting"] == float(best)
    assert found["0,1"]["validation_ndcg@10"] == pytest.approx(found[best]["validation_ndcg@10"])
    refitted = ease_of(dataset, options)
    refitted.chosen = found["1"]  # refit (on more data, as the pipeline does) fits with the chosen α
    refitted.refit(protocol.validation.train_sequences)
    history = history_matrix(protocol.validation.train_sequences, dataset.n_items)
    expected = ease_weights(gram_of(history, 1.0), 30.0)
    np.testing.assert_allclose(refitted.score(protocol.validation.train_sequences[:5]), history[:5] @ expected,
                               rtol=1e-4, atol=1e-5)


def test_the_low_pass_part_is_gf_cfs_ideal_filter_and_validation_weighs_it() -> None:
    rng = np.random.default_rng(3)
    history = (rng.random((50, 12)) < 0.3).astype(np.float64)
    users, items = np.maximum(history.sum(axis=1), 1) ** -0.5, np.maximum(history.sum(axis=0), 1) ** -0.5
    _, _, vt = np.linalg.svd(users[:, None] * history * items[None, :])
    top = vt[:4]  # the 4 largest singular values' right vectors
    expected = (items[:, None] * top.T) @ (top / items[None, :])
    np.testing.assert_allclose(low_pass(multi_hot(list(map(np.flatnonzero, history)), 12), 4), expected, atol=1e-8)

    dataset = load_dataset("synthetic:n_users=150,n_items=60,mean_interactions=12,seed=2")
    protocol = make_protocol(dataset)
    options = {"l2_grid": "30", "emphasis_grid": "0", "popularity_tilt_grid": "0", "neighbours": 0, "low_rank": 8}
    found = {}
    for grid in ("0", "1", "0,1"):
        ease = ease_of(dataset, {**options, "low_rank_grid": grid})
        ease.fit(protocol.validation)
        found[grid] = ease.chosen
    assert found["0"]["validation_ndcg@10"] != found["1"]["validation_ndcg@10"]  # the part changes the model
    best = max(("0", "1"), key=lambda grid: found[grid]["validation_ndcg@10"])
    assert found["0,1"]["validation_ndcg@10"] == pytest.approx(found[best]["validation_ndcg@10"])
    refitted = ease_of(dataset, {**options, "low_rank_grid": "1"})
    refitted.chosen = found["1"]  # refit adds the part with the chosen weight
    refitted.refit(protocol.validation.train_sequences)
    history_v = history_matrix(protocol.validation.train_sequences, dataset.n_items)
    dense = ease_weights(gram_of(history_v), 30.0).astype(np.float64)
    low = low_pass(multi_hot(protocol.validation.train_sequences, dataset.n_items), 8)
    np.fill_diagonal(low, 0.0)
    combined = dense + low * np.linalg.norm(dense) / np.linalg.norm(low)
    np.testing.assert_allclose(refitted.score(protocol.validation.train_sequences[:5]), history_v[:5] @ combined,
                               rtol=1e-3, atol=1e-4)


def test_pruning_keeps_the_largest_weights_into_each_item() -> None:
    weights = np.array([[0.0, 0.9, -0.5], [0.1, 0.0, 0.2], [-0.8, 0.05, 0.0]], dtype=np.float32)
    sources, kept = prune(weights, 1)
    assert sources[:, 0].tolist() == [2, 0, 0]
    np.testing.assert_allclose(kept[:, 0], [-0.8, 0.9, -0.5])


def kept_weights(history: np.ndarray, l2: float, emphasis: float, *, tilt: float, neighbours: int) -> np.ndarray:
    """The test's own pruned, tilted EASE: the closed form, each target column divided by its count
    ** tilt, then only its ``neighbours`` largest |weights| kept."""
    dense = ease_weights(gram_of(history), l2, emphasis)
    dense /= np.maximum(history.sum(axis=0), 1)[None, :] ** tilt
    kept = np.zeros_like(dense)
    for target in range(dense.shape[1]):
        top = np.argsort(-np.abs(dense[:, target]), kind="stable")[:neighbours]
        kept[top, target] = dense[top, target]
    return kept


def test_validation_picks_the_grids_and_the_pruned_tilted_model_scores_with_the_kept_weights_only() -> None:
    dataset = load_dataset("synthetic:n_users=150,n_items=60,mean_interactions=12,seed=2")
    protocol = make_protocol(dataset)
    ease = create("ease", catalog_of(dataset), {"l2_grid": "1,30,3000", "neighbours": 5,
                                                "emphasis_grid": "0,0.5", "popularity_tilt_grid": "0.3"})
    assert isinstance(ease, Ease)
    ease.fit(protocol.validation)
    chosen = ease.chosen
    # The choice is the grid point with the best validation NDCG@10, recomputed here independently.
    history = history_matrix(protocol.validation.train_sequences, dataset.n_items)
    validation, kept_at = {}, {}
    for point in itertools.product((1.0, 30.0, 3000.0), (0.0, 0.5)):
        kept_at[point] = kept_weights(history, *point, tilt=0.3, neighbours=5)
        scores = history @ kept_at[point]
        validation[point] = evaluate_full_ranking(scores.__getitem__, protocol.validation)["ndcg@10"]
    assert validation[(chosen["l2"], chosen["emphasis"])] == pytest.approx(max(validation.values()))
    assert chosen["validation_ndcg@10"] == pytest.approx(max(validation.values()))
    assert 0 < chosen["validation_ndcg@10"] <= 1
    kept = kept_at[(chosen["l2"], chosen["emphasis"])]
    assert np.count_nonzero(kept) <= 5 * kept.shape[1] < np.count_nonzero(ease_weights(gram_of(history), 1.0))
    first = protocol.validation.train_sequences[:10]
    np.testing.assert_allclose(ease.score(first), history[:10] @ kept, rtol=1e-4, atol=1e-5)


def test_a_catalog_beyond_max_items_fits_the_most_watched_titles_and_leaves_the_rest_to_other_members() -> None:
    dataset = load_dataset("synthetic:n_users=150,n_items=60,mean_interactions=12,seed=2")
    protocol = make_protocol(dataset)
    options = {"l2_grid": "30", "emphasis_grid": "0", "popularity_tilt_grid": "0", "neighbours": 0}
    capped = create("ease", catalog_of(dataset), {**options, "max_items": 20})
    assert isinstance(capped, Ease)
    capped.fit(protocol.validation)
    history = history_matrix(protocol.validation.train_sequences, dataset.n_items)
    counts = history.sum(axis=0)
    fitted = np.sort(np.argsort(-counts, kind="stable")[:20])
    others = np.setdiff1d(np.arange(dataset.n_items), fitted)
    # The fitted titles' weights are EASE's on their own columns; no weight leads to or from the others.
    expected = np.zeros((dataset.n_items, dataset.n_items), dtype=np.float32)
    expected[np.ix_(fitted, fitted)] = ease_weights(gram_of(history[:, fitted]), 30.0)
    scores = capped.score(protocol.validation.train_sequences[:40])
    np.testing.assert_allclose(scores, history[:40] @ expected, rtol=1e-4, atol=1e-5)
    assert not scores[:, others].any() and scores[:, fitted].any()
    # Without the cap (the default is larger than this catalog) every title is fitted.
    whole = create("ease", catalog_of(dataset), options)
    assert isinstance(whole, Ease)
    whole.fit(protocol.validation)
    np.testing.assert_allclose(whole.score(protocol.validation.train_sequences[:40]),
                               history[:40] @ ease_weights(gram_of(history), 30.0), rtol=1e-4, atol=1e-5)


def test_max_items_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="max_items"):
        EaseParams(max_items=-1)
