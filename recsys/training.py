"""The training loop every neural kind shares: epochs, validation-driven early stopping, the best
state kept, a stop with an error (best state restored) when the loss turns NaN, and a checkpoint
after every epoch (module, optimizer, scheduler, random generators, the loop's history) from which
a job redelivered after its worker died resumes. Also AdamW with warm-up then cosine decay, the
device (CUDA when present, else the CPU) and mixed precision on it (bfloat16 autocast on CUDA).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.kinds.base import Progress

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1  # bumped when what a checkpoint holds changes: older ones are refused
Generators = Mapping[str, torch.Generator | np.random.Generator]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the module holds its last good state."""


@dataclass
class LoopResult:
    """What the loop saw: the epoch whose state was kept, and each epoch's loss and validation value."""

    best_epoch: int
    best_value: float
    losses: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    resumed_after: int = 0  # the epoch a checkpoint held when the loop started (0: a fresh start)


def training_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision where it pays: bfloat16 autocast on CUDA (no loss scaling needed); float32 on
    the CPU, where bfloat16 matrix products are slower than float32 on most processors."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adamw(
    parameters: Any, *, learning_rate: float, weight_decay: float, steps: int, warmup_share: float, schedule: str
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and a per-step schedule: "cosine" warms up linearly over ``warmup_share`` of ``steps``
    then decays along a half cosine to zero at ``steps``; "constant" keeps the learning rate."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be cosine or constant, got {schedule!r}")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    warmup = max(1, round(steps * warmup_share))

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, steps - warmup) / max(steps - warmup, 1)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class CheckpointRefused(RuntimeError):
    """A checkpoint written by another kind, configuration or checkpoint format."""


class Checkpoints:
    """A training job's checkpoint folder: one file per training loop, named by the order in which
    the job starts its loops (the same order when it runs again)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.resumed: list[dict[str, Any]] = []  # what was resumed, for the run manifest

    def loop(self, name: str, identity: Mapping[str, Any]) -> LoopCheckpoint:
        return LoopCheckpoint(self, self.folder / f"{name}.pt", {"format": CHECKPOINT_FORMAT, **identity})


class LoopCheckpoint:
    """One training loop's checkpoint file, written atomically after every epoch."""

    def __init__(self, owner: Checkpoints, path: Path, identity: dict[str, Any]) -> None:
        self.owner, self.path, self.identity = owner, path, identity

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None: nothing saved, or a checkpoint of something else (refused with a
        logged error naming the difference; training then starts fresh)."""
        if not self.path.is_file():
            return None
        try:
            saved: dict[str, Any] = torch.load(self.path, weights_only=False)
            if saved.get("identity") != self.identity:
                raise CheckpointRefused(f"it was written for {saved.get('identity')}, not {self.identity}")
        except (CheckpointRefused, OSError, RuntimeError, EOFError, KeyError, AttributeError) as error:
            log.error("refused checkpoint %s (%s); training starts fresh", self.path, error)
            self.path.unlink(missing_ok=True)
            return None
        return saved

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        torch.save({"identity": self.identity, **state}, scratch)
        os.replace(scratch, self.path)


def _generator_states(generators: Generators) -> dict[str, Any]:
    return {name: g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state
            for name, g in generators.items()}


def _restore_generators(generators: Generators, states: Mapping[str, Any]) -> None:
    for name, generator in generators.items():
        if isinstance(generator, torch.Generator):
            generator.set_state(states[name])
        else:
            generator.bit_generator.state = states[name]


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


# A tuner's hook: each epoch's validation figure of every training loop in this context (stage,
# epoch, value); it may raise to stop the loop (a pruned trial).
EpochReport = Callable[[str, int, float], None]
epoch_reports: ContextVar[EpochReport | None] = ContextVar("epoch_reports", default=None)


def train_loop(
    module: torch.nn.Module,
    *,
    stage: str,
    epochs: int,
    run_epoch: Callable[[int], float],
    validate: Callable[[], float] | None,
    progress: Progress,
    patience: int = 3,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generators: Generators | None = None,
    checkpoint: LoopCheckpoint | None = None,
) -> LoopResult:
    """Run ``run_epoch(epoch) -> mean loss`` up to ``epochs`` times.

    With ``validate`` (higher is better), the state of the best epoch is kept and training stops
    after ``patience`` epochs without improvement; without it, every epoch runs and the last is kept.
    With ``checkpoint``, every epoch ends by saving the module, ``optimizer``, ``scheduler``, the
    global torch generators (CPU and CUDA) and ``generators`` and the loop's history; a loop that finds a checkpoint
    of its own continues after its epoch (or returns at once when that one had finished).
    """
    generators = generators or {}
    best_state = _cpu_state(module)
    result = LoopResult(best_epoch=0, best_value=-math.inf)
    first = 1
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None and checkpoint is not None:
        module.load_state_dict(saved["module"])
        best_state = saved["best_state"]
        result = LoopResult(**saved["result"])
        result.resumed_after = saved["epoch"]
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        _restore_generators(generators, saved["generators"])
        first = saved["epoch"] + 1
        checkpoint.owner.resumed.append({"loop": checkpoint.path.stem, "stage": stage, "after_epoch": saved["epoch"]})
        log.info("%s: resumed from the checkpoint of epoch %d", stage, saved["epoch"])
        progress(f"{stage} (resumed after epoch {saved['epoch']})", saved["epoch"], epochs,
                 result.losses[-1] if result.losses else 0.0, "loss" if result.losses else "")
        if saved["finished"]:
            module.load_state_dict(best_state)
            return result
    for epoch in range(first, epochs + 1):
        module.train()
        loss = run_epoch(epoch)
        module.eval()
        if not math.isfinite(loss):
            module.load_state_dict(best_state)
            raise TrainingDiverged(
                f"{stage}: loss became {loss} in epoch {epoch}; kept the state of epoch {result.best_epoch}"
            )
        result.losses.append(loss)
        progress(stage, epoch, epochs, loss, "loss")
        value = validate() if validate is not None else float(epoch)
        result.values.append(value)
        if validate is not None:
            progress(stage, epoch, epochs, value, "validation ndcg@10")
            if (report_epoch := epoch_reports.get()) is not None:
                report_epoch(stage, epoch, value)
        if value > result.best_value:
            result.best_epoch, result.best_value = epoch, value
            best_state = _cpu_state(module)
        finished = epoch == epochs or epoch - result.best_epoch >= patience
        if checkpoint is not None:
            checkpoint.save({
                "epoch": epoch, "finished": finished, "module": _cpu_state(module), "best_state": best_state,
                "result": asdict(result), "optimizer": optimizer.state_dict() if optimizer else None,
                "scheduler": scheduler.state_dict() if scheduler else None, "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "generators": _generator_states(generators),
            })
        if finished:
            break
    module.load_state_dict(best_state)
    return result


def minibatches(n_rows: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A fresh random order of ``n_rows`` rows cut into batches."""
    return list(torch.randperm(n_rows, generator=generator).split(batch_size))


def optimise(
    optimizer: torch.optim.Optimizer,
    batches: list[torch.Tensor],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One optimiser step (and scheduler step) per batch of rows; the mean loss over the batches."""
    total = 0.0
    for rows in batches:
        loss = batch_loss(rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item()
    return total / max(len(batches), 1)
