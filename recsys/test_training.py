"""The shared training loop: early stopping keeps the best epoch, a NaN loss stops the run with an
error while the module keeps its last good state, a loop resumed from its checkpoint ends exactly as
an uninterrupted one, a checkpoint of something else is refused, and the warm-up cosine schedule."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.kinds.base import no_progress
from recsys.training import Checkpoints, TrainingDiverged, adamw, minibatches, optimise, train_loop


def test_keeps_the_best_validated_epoch_and_stops_after_patience() -> None:
    module = torch.nn.Linear(1, 1)
    values = iter([0.1, 0.5, 0.3, 0.2, 0.9])

    def run_epoch(epoch: int) -> float:
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        return 1.0

    result = train_loop(module, stage="t", epochs=5, run_epoch=run_epoch, validate=lambda: next(values),
                        progress=no_progress, patience=2)
    assert result.best_epoch == 2 and len(result.losses) == 4  # epoch 5 never ran
    assert module.weight.item() == 2.0


def test_nan_loss_raises_and_restores_the_last_good_state() -> None:
    module = torch.nn.Linear(1, 1)
    losses = iter([1.0, float("nan")])

    def run_epoch(epoch: int) -> float:
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        return next(losses)

    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 2; kept the state of epoch 1"):
        train_loop(module, stage="t", epochs=3, run_epoch=run_epoch, validate=lambda: 0.5, progress=no_progress)
    assert module.weight.item() == 1.0


class Died(RuntimeError):
    """Stands in for the worker being killed mid-epoch."""


def _train(checkpoints: Checkpoints | None, *, die_in_epoch: int = 0) -> tuple[torch.nn.Module, list[float]]:
    """Six epochs of a small network with dropout, shuffled batches, numpy noise and a cosine schedule."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    target = data.sum(dim=1, keepdim=True)
    generator, rng = torch.Generator().manual_seed(2), np.random.default_rng(3)
    optimizer, scheduler = adamw(module.parameters(), learning_rate=0.05, weight_decay=0.01, steps=6 * 4,
                                 warmup_share=0.2, schedule="cosine")

    def run_epoch(epoch: int) -> float:
        if epoch == die_in_epoch:
            raise Died
        noise = float(rng.normal())  # the numpy generator's state must be restored too

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:
            return ((module(data[rows]) - target[rows] - 0.01 * noise) ** 2).mean()

        return optimise(optimizer, minibatches(64, 16, generator), batch_loss, scheduler=scheduler)

    values = []

    def validate() -> float:
        with torch.no_grad():
            values.append(-float(((module(data) - target) ** 2).mean()))
        return values[-1]

    checkpoint = checkpoints.loop("net-1", {"kind": "net"}) if checkpoints is not None else None
    train_loop(module, stage="net", epochs=6, run_epoch=run_epoch, validate=validate, progress=no_progress,
               patience=10, optimizer=optimizer, scheduler=scheduler, generators={"batches": generator, "noise": rng},
               checkpoint=checkpoint)
    return module, values


def test_a_loop_resumed_from_its_checkpoint_ends_exactly_as_an_uninterrupted_one(tmp_path: Path) -> None:
    whole, values = _train(None)
    with pytest.raises(Died):
        _train(Checkpoints(tmp_path), die_in_epoch=4)
    checkpoints = Checkpoints(tmp_path)
    resumed, later_values = _train(checkpoints)
    assert checkpoints.resumed == [{"loop": "net-1", "stage": "net", "after_epoch": 3}]
    assert later_values == values[3:]  # epochs 4-6 only, with the same outcomes
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    finished = Checkpoints(tmp_path)  # a loop that had finished returns its kept state without training
    again, no_values = _train(finished)
    assert no_values == [] and finished.resumed[0]["after_epoch"] == 6
    for a, b in zip(whole.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_checkpoint_of_something_else_is_refused_and_training_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Checkpoints(tmp_path).loop("net-1", {"kind": "other"}).save({"epoch": 3})
    with caplog.at_level(logging.ERROR):
        _, values = _train(Checkpoints(tmp_path))
    assert len(values) == 6  # all six epochs ran
    assert "refused checkpoint" in caplog.text and "'kind': 'other'" in caplog.text and "starts fresh" in caplog.text


def test_the_schedule_warms_up_then_decays_along_a_cosine_to_zero() -> None:
    optimizer, scheduler = adamw([torch.nn.Parameter(torch.zeros(1))], learning_rate=1.0, weight_decay=0.0, steps=100,
                                 warmup_share=0.1, schedule="cosine")
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[55] == pytest.approx(0.5, abs=0.02) and rates[99] < 0.001
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))
    with pytest.raises(ValueError, match="schedule must be cosine or constant"):
        adamw([torch.nn.Parameter(torch.zeros(1))], learning_rate=1.0, weight_decay=0.0, steps=1, warmup_share=0.1,
              schedule="linear")
