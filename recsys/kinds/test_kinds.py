"""The contract every registered member kind keeps: it scores from histories alone (the same history
scores the same whoever sends it), its exported encoder and scorer equal its own scores, it saves
and loads, and refit keeps the choices validation made. Runs for each kind in the registry."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.content import content_embeddings
from recsys.data import load_dataset
from recsys.data.splits import Protocol, make_protocol
from recsys.features import build_item_features, history_matrix, recent
from recsys.kinds import REGISTRY, MemberKind, UnknownOption, create, kind_class
from recsys.kinds.base import Catalog, ScorerInput
from recsys.kinds.sequential import SequentialMember
from recsys.pipeline import catalog_of

MEMBERS = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, MemberKind))
SEQUENTIAL = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, SequentialMember))
FAST: dict[str, dict[str, object]] = {"two_tower": {"epochs": 2, "uniform_negatives": 16, "hard_negatives": 4, "hard_pool": 32},
        **{name: {"epochs": 2, "dim": 16, "max_length": 20} for name in ("sasrec", "bert4rec")},
        "slist": {"l2_grid": "10", "decay_grid": "2,8", "transition_weight_grid": "0,0.5"},
        "bpr": {"epochs": 10}}


@pytest.fixture(scope="module")
def data() -> tuple[Catalog, Protocol]:
    dataset = load_dataset("synthetic:n_users=120,n_items=90,mean_interactions=15,seed=5")
    return catalog_of(dataset), make_protocol(dataset)


def _histories(protocol: Protocol, users: np.ndarray, length: int) -> list[np.ndarray]:
    return recent([protocol.test.train_sequences[u] for u in users], length)


@pytest.mark.parametrize("name", MEMBERS)
def test_member_kind_contract(name: str, data: tuple[Catalog, Protocol], tmp_path: Path) -> None:
    catalog, protocol = data
    member = create(name, catalog, FAST.get(name), seed=1)
    assert isinstance(member, MemberKind)
    member.fit(protocol.validation)
    chosen = dict(member.chosen)
    rng = np.random.default_rng(0)
    users = rng.integers(0, catalog.n_users, 40)
    histories = _histories(protocol, users, catalog.history_length)
    before = member.score(histories).copy()
    member.refit(protocol.test.train_sequences)  # the validation items are now training items
    # Sequential kinds keep their validated fit (the new items reach them as history); others learn.
    assert member.chosen == chosen and np.allclose(member.score(histories), before) == (name in SEQUENTIAL)
    full = member.score(histories)
    assert full.shape == (40, catalog.n_items)
    # A history is all a kind reads: the same history gives the same scores in another row.
    shuffled = rng.permutation(40)
    np.testing.assert_allclose(member.score([histories[i] for i in shuffled]), full[shuffled], rtol=1e-5, atol=1e-5)
    items = rng.integers(0, catalog.n_items, (40, 7))
    lists = member.score_lists(histories, items)
    np.testing.assert_allclose(lists, np.take_along_axis(full, items, axis=1), rtol=1e-5, atol=1e-5)
    inputs = {
        ScorerInput.HISTORY: torch.from_numpy(history_matrix(histories, catalog.history_length)),
        ScorerInput.ITEMS: torch.from_numpy(items + 1),
    }
    with torch.no_grad():
        encoder = member.encoder_module()
        if encoder is not None:
            inputs[ScorerInput.USER_VECTOR] = encoder.eval()(inputs[ScorerInput.HISTORY])
        module = member.scorer_module()(*(inputs[name] for name in member.scorer_inputs))
    np.testing.assert_allclose(module.numpy(), lists, rtol=1e-5, atol=1e-5)
    member.save(tmp_path / name)
    loaded = create(name, catalog, FAST.get(name), seed=1)
    assert isinstance(loaded, MemberKind)
    loaded.load_state(tmp_path / name)
    np.testing.assert_allclose(loaded.score(histories), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MEMBERS)
def test_added_titles_score_like_their_content_and_leave_the_other_items_alone(
    name: str, data: tuple[Catalog, Protocol], tmp_path: Path
) -> None:
    catalog, protocol = data
    options = FAST.get(name)
    member = create(name, catalog, options, seed=1)
    assert isinstance(member, MemberKind)
    member.fit(protocol.validation)
    users = np.random.default_rng(0).integers(0, catalog.n_users, 60)
    histories = _histories(protocol, users, catalog.history_length)
    before = member.score(histories)
    counts = protocol.validation.item_counts()
    # New titles whose metadata copies the five most popular items': their content is the same.
    originals = np.argsort(-counts)[:5]
    copies = [dataclasses.replace(catalog.items[i], item_id=f"new-{i}") for i in originals]
    grown = dataclasses.replace(catalog, n_items=catalog.n_items + 5, items=(*catalog.items, *copies),
                                item_features=build_item_features([*catalog.items, *copies]))
    member.add_items(grown, content_embeddings(grown.items), counts > 0)

    after = member.score(histories)
    assert after.shape == (60, catalog.n_items + 5) and np.isfinite(after).all()
    np.testing.assert_allclose(after[:, : catalog.n_items], before, rtol=1e-5, atol=1e-5)
    new = after[:, catalog.n_items :]
    if name == "popularity":
        assert (new == 0).all()  # no users yet
    elif name not in SEQUENTIAL:  # across users, each copy is scored like the item whose content it has
        # (Sequential kinds get the same map; after this test's 2 epochs their item rows are still near
        # their random start, which no content predicts: about 30 epochs give them this structure.)
        agreement = [np.corrcoef(new[:, j], before[:, i])[0, 1] for j, i in enumerate(originals)]
        assert np.median(agreement) > 0.3, agreement
    items = np.tile(np.arange(catalog.n_items - 3, catalog.n_items + 5), (60, 1))
    inputs = {ScorerInput.HISTORY: torch.from_numpy(history_matrix(histories, catalog.history_length)),
              ScorerInput.ITEMS: torch.from_numpy(items + 1)}
    with torch.no_grad():
        encoder = member.encoder_module()
        if encoder is not None:
            inputs[ScorerInput.USER_VECTOR] = encoder.eval()(inputs[ScorerInput.HISTORY])
        exported = member.scorer_module()(*(inputs[name] for name in member.scorer_inputs))
    np.testing.assert_allclose(exported.numpy(), np.take_along_axis(after, items, axis=1), rtol=1e-5, atol=1e-5)
    member.save(tmp_path / name)
    loaded = create(name, grown, options, seed=1)
    assert isinstance(loaded, MemberKind)
    loaded.load_state(tmp_path / name)
    np.testing.assert_allclose(loaded.score(histories), after, rtol=1e-5, atol=1e-5)


def test_unknown_kind_and_hyper_parameter_list_the_valid_ones(data: tuple[Catalog, Protocol]) -> None:
    catalog, _ = data
    with pytest.raises(UnknownOption, match="unknown model kind 'lightfm'; valid: .*ease.*two_tower"):
        kind_class("lightfm")
    with pytest.raises(UnknownOption, match=r"ease: unknown hyper-parameter\(s\) lambda; valid: l2_grid, emphasis_grid, popularity_tilt_grid, user_weighting_grid, low_rank_grid, low_rank, neighbours"):
        create("ease", catalog, {"lambda": 3})


def test_bpr_keeps_the_grid_point_validation_prefers_and_refits_with_it(data: tuple[Catalog, Protocol]) -> None:
    catalog, protocol = data

    def bpr(batch_sizes: str, l2_grid: str) -> MemberKind:
        member = create("bpr", catalog, {"batch_sizes": batch_sizes, "l2_grid": l2_grid, "epochs": 6}, seed=1)
        assert isinstance(member, MemberKind)
        return member

    points = list(itertools.product((16, 512), (0.0, 0.5)))
    alone = {}
    for size, l2 in points:
        single = bpr(str(size), str(l2))
        single.fit(protocol.validation)
        alone[size, l2] = single.chosen
    assert len({float(chosen["validation_ndcg@10"]) for chosen in alone.values()}) == len(points)
    winner = max(alone, key=lambda point: float(alone[point]["validation_ndcg@10"]))
    grid = bpr("16,512", "0,0.5")
    grid.fit(protocol.validation)
    assert grid.chosen == {"batch_size": winner[0], "l2": winner[1], **alone[winner]}
    refits = []  # the refit trains at the chosen point, whatever the grid lists
    for other in (point for point in points if point != winner):
        member = bpr(str(other[0]), str(other[1]))
        member.chosen = dict(grid.chosen)
        member.refit(protocol.test.train_sequences)
        refits.append(member.score(_histories(protocol, np.arange(10), catalog.history_length)))
    for refit in refits[1:]:
        np.testing.assert_allclose(refit, refits[0])


@pytest.mark.parametrize(("parameter", "grid"), [("batch_sizes", ""), ("batch_sizes", "512,abc"),
                                                   ("batch_sizes", "0,512"), ("batch_sizes", "1024.5"),
                                                   ("l2_grid", "1e-4,-1"), ("l2_grid", "nan")])
def test_a_bad_grid_is_refused_naming_the_parameter(parameter: str, grid: str, data: tuple[Catalog, Protocol]) -> None:
    with pytest.raises(UnknownOption, match=f"bpr: {parameter} must list"):
        create("bpr", data[0], {parameter: grid})


def test_lightgcn_graph_is_symmetrically_normalised() -> None:
    from recsys.kinds.lightgcn import normalised_graph

    graph = normalised_graph([np.array([0, 1]), np.array([1])], 2, 3).to_dense().numpy()
    # user 0 has degree 2, item 0 (node 2) degree 1, item 1 (node 3) degree 2; item 2 none
    assert graph[0, 2] == pytest.approx(1 / np.sqrt(2)) and graph[0, 3] == pytest.approx(0.5)
    np.testing.assert_allclose(graph, graph.T)
    assert not graph[4].any() and not graph[:, 4].any()


def test_lightgcn_symmetric_product_has_the_gradient_of_a_plain_product() -> None:
    from recsys.kinds.lightgcn import SymmetricProduct, normalised_graph

    graph = normalised_graph([np.array([0, 1]), np.array([1, 2])], 2, 3)
    x = torch.randn(5, 4, requires_grad=True)
    SymmetricProduct.apply(graph, x).pow(2).sum().backward()
    expected = torch.autograd.functional.vjp(lambda v: graph.to_dense() @ v, x.detach(),
                                             2 * (graph.to_dense() @ x.detach()))[1]
    torch.testing.assert_close(x.grad, expected)


def test_hard_negatives_are_the_highest_scoring_pool_items_other_than_the_target() -> None:
    from recsys.kinds.two_tower import mine_hard_negatives

    pool = torch.tensor([7, 3, 9, 5])
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.5], [0.2, 0.3, 0.1, 0.4]])
    hard = mine_hard_negatives(scores, pool, target=torch.tensor([7, 1]), count=2)
    assert hard.tolist() == [[9, 5], [5, 3]]
