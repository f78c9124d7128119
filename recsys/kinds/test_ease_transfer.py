"""ease_transfer: the cross-domain blocks are ridge heads from a source-only history to the target
domain, the in-domain blocks stay the joint EASE's, and validation picks the heads' ridge."""

from __future__ import annotations

import numpy as np

from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.kinds import MemberKind, create
from recsys.kinds.ease import ease_weights, gram_of, history_matrix
from recsys.kinds.ease_transfer import EaseTransfer, transfer_heads
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import catalog_of

SYNTHETIC = "synthetic:n_users=400,n_items=120,mean_interactions=24,tv_share=0.5,seed=11"


def test_transfer_heads_are_the_ridge_from_source_items_to_target_items_of_two_domain_users() -> None:
    history = np.array([[1, 0, 1, 0], [1, 1, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32)
    domains = np.array([0, 0, 1, 1])
    heads = {(int(d[src][0]), int(d[tgt][0])): (src, tgt, w)
             for d in [domains] for src, tgt, w in transfer_heads(history, domains, 2.0)}
    src, tgt, weights = heads[(0, 1)]
    both = history[[0, 1]]  # user 2 has no TV item and user 3 no movie: neither teaches a head
    x, y = both[:, src].astype(np.float64), both[:, tgt].astype(np.float64)
    np.testing.assert_allclose(weights, np.linalg.solve(x.T @ x + 2.0 * np.eye(2), x.T @ y), rtol=1e-6)
    assert src.tolist() == [0, 1] and tgt.tolist() == [2, 3] and set(heads) == {(0, 1), (1, 0)}


def test_a_source_only_history_is_scored_by_the_head_and_in_domain_blocks_stay_eases() -> None:
    dataset = load_dataset(SYNTHETIC)
    protocol = make_protocol(dataset, split="movie-to-tv")
    catalog = catalog_of(dataset)
    kind = create("ease_transfer", catalog, {"neighbours": 0, "popularity_tilt_grid": "0", "emphasis_grid": "0",
                                             "l2_grid": "50", "transfer_l2_grid": "5,50"})
    assert isinstance(kind, EaseTransfer)
    kind.fit(protocol.validation)
    assert kind.chosen["transfer_l2"] in (5.0, 50.0) and "validation_ndcg@10" in kind.chosen
    history = history_matrix(protocol.validation.train_sequences, catalog.n_items)
    movies, shows = np.flatnonzero(catalog.item_features.domain == 0), np.flatnonzero(catalog.item_features.domain == 1)
    joint = ease_weights(gram_of(history), 50.0)
    head = {(int(catalog.item_features.domain[s[0]]), int(catalog.item_features.domain[t[0]])): w
            for s, t, w in transfer_heads(history, catalog.item_features.domain, kind.chosen["transfer_l2"])}
    user = int(protocol.validation.test_users()[0])
    source_only = protocol.validation.train_sequences[user]
    scores = kind.score([source_only])[0]
    np.testing.assert_allclose(scores[shows], head[(0, 1)][np.searchsorted(movies, source_only)].sum(axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores[movies], joint[np.ix_(source_only, movies)].sum(axis=0), rtol=1e-4, atol=1e-5)


def test_transfer_beats_the_joint_ease_from_source_only_histories() -> None:
    dataset = load_dataset(SYNTHETIC)
    catalog = catalog_of(dataset)
    for split in ("movie-to-tv", "tv-to-movie"):
        protocol = make_protocol(dataset, split=split)
        ndcg = {}
        for name in ("ease", "ease_transfer", "popularity"):
            kind = create(name, catalog)
            assert isinstance(kind, MemberKind)
            kind.fit(protocol.validation)
            kind.refit(protocol.test.train_sequences)
            ndcg[name] = evaluate_full_ranking(kind.user_scores(protocol.test), protocol.test)["ndcg@10"]
        assert ndcg["ease_transfer"] > max(ndcg["ease"], ndcg["popularity"]), (split, ndcg)
