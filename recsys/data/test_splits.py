"""Splits: leave-one-out by time, and fixed splits."""

from __future__ import annotations

import numpy as np

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DatasetBuilder
from recsys.data.splits import default_split, leave_one_out


def catalog(n: int) -> list[Item]:
    return [Item(str(i), f"t{i}", (), None, Domain.MOVIE) for i in range(n)]


def test_leave_one_out_holds_out_the_latest_interaction() -> None:
    builder = DatasetBuilder("t", catalog(4))
    for item, when in (("2", 30.0), ("0", 10.0), ("3", 20.0)):
        builder.add("a", item, when)
    builder.add("b", "1", 5.0)  # a single interaction stays in train
    split = leave_one_out(builder.build(has_timestamps=True))
    assert split.train_sequences[0].tolist() == [0, 3] and split.test_items[0].tolist() == [2]
    assert split.train_sequences[1].tolist() == [1] and len(split.test_items[1]) == 0
    assert split.test_users().tolist() == [0]


def test_fixed_split_is_used_when_present_and_drops_train_items_from_test() -> None:
    builder = DatasetBuilder("t", catalog(4))
    builder.add("a", "0")
    builder.add("a", "1")
    builder.add("a", "1", test=True)
    builder.add("a", "2", test=True)
    split = default_split(builder.build(has_timestamps=False, fixed_split=True))
    assert split.kind == "fixed"
    assert split.train_sequences[0].tolist() == [0, 1]
    assert np.array_equal(split.test_items[0], [2])
