"""The unseen-item sampler never returns an item from the user's history when others exist."""

import numpy as np
import torch

from recsys.negatives import UnseenSampler


def test_samples_avoid_each_users_history() -> None:
    sequences = [np.array([0, 1, 2, 3, 4, 5, 6, 7]), np.array([8, 9]), np.array([], dtype=np.int64)]
    sampler = UnseenSampler(sequences, n_items=10, generator=torch.Generator().manual_seed(0))
    users = torch.tensor([0, 1, 2] * 2000)
    items = sampler.sample(users)
    assert set(items[users == 0].tolist()) == {8, 9}
    assert set(items[users == 1].tolist()) == set(range(8))
    assert set(items[users == 2].tolist()) == set(range(10))
