"""Splits: leave-one-out by time, seeded random holdout without time, fixed splits, validation carving."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.catalog import Domain, Item
from recsys.data.dataset import DatasetBuilder, InteractionDataset
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


def two_domain_data(n_users: int = 40, seed: int = 0) -> InteractionDataset:
    """Users with 6 movie and 6 TV items each (items 0-19 movies, 20-39 TV), a few with movies only."""
    items = [Item(str(i), f"t{i}", (), None, Domain.MOVIE if i < 20 else Domain.TV) for i in range(40)]
    builder = DatasetBuilder("two", items)
    rng = np.random.default_rng(seed)
    for user in range(n_users):
        movies = rng.choice(20, 6, replace=False)
        shows = rng.choice(np.arange(20, 40), 6 if user % 8 else 2, replace=False)  # every 8th user: too few TV
        for item in np.concatenate([movies, shows]):
            builder.add(f"u{user}", str(item))
    return builder.build(has_timestamps=False)


@pytest.mark.parametrize(("split", "source", "target"), [("movie-to-tv", range(20), range(20, 40)),
                                                         ("tv-to-movie", range(20, 40), range(20))])
def test_cross_domain_split_hides_every_target_item_of_a_seeded_share_of_two_domain_users(
        split: str, source: range, target: range) -> None:
    dataset = two_domain_data()
    protocol = make_protocol(dataset, split=split)
    test, validation = protocol.test, protocol.validation
    eligible = [u for u in range(40) if u % 8]  # 35 users with >= 5 items in both domains
    test_users, validation_users = test.test_users(), validation.test_users()
    assert len(test_users) == len(validation_users) == round(0.2 * len(eligible))
    assert set(test_users) <= set(eligible) and not set(test_users) & set(validation_users)
    for user in test_users:  # only source items to learn from, every target item to find
        assert set(test.train_sequences[user]) <= set(source) and len(test.test_items[user]) >= 5
        assert set(test.test_items[user]) <= set(target)
    for user in set(range(40)) - set(test_users):
        assert len(test.train_sequences[user]) in (8, 12) and not len(test.test_items[user])
    for user in validation_users:  # carved from test's training part, so test items stay unseen
        assert set(validation.train_sequences[user]) <= set(source) and set(validation.test_items[user]) <= set(target)
    assert test.target is not None and test.target.tolist() == [i in target for i in range(40)]
    assert protocol.target_domain == ("tv" if split == "movie-to-tv" else "movie")
    # evaluation ranks target items only: everything outside the target is excluded, as are train items
    excluded = test.excluded(test_users[:1])[0]
    assert set(excluded) == set(source) | set(test.train_sequences[test_users[0]])
    again = make_protocol(two_domain_data(), split=split)
    assert np.array_equal(again.test.test_users(), test_users)  # seeded: reproducible


def test_cross_domain_split_round_trips_through_its_arrays() -> None:
    from recsys.data.splits import Split

    test = make_protocol(two_domain_data(), split="movie-to-tv").test
    back = Split.from_arrays(test.to_arrays("test"), "test", n_items=40, kind=test.kind)
    assert back.target is not None and test.target is not None and np.array_equal(back.target, test.target)
    assert all(np.array_equal(a, b) for a, b in zip(back.test_items, test.test_items, strict=True))


def test_cross_domain_split_without_two_domain_users_is_refused() -> None:
    from recsys.data.splits import SplitUnavailable

    builder = DatasetBuilder("movies", catalog(10))
    for user in range(5):
        for item in range(8):
            builder.add(f"u{user}", str(item))
    with pytest.raises(SplitUnavailable, match="movie-to-tv split needs users with at least 5 movie and 5 tv"):
        make_protocol(builder.build(has_timestamps=False), split="movie-to-tv")


def test_cold_item_split_keeps_cold_items_out_of_training_and_views_them_apart() -> None:
    dataset = two_domain_data(n_users=60)
    protocol = make_protocol(dataset, split="cold-items")
    test, validation, cold = protocol.test, protocol.validation, protocol.cold_items
    assert cold is not None and len(cold) == round(0.2 * 40 / 2)  # 40 items with interactions: 4 + 4 cold
    assert validation.target is not None and set(np.flatnonzero(~validation.target)) == set(cold)
    assert test.target is not None  # test does not rank validation's cold items, nor validation test's
    validation_cold = set(np.flatnonzero(~test.target))
    assert len(validation_cold) == 4 and not validation_cold & set(cold)
    assert all(set(held) & set(cold) == set() for held in validation.test_items)
    every_cold = set(cold) | validation_cold
    assert len(every_cold) == 8
    for split in (test, validation):  # no interaction of a cold item is ever trained on
        assert not every_cold & set(np.concatenate(split.train_sequences).tolist())
    views = protocol.views()
    assert set(views) == {"cold", "warm", "all"} and views["all"] is test
    cold_view, warm_view = views["cold"], views["warm"]
    assert cold_view.target is not None and set(np.flatnonzero(cold_view.target)) == set(cold)
    assert all(set(held) <= set(cold) for held in cold_view.test_items)
    assert all(not set(held) & every_cold for held in warm_view.test_items)
    # every user with training items holds out one warm item, plus whatever cold test items they had
    users = [u for u in range(60) if len(test.train_sequences[u])]
    assert all(len(warm_view.test_items[u]) == 1 for u in users)
    again = make_protocol(two_domain_data(n_users=60), split="cold-items").cold_items
    assert again is not None and np.array_equal(again, cold)
    # Validation has the same views over its own cold items (where the fusion chooses how to order them).
    checked = protocol.validation_views()
    assert set(checked) == {"cold", "warm", "all"} and checked["all"] is validation
    cold_target = checked["cold"].target
    assert cold_target is not None and set(np.flatnonzero(cold_target)) == validation_cold
    assert all(set(held) <= validation_cold for held in checked["cold"].test_items)
    assert any(len(held) for held in checked["cold"].test_items)
    assert set(make_protocol(two_domain_data(n_users=60)).validation_views()) == {"all"}


def test_a_sampled_protocol_evaluates_a_seeded_sample_and_keeps_every_held_out_item() -> None:
    from recsys.data import load_dataset

    protocol = make_protocol(load_dataset("synthetic:n_users=300,n_items=80,mean_interactions=10,seed=3"))
    sampled = protocol.sampled(50, seed=4)
    users = sampled.test.test_users()
    assert len(users) == 50 and len(set(users.tolist())) == 50
    assert set(users.tolist()) <= set(protocol.test.test_users().tolist())
    assert users.tolist() == protocol.sampled(50, seed=4).test.test_users().tolist()  # seeded
    assert len(sampled.validation.test_users()) == 50
    # Held-out items stay whole: a refit on everything reads every user's.
    whole = sum(len(s) for s in protocol.test.everything().train_sequences)
    assert sum(len(s) for s in sampled.test.everything().train_sequences) == whole
    # Fewer users than the sample, or 0: all of them.
    assert protocol.sampled(10_000, seed=4).test is protocol.test
    assert protocol.sampled(0, seed=4).test is protocol.test
