"""Train / validation / test splits.

Test: the data set's published fixed split where it has one; otherwise each user's latest item by
time, or a seeded random item where the data has no timestamps (file order is not time). The
validation split is carved out of train by the same rule, so choices made on it transfer to test.

Cross-domain (movie-to-tv, tv-to-movie): of the users with at least CROSS_DOMAIN_MIN_ITEMS items in
each domain, a seeded CROSS_DOMAIN_SHARE are test users whose every target-domain item is held out
and whose training part keeps only their source-domain items; another such share, disjoint, is
validation. Only target-domain items are ranked for them (``Split.target``).

Cold items (cold-items, as the ColdRec toolkit does): a seeded COLD_ITEM_SHARE of the items with
interactions leave training with all their interactions, half for validation and half for test; each
user's warm items are held out as by the auto rule. Test ranks every item but the validation cold
ones; ``Protocol.views`` splits it into cold-item, warm-item and all-item evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from cinesync.splits import CROSS_DOMAIN, SPLITS
from recsys.data.catalog import Domain
from recsys.data.dataset import InteractionDataset

MIN_TRAIN_ITEMS = 1  # a user keeps at least this many training items when items are held out
HOLDOUT_SEED = 2026
CROSS_DOMAIN_MIN_ITEMS = 5  # in each domain, for a user to be a cross-domain evaluation user
CROSS_DOMAIN_SHARE = 0.2  # of those users, held out for test (and as many again for validation)
COLD_ITEM_SHARE = 0.2  # of the items with interactions, cold: half for validation, half for test
COLD_ITEMS = "cold-items"


class SplitTooSmall(ValueError):
    """The data set has too few interactions for a train / validation / test split."""


class SplitUnavailable(ValueError):
    """The data set lacks what the chosen split needs (timestamps for leave-one-out by time)."""


@dataclass
class Split:
    """Per-user train sequences (time order where known) and held-out evaluation items; ``target``,
    where set, marks the only items evaluation ranks (a cross-domain split's target domain; a cold-item
    split's catalog without the other half's cold items)."""

    n_users: int
    n_items: int
    train_sequences: list[np.ndarray]
    test_items: list[np.ndarray]
    kind: str
    target: np.ndarray | None = None  # bool [n_items]
    evaluated: np.ndarray | None = None  # the held-out users evaluation reads, where a sample (sorted)

    def excluded(self, users: np.ndarray) -> list[np.ndarray]:
        """Per user, the items evaluation never ranks for them: their training items, and every item
        outside the target where the split has one."""
        if self.target is None:
            return [self.train_sequences[u] for u in users]
        outside = np.flatnonzero(~self.target)
        return [np.union1d(self.train_sequences[u], outside) for u in users]

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        users = np.repeat(np.arange(self.n_users), [len(s) for s in self.train_sequences])
        items = np.concatenate(self.train_sequences) if self.n_users else np.zeros(0, dtype=np.int64)
        return users.astype(np.int64), items.astype(np.int64)

    def test_users(self) -> np.ndarray:
        """The users with held-out items that evaluation reads: all, or the sample ``sampled`` drew."""
        if self.evaluated is not None:
            return self.evaluated
        return np.array([u for u, t in enumerate(self.test_items) if len(t)], dtype=np.int64)

    def sampled(self, count: int, *, seed: int) -> Split:
        """This split with evaluation reading a seeded sample of ``count`` of its held-out users where it
        has more (0: all); training sequences and held-out items stay whole (refits read them)."""
        users = self.test_users()
        if count <= 0 or len(users) <= count:
            return self
        chosen = np.random.default_rng(seed).choice(users, count, replace=False)
        return replace(self, evaluated=np.sort(chosen).astype(np.int64))

    def item_counts(self) -> np.ndarray:
        _, items = self.train_pairs()
        return np.bincount(items, minlength=self.n_items).astype(np.float64)

    def everything(self) -> Split:
        """Every interaction as training (held-out items after each user's training ones), none held out."""
        sequences = [np.concatenate([tr, te]) for tr, te in zip(self.train_sequences, self.test_items, strict=True)]
        return Split(self.n_users, self.n_items, sequences, [s[:0] for s in sequences], "all interactions")

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Flat arrays for np.savez, named ``<prefix>_...``; ``from_arrays`` reads them back."""
        arrays = {
            f"{prefix}_train": np.concatenate(self.train_sequences).astype(np.int64),
            f"{prefix}_train_lengths": np.array([len(s) for s in self.train_sequences]),
            f"{prefix}_held": np.concatenate(self.test_items).astype(np.int64),
            f"{prefix}_held_lengths": np.array([len(t) for t in self.test_items]),
        }
        if self.target is not None:
            arrays[f"{prefix}_target"] = self.target
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str, *, n_items: int, kind: str) -> Split:
        def unpack(name: str) -> list[np.ndarray]:
            lengths = arrays[f"{prefix}_{name}_lengths"]
            flat = arrays[f"{prefix}_{name}"].astype(np.int64)
            return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []

        train, held = unpack("train"), unpack("held")
        target = arrays[f"{prefix}_target"].astype(bool) if f"{prefix}_target" in arrays else None
        return cls(len(train), n_items, train, held, kind, target)


@dataclass
class Protocol:
    """The split a run evaluates on (test touched once) and the one it tunes on (validation)."""

    test: Split
    validation: Split
    by_time: bool
    target_domain: str | None = None  # the domain a cross-domain split ranks
    cold_items: np.ndarray | None = None  # a cold-item split's test cold items (no training interaction)
    validation_cold_items: np.ndarray | None = None  # and its validation cold items

    def summary(self) -> dict[str, object]:
        return {
            "test": self.test.kind,
            "validation": self.validation.kind,
            "test_users": len(self.test.test_users()),
            "validation_users": len(self.validation.test_users()),
            "target_domain": self.target_domain,
            "cold_items": None if self.cold_items is None else len(self.cold_items),
        }

    def sampled(self, count: int, *, seed: int) -> Protocol:
        """Test and validation each evaluated on a seeded sample of ``count`` held-out users (``Split.sampled``)."""
        return replace(self, test=self.test.sampled(count, seed=seed),
                       validation=self.validation.sampled(count, seed=seed + 1))

    def views(self) -> dict[str, Split]:
        """The test split as evaluated: "all"; and for a cold-item split also "cold" (its cold items
        ranked among themselves, against each user's cold test items) and "warm" (the other items,
        against each user's held-out warm items)."""
        return cold_views(self.test, self.cold_items)

    def validation_views(self) -> dict[str, Split]:
        """The validation split's views, as ``views`` (the validation cold items for "cold")."""
        return cold_views(self.validation, self.validation_cold_items)


def cold_views(split: Split, cold_items: np.ndarray | None) -> dict[str, Split]:
    """``split`` as "all", and where it has ``cold_items`` also "cold" and "warm" (Protocol.views)."""
    if cold_items is None:
        return {"all": split}
    cold = np.zeros(split.n_items, dtype=bool)
    cold[cold_items] = True
    base = split.target if split.target is not None else np.ones(split.n_items, dtype=bool)

    def view(mask: np.ndarray, name: str) -> Split:
        held = [items[mask[items]] for items in split.test_items]
        evaluated = None if split.evaluated is None else split.evaluated[[len(held[u]) > 0 for u in split.evaluated]]
        return Split(split.n_users, split.n_items, split.train_sequences, held, f"{split.kind}: {name} items", mask,
                     evaluated)

    return {"cold": view(cold, "cold"), "warm": view(base & ~cold, "warm"), "all": split}


def _ordered(dataset: InteractionDataset, mask: np.ndarray) -> list[np.ndarray]:
    """Each user's items under mask, ordered by timestamp (file order breaks ties), duplicates dropped."""
    users = dataset.user_idx[mask]
    items = dataset.item_idx[mask]
    times = dataset.timestamps[mask] if dataset.timestamps is not None else np.zeros(len(users))
    order = np.lexsort((np.arange(len(users)), times, users))
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, np.arange(dataset.n_users + 1))
    sequences = []
    for user in range(dataset.n_users):
        seq = items[bounds[user] : bounds[user + 1]]
        _, first = np.unique(seq, return_index=True)
        sequences.append(seq[np.sort(first)])
    return sequences


def hold_out(
    sequences: list[np.ndarray], counts: list[int], *, by_time: bool, seed: int, n_items: int, kind: str
) -> Split:
    """Hold out ``counts[u]`` items of user u: the latest ones when ``by_time``, else seeded random ones.

    A user keeps at least MIN_TRAIN_ITEMS training items; users with fewer items hold out none.
    The train sequence keeps its order.
    """
    rng = np.random.default_rng(seed)
    train, held = [], []
    for seq, count in zip(sequences, counts, strict=True):
        count = max(0, min(count, len(seq) - MIN_TRAIN_ITEMS))
        if by_time:
            positions = np.arange(len(seq) - count, len(seq))
        else:
            positions = np.sort(rng.choice(len(seq), count, replace=False))
        keep = np.ones(len(seq), dtype=bool)
        keep[positions] = False
        train.append(seq[keep])
        held.append(seq[positions])
    split = Split(len(sequences), n_items, train, held, kind)
    if not len(split.test_users()):
        sizes = [len(s) for s in sequences]
        raise SplitTooSmall(
            f"{kind}: no user has more than {MIN_TRAIN_ITEMS} item(s) to hold out "
            f"({len(sequences)} users, {sum(sizes)} interactions, at most {max(sizes, default=0)} per user)"
        )
    return split


def _holdout_kind(by_time: bool, seed: int) -> str:
    return "leave-one-out by time" if by_time else f"random held-out item per user (seed {seed})"


def evaluation_split(dataset: InteractionDataset, *, seed: int = HOLDOUT_SEED) -> Split:
    """The published fixed split where the data set has one, else one held-out item per user."""
    if dataset.test_mask is not None:
        train = _ordered(dataset, ~dataset.test_mask)
        test = _ordered(dataset, dataset.test_mask)
        test = [np.setdiff1d(t, tr, assume_unique=True) for t, tr in zip(test, train, strict=True)]
        split = Split(dataset.n_users, dataset.n_items, train, test, "fixed")
        if not len(split.test_users()):
            raise SplitTooSmall(f"{dataset.name}: the fixed split's test part has no user with a new item")
        return split
    by_time = dataset.timestamps is not None
    sequences = _ordered(dataset, np.ones(dataset.n_interactions, dtype=bool))
    return hold_out(
        sequences, [1] * len(sequences), by_time=by_time, seed=seed, n_items=dataset.n_items,
        kind=_holdout_kind(by_time, seed),
    )


def validation_split(test: Split, *, by_time: bool, seed: int = HOLDOUT_SEED + 1) -> Split:
    """Carve validation out of ``test``'s training part by the rule that made the test part.

    One item per user for held-out-item splits; for a fixed split, each user's share of the test
    part (random, since a fixed split says nothing of time).
    """
    if test.kind == "fixed":
        counts = [
            round(len(tr) * len(te) / (len(tr) + len(te))) if len(te) else 0
            for tr, te in zip(test.train_sequences, test.test_items, strict=True)
        ]
        return hold_out(
            test.train_sequences, counts, by_time=False, seed=seed, n_items=test.n_items,
            kind=f"validation: random share of train per user (seed {seed})",
        )
    return hold_out(
        test.train_sequences, [1] * test.n_users, by_time=by_time, seed=seed, n_items=test.n_items,
        kind="validation: " + _holdout_kind(by_time, seed),
    )


def cross_domain_protocol(dataset: InteractionDataset, source: Domain, target: Domain, *,
                          seed: int = HOLDOUT_SEED) -> Protocol:
    """Test and validation users drawn (seeded, disjoint) from those with CROSS_DOMAIN_MIN_ITEMS
    items in both domains; each keeps only source-domain items for training and is evaluated on all
    of their target-domain items, ranked among target-domain items only."""
    domains = dataset.domains()
    codes = {domain: list(Domain).index(domain) for domain in (source, target)}
    sequences = _ordered(dataset, np.ones(dataset.n_interactions, dtype=bool))
    counts = np.array([[np.sum(domains[s] == codes[d]) for d in (source, target)] for s in sequences]).reshape(-1, 2)
    eligible = np.flatnonzero((counts >= CROSS_DOMAIN_MIN_ITEMS).all(axis=1))
    share = round(CROSS_DOMAIN_SHARE * len(eligible))
    if share < 1:
        raise SplitUnavailable(
            f"{dataset.name}: the {source.value}-to-{target.value} split needs users with at least "
            f"{CROSS_DOMAIN_MIN_ITEMS} {source.value} and {CROSS_DOMAIN_MIN_ITEMS} {target.value} items; "
            f"{len(eligible)} have them"
        )
    drawn = np.random.default_rng(seed).permutation(eligible)
    in_target = domains == codes[target]
    describe = (f"{source.value} -> {target.value}: {CROSS_DOMAIN_SHARE:.0%} of the {len(eligible)} users with "
                f">= {CROSS_DOMAIN_MIN_ITEMS} items in each domain (seed {seed}), their {target.value} items held out")

    def hiding(train: list[np.ndarray], users: np.ndarray, kind: str) -> Split:
        train, held = list(train), [s[:0] for s in train]
        for user in users:
            held[user] = train[user][in_target[train[user]]]
            train[user] = train[user][domains[train[user]] == codes[source]]
        return Split(dataset.n_users, dataset.n_items, train, held, kind, in_target)

    test = hiding(sequences, drawn[:share], describe)
    validation = hiding(test.train_sequences, drawn[share : 2 * share], "validation: " + describe.replace(
        f"(seed {seed})", f"(seed {seed}, the next {share} users)"))
    return Protocol(test=test, validation=validation, by_time=dataset.timestamps is not None,
                    target_domain=target.value)


def cold_item_protocol(dataset: InteractionDataset, *, seed: int = HOLDOUT_SEED) -> Protocol:
    """Cold items left out of training (seeded; half validation, half test), warm items held out per
    user by the auto rule; a user's cold test items count only where they have training items."""
    sequences = _ordered(dataset, np.ones(dataset.n_interactions, dtype=bool))
    with_interactions = np.flatnonzero(np.bincount(dataset.item_idx, minlength=dataset.n_items))
    drawn = np.random.default_rng(seed).permutation(with_interactions)
    half = round(COLD_ITEM_SHARE * len(drawn) / 2)
    if half < 1:
        raise SplitUnavailable(f"{dataset.name}: too few items with interactions for a cold-item split")
    cold_validation, cold_test = np.sort(drawn[:half]), np.sort(drawn[half : 2 * half])
    is_cold = np.zeros(dataset.n_items, dtype=bool)
    is_cold[drawn[: 2 * half]] = True
    by_time = dataset.timestamps is not None
    describe = (f"cold items: {half} + {half} of {len(drawn)} items without training interactions (seed {seed}), "
                f"warm items by {_holdout_kind(by_time, seed)}")
    warm = hold_out([s[~is_cold[s]] for s in sequences], [1] * len(sequences), by_time=by_time, seed=seed,
                    n_items=dataset.n_items, kind=describe)
    warm_validation = validation_split(warm, by_time=by_time)

    def with_cold(split: Split, cold: np.ndarray, other: np.ndarray, kind: str) -> Split:
        in_cold = np.isin(np.arange(dataset.n_items), cold)
        held = [np.concatenate([h, s[in_cold[s]]]) if len(t) else h
                for s, t, h in zip(sequences, split.train_sequences, split.test_items, strict=True)]
        target = np.ones(dataset.n_items, dtype=bool)
        target[other] = False  # the other half of the cold items is not in this split's catalog
        return Split(dataset.n_users, dataset.n_items, split.train_sequences, held, kind, target)

    test = with_cold(warm, cold_test, cold_validation, describe)
    validation = with_cold(warm_validation, cold_validation, cold_test, "validation: " + describe)
    return Protocol(test=test, validation=validation, by_time=by_time, cold_items=cold_test,
                    validation_cold_items=cold_validation)


def make_protocol(dataset: InteractionDataset, *, split: str = "auto") -> Protocol:
    """Test split, then validation carved from its training part. ``split``: "auto" (the data set's
    fixed split, else leave-one-out by time, else a seeded random held-out item), "loo-time"
    (leave-one-out by time, validation each user's second-latest item; refused without timestamps)
    a cross-domain split (``cross_domain_protocol``) or cold-items (``cold_item_protocol``)."""
    if split not in SPLITS:
        raise SplitUnavailable(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if split == "loo-time" and dataset.timestamps is None:
        raise SplitUnavailable(
            f"{dataset.name}: the loo-time split needs timestamps, and this data set has none "
            "(file order is not time); use --split auto"
        )
    if split in CROSS_DOMAIN:
        source, target = CROSS_DOMAIN[split]
        return cross_domain_protocol(dataset, Domain(source), Domain(target))
    if split == COLD_ITEMS:
        return cold_item_protocol(dataset)
    by_time = dataset.timestamps is not None
    test = evaluation_split(dataset)
    return Protocol(test=test, validation=validation_split(test, by_time=by_time), by_time=by_time)
