"""Item-item retrieval serves exactly EASE's offline top items from the exported neighbour lists."""

from __future__ import annotations

import numpy as np
import pytest

from cinesync.indexes import index_class, item_item
from cinesync.indexes.item_item import ItemItemIndex
from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.kinds import create
from recsys.kinds.ease import Ease
from recsys.metrics import top_k_excluding
from recsys.pipeline import catalog_of


@pytest.mark.parametrize("dense", [True, False])
def test_item_item_index_matches_ease_offline_scores_and_top_items(dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_item, "DENSE_MAX_BYTES", 1 << 40 if dense else 0)
    dataset = load_dataset("synthetic:n_users=200,n_items=120,mean_interactions=15,seed=4")
    protocol = make_protocol(dataset)
    ease = create("ease", catalog_of(dataset), {"l2_grid": "50", "neighbours": 20})
    assert isinstance(ease, Ease)
    ease.fit(protocol.validation)
    histories = protocol.validation.train_sequences
    domains = np.array([str(item.domain) for item in dataset.items])
    index = ItemItemIndex(ease.retrieval_arrays([]), domains, plan={})
    assert isinstance(index.rows, np.ndarray) == dense
    assert index_class("item_item") is ItemItemIndex
    users = np.arange(0, 200, 7)
    offline = ease.score([histories[u] for u in users])
    expected = top_k_excluding(offline, [histories[u] for u in users], 15)
    for row, user in enumerate(users):
        np.testing.assert_allclose(index.scores(histories[user]), offline[row], rtol=1e-5, atol=1e-6)
        items, scores = index.search(histories[user], None, 15, domain="any", exclude=histories[user])
        assert items.tolist() == expected[row].tolist()
        np.testing.assert_allclose(scores, offline[row, items], rtol=1e-5, atol=1e-6)
        tv, _ = index.search(histories[user], None, 5, domain="tv", exclude=histories[user])
        assert set(domains[tv]) == {"tv"}
