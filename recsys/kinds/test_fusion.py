"""The fusion: it learns to combine members on lists with a signal, and passes the best member
through when it cannot beat it."""

from __future__ import annotations

import numpy as np

from recsys.candidates import CandidateLists
from recsys.data.splits import Split
from recsys.features import build_item_features
from recsys.kinds import create
from recsys.kinds.base import Catalog
from recsys.kinds.fusion import paired_gain_p_value


def lists_where_the_label_follows(weights: np.ndarray, *, n_lists: int = 400, width: int = 20) -> tuple[
    CandidateLists, Split
]:
    """Lists whose one held-out item is the argmax of features · weights (two 'member' columns)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_lists, width, len(weights))).astype(np.float32)
    items = np.tile(np.arange(width), (n_lists, 1))
    best = np.argmax(features @ weights, axis=1)
    relevant = [np.array([b]) for b in best]
    split = Split(n_lists, width, [np.array([], dtype=np.int64)] * n_lists, relevant, "t")
    return CandidateLists(np.arange(n_lists), items, features, relevant), split


def fusion(n_items: int = 20, **options: object):  # type: ignore[no-untyped-def]
    catalog = Catalog(1, n_items, build_item_features([]), ordered=False)
    return create("dcn_fusion", catalog, {"epochs": 30, "patience": 10, **options}, seed=0)


def test_fusion_learns_a_combination_no_single_member_has() -> None:
    lists, split = lists_where_the_label_follows(np.array([1.0, 1.0]))
    model = fusion()
    model.fit(lists, split, ["a", "b"])
    assert "passthrough" not in model.chosen
    alone = model.chosen["members_alone_ndcg@10"]
    assert model.chosen["out_of_fold_ndcg@10"] > max(alone.values()) + 0.1


def test_fusion_passes_the_best_member_through_when_it_cannot_beat_it() -> None:
    lists, split = lists_where_the_label_follows(np.array([0.0, 1.0]), n_lists=60)  # member b is the answer
    model = fusion()
    model.fit(lists, split, ["a", "b"])
    assert model.chosen["passthrough"] == "b"
    np.testing.assert_array_equal(model.score(lists), lists.features[:, :, 1])


def test_a_gain_that_is_not_significant_enough_keeps_the_best_member() -> None:
    lists, split = lists_where_the_label_follows(np.array([1.0, 1.0]))
    model = fusion(max_gain_p_value=1e-300)
    model.fit(lists, split, ["a", "b"])
    assert model.chosen["out_of_fold_ndcg@10"] > max(model.chosen["members_alone_ndcg@10"].values())
    assert model.chosen["passthrough"] in ("a", "b")


def test_paired_gain_p_value_is_small_only_for_a_consistent_gain() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=2000)
    assert paired_gain_p_value(noise + 0.2) < 1e-6
    assert 0.05 < paired_gain_p_value(noise - noise.mean()) < 0.95
    assert paired_gain_p_value(noise - 0.2) > 0.99


def test_a_feature_constant_in_training_stays_at_its_own_size_when_a_candidate_has_it() -> None:
    lists, split = lists_where_the_label_follows(np.array([1.0, 1.0]))
    constant = np.zeros((*lists.features.shape[:2], 1), dtype=np.float32)  # say, a genre no candidate had
    lists = CandidateLists(lists.users, lists.items, np.concatenate([lists.features, constant], axis=2),
                           lists.relevant)
    model = fusion()
    model.fit(lists, split, ["a", "b"])
    assert float(model.network.scale[2]) == 1.0 and float(model.network.scale[0]) != 1.0
    seen = model.score_features(lists.features[:5])
    unseen = lists.features[:5].copy()
    unseen[:, :, 2] = 1.0  # the first candidates that have it
    # Bounded: the network moves by about its weights' size, not by a million-fold outlier.
    assert np.abs(model.score_features(unseen) - seen).max() < 100 * (np.abs(seen).max() + 1)


def test_cold_titles_take_the_rankings_cold_slots_in_the_order_of_the_member_that_ranks_them_best() -> None:
    import torch

    from recsys.feature_assembly import FeatureTables, assemble_dense
    from recsys.kinds.fusion import FusionServing

    rng = np.random.default_rng(1)
    n_lists, width, n_items, n_cold = 800, 20, 40, 10
    popularity = np.concatenate([[0.0], rng.uniform(0.2, 1.0, n_items - n_cold), np.zeros(n_cold)])  # row 0: pad
    tables = FeatureTables(item_genres=np.zeros((n_items + 1, 1), np.float32),
                           item_log_popularity=popularity.astype(np.float32),
                           item_year=np.full(n_items + 1, 0.5, np.float32),
                           item_is_tv=np.zeros(n_items + 1, np.float32), history_length=5)
    items = np.stack([rng.permutation(n_items)[:width] for _ in range(n_lists)])
    cold = items >= n_items - n_cold
    # Knows nothing of cold titles: low scores, in an order of its own.
    warm_member = np.where(cold, -3.0 + 0.1 * rng.normal(size=items.shape), rng.normal(size=items.shape))
    content_member = rng.normal(size=items.shape)  # knows cold titles (and is noise on warm ones)
    # Half the lists hold out the warm member's best warm title, half the content member's best cold one.
    relevant = [np.array([row[np.argmax(np.where(c, -np.inf, w) if i % 2 else np.where(c, t, -np.inf))]])
                for i, (row, c, w, t) in enumerate(zip(items, cold, warm_member, content_member, strict=True))]
    history = np.zeros((n_lists, 5), dtype=np.int64)
    features = np.concatenate([warm_member[:, :, None], content_member[:, :, None],
                               assemble_dense(tables, history, items + 1)], axis=2).astype(np.float32)
    lists = CandidateLists(np.arange(n_lists), items, features, relevant)
    split = Split(n_lists, n_items, [np.array([], dtype=np.int64)] * n_lists, relevant, "t")
    model = fusion(n_items, epochs=1)  # a network that has not learnt the cold titles (as on real data)
    model.fit(lists, split, ["warm", "content"])
    assert model.chosen["cold_titles"]["ordered_by"] == "content", model.chosen["cold_titles"]
    scores = model.score(lists)
    model.network.cold_member.fill_(-1)
    ranked = model.score(lists)  # the same fusion without the cold slots
    model.network.cold_member.fill_(1)
    np.testing.assert_array_equal(scores[~cold], ranked[~cold])  # warm titles keep their places
    for row in range(50):  # cold titles take the ranking's cold slots, in the content member's order
        flags = cold[row]
        np.testing.assert_array_equal(np.sort(scores[row][flags]), np.sort(ranked[row][flags]))
        np.testing.assert_array_equal(np.argsort(-scores[row][flags]), np.argsort(-content_member[row][flags]))
    served = FusionServing(model.network, tables)(  # the exported form: the same scores
        torch.from_numpy(warm_member.astype(np.float32)), torch.from_numpy(content_member.astype(np.float32)),
        torch.from_numpy(history), torch.from_numpy(items + 1)).detach().numpy()
    np.testing.assert_allclose(served, scores, rtol=1e-5, atol=1e-5)
