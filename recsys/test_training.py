"""The shared training loop: early stopping keeps the best epoch, and a NaN loss stops the run with
an error while the module keeps its last good state."""

from __future__ import annotations

import pytest
import torch

from recsys.kinds.base import no_progress
from recsys.training import TrainingDiverged, train_loop


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
