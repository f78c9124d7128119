"""SLIST's scorer module: the candidates' columns only, the same scores as the kind's whole-catalog ones."""

from __future__ import annotations

import numpy as np
import torch

from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.features import history_matrix
from recsys.kinds import create
from recsys.kinds.slist import Slist
from recsys.pipeline import catalog_of


def test_the_scorer_reads_a_repeated_item_once_as_similarity_and_at_every_position_as_transition() -> None:
    dataset = load_dataset("synthetic:n_users=80,n_items=50,mean_interactions=10,seed=6")
    catalog = catalog_of(dataset, history_length=16)
    slist = create("slist", catalog, {"l2_grid": "10", "decay_grid": "4", "transition_weight_grid": "0.5",
                                      "window": 5})
    assert isinstance(slist, Slist)
    slist.fit(make_protocol(dataset).validation)
    rng = np.random.default_rng(3)
    histories = [rng.choice(50, rng.integers(1, 12), replace=True) for _ in range(30)]  # repeats, some short
    histories[0] = np.array([7, 3, 7, 7, 3])
    items = rng.integers(0, 50, (30, 9))
    with torch.no_grad():
        module = slist.scorer_module()(torch.from_numpy(history_matrix(histories, 16)), torch.from_numpy(items + 1))
    np.testing.assert_allclose(module.numpy(), slist.score_lists(histories, items), rtol=1e-5, atol=1e-5)
    # Padded candidates (0) get some score and leave the others' alone.
    padded = np.concatenate([items + 1, np.zeros((30, 3), dtype=np.int64)], axis=1)
    with torch.no_grad():
        wider = slist.scorer_module()(torch.from_numpy(history_matrix(histories, 16)), torch.from_numpy(padded))
    np.testing.assert_allclose(wider.numpy()[:, :9], module.numpy(), rtol=1e-6, atol=1e-6)
