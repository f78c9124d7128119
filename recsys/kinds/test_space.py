"""Search spaces declared beside the kinds' defaults, read back, suggested by an Optuna trial and
refused where they name something that does not exist; a trial's epochs reach the tuner's hook."""

from __future__ import annotations

import optuna
import pytest

from conftest import SMALL_SYNTHETIC
from recsys.kinds import UnknownOption, kind_class
from recsys.kinds.space import (
    Choice,
    FloatRange,
    IntRange,
    Space,
    from_json,
    from_text,
    search_space,
    suggest,
    to_json,
)
from recsys.tuning import Target, checked_space, validation_ndcg


def test_kinds_declare_their_spaces_beside_their_defaults() -> None:
    space = search_space(kind_class("sasrec").Params)
    assert {"dim", "heads", "layers", "dropout", "max_length", "learning_rate", "epochs"} <= set(space)
    assert space["learning_rate"] == FloatRange(2e-4, 1e-2, log=True) and space["layers"] == IntRange(1, 4)
    assert set(search_space(kind_class("slist").Params)) == {"window", "l2_grid", "decay_grid", "transition_weight_grid"}
    assert kind_class("sasrec").Params().dim == 64  # the default is unchanged


def test_a_trial_suggests_one_value_per_field_within_its_range() -> None:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    space: dict[str, Space] = {"a": FloatRange(1.0, 100.0, log=True), "b": IntRange(2, 4), "c": Choice((32, 64))}
    values = suggest(trial, "kind", space)
    assert 1 <= values["a"] <= 100 and values["b"] in (2, 3, 4) and values["c"] in (32, 64)
    assert set(trial.params) == {"kind.a", "kind.b", "kind.c"}
    assert to_json(space)["c"] == {"type": "Choice", "options": [32, 64]}
    assert from_json(to_json(space)) == space  # what a worker reads back from the study


def test_ranges_from_the_command_line() -> None:
    assert from_text("2:4") == IntRange(2, 4) and from_text("1e-4:1e-2:log") == FloatRange(1e-4, 1e-2, log=True)
    assert from_text("32|64") == Choice((32, 64))
    for bad in ("5", "1:2:linear", "4:2", "0:1:log"):
        with pytest.raises(ValueError):
            from_text(bad)


def test_a_space_naming_an_unknown_kind_or_field_is_refused() -> None:
    with pytest.raises(UnknownOption, match="unknown model kind .nope."):
        checked_space("nope")
    with pytest.raises(UnknownOption, match="not a member kind"):
        checked_space("dcn_fusion")
    with pytest.raises(UnknownOption, match="unknown hyper-parameter.*colour"):
        checked_space("two_tower", {"colour": IntRange(1, 2)})
    with pytest.raises(UnknownOption, match="declares no search space"):
        checked_space("popularity")
    assert checked_space("two_tower", {"epochs": IntRange(2, 3)})["epochs"] == IntRange(2, 3)


def test_each_epochs_validation_figure_reaches_the_tuner_which_may_stop_the_trial() -> None:
    seen: list[tuple[str, int, float]] = []

    def prune_after_two(stage: str, epoch: int, value: float) -> None:
        seen.append((stage, epoch, value))
        if epoch == 2:
            raise optuna.TrialPruned("enough")

    with pytest.raises(optuna.TrialPruned):
        validation_ndcg(Target(SMALL_SYNTHETIC, "two_tower", options={"patience": 9}), {"epochs": 6},
                        on_epoch=prune_after_two)
    assert [(stage, epoch) for stage, epoch, _ in seen] == [("two_tower", 1), ("two_tower", 2)]
    value = validation_ndcg(Target(SMALL_SYNTHETIC, "ease"), {"l2_grid": "300"})
    assert 0 < value < 1
