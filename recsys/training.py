"""The training loop every neural kind shares: epochs, validation-driven early stopping, the best
state kept, and a stop with an error (best state restored) when the loss turns NaN."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from recsys.kinds.base import Progress


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the module holds its last good state."""


@dataclass
class LoopResult:
    """What the loop saw: the epoch whose state was kept, and each epoch's loss and validation value."""

    best_epoch: int
    best_value: float
    losses: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def train_loop(
    module: torch.nn.Module,
    *,
    stage: str,
    epochs: int,
    run_epoch: Callable[[int], float],
    validate: Callable[[], float] | None,
    progress: Progress,
    patience: int = 3,
) -> LoopResult:
    """Run ``run_epoch(epoch) -> mean loss`` up to ``epochs`` times.

    With ``validate`` (higher is better), the state of the best epoch is kept and training stops
    after ``patience`` epochs without improvement; without it, every epoch runs and the last is kept.
    """
    best_state = copy.deepcopy(module.state_dict())
    result = LoopResult(best_epoch=0, best_value=-math.inf)
    for epoch in range(1, epochs + 1):
        module.train()
        loss = run_epoch(epoch)
        module.eval()
        if not math.isfinite(loss):
            module.load_state_dict(best_state)
            raise TrainingDiverged(
                f"{stage}: loss became {loss} in epoch {epoch}; kept the state of epoch {result.best_epoch}"
            )
        result.losses.append(loss)
        value = validate() if validate is not None else float(epoch)
        result.values.append(value)
        progress(stage, epoch, epochs, loss, "loss")
        if value > result.best_value:
            result.best_epoch, result.best_value = epoch, value
            best_state = copy.deepcopy(module.state_dict())
        elif epoch - result.best_epoch >= patience:
            break
    module.load_state_dict(best_state)
    return result


def minibatches(n_rows: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A fresh random order of ``n_rows`` rows cut into batches."""
    return list(torch.randperm(n_rows, generator=generator).split(batch_size))


def optimise(
    optimizer: torch.optim.Optimizer, batches: list[torch.Tensor], batch_loss: Callable[[torch.Tensor], torch.Tensor]
) -> float:
    """One optimiser step per batch of rows; the mean loss over the batches."""
    total = 0.0
    for rows in batches:
        loss = batch_loss(rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / max(len(batches), 1)
