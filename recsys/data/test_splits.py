"""Splits: leave-one-out by time, seeded random holdout without time, fixed splits, validation carving."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DatasetBuilder
from recsys.data.splits import SplitTooSmall, evaluation_split, make_protocol


def catalog(n: int) -> list[Item]:
    return [Item(str(i), f"t{i}", (), None, Domain.MOVIE) for i in range(n)]


def test_time_ordered_data_holds_out_the_latest_item_for_test_and_the_one_before_for_validation() -> None:
    builder = DatasetBuilder("t", catalog(4))
    for item, when in (("2", 30.0), ("0", 10.0), ("3", 20.0)):
        builder.add("a", item, when)
    builder.add("b", "1", 5.0)  # a single interaction stays in train
    protocol = make_protocol(builder.build(has_timestamps=True))
    test, validation = protocol.test, protocol.validation
    assert test.train_sequences[0].tolist() == [0, 3] and test.test_items[0].tolist() == [2]
    assert test.train_sequences[1].tolist() == [1] and len(test.test_items[1]) == 0
    assert validation.train_sequences[0].tolist() == [0] and validation.test_items[0].tolist() == [3]
    assert test.test_users().tolist() == [0] and test.kind == "leave-one-out by time"


def test_without_timestamps_the_held_out_item_is_random_not_the_last_in_file_order() -> None:
    builder = DatasetBuilder("t", catalog(50))
    for user in range(200):
        for item in range(10):
            builder.add(f"u{user}", str(item))
    dataset = builder.build(has_timestamps=False)
    split = evaluation_split(dataset)
    held = np.concatenate(split.test_items)
    assert len(held) == 200 and len(np.unique(held)) == 10  # any position, not always the file's last
    assert np.mean(held == 9) < 0.3
    assert np.array_equal(held, np.concatenate(evaluation_split(dataset).test_items)), "seeded: the same every time"
    protocol = make_protocol(dataset)
    for train, test_items, val_items in zip(
        protocol.validation.train_sequences, protocol.test.test_items, protocol.validation.test_items, strict=True
    ):
        assert len(val_items) == 1 and not set(val_items) & set(test_items) and not set(val_items) & set(train)


def test_fixed_split_is_used_when_present_and_validation_takes_the_test_share_of_train() -> None:
    builder = DatasetBuilder("t", catalog(20))
    for item in range(16):
        builder.add("a", str(item))
    builder.add("a", "1", test=True)  # also in train: dropped from test
    for item in range(16, 20):
        builder.add("a", str(item), test=True)
    protocol = make_protocol(builder.build(has_timestamps=False, fixed_split=True))
    assert protocol.test.kind == "fixed"
    assert protocol.test.train_sequences[0].tolist() == list(range(16))
    assert protocol.test.test_items[0].tolist() == [16, 17, 18, 19]
    assert len(protocol.validation.test_items[0]) == round(16 * 4 / 20)
    assert len(protocol.validation.train_sequences[0]) == 16 - round(16 * 4 / 20)


def test_a_data_set_too_small_to_split_names_its_counts() -> None:
    builder = DatasetBuilder("tiny", catalog(3))
    builder.add("a", "0")
    builder.add("b", "1")
    with pytest.raises(SplitTooSmall, match=r"2 users, 2 interactions, at most 1 per user"):
        make_protocol(builder.build(has_timestamps=True))
