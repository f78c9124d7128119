"""Krum: the one reply closest (summed squared distances) to its n - f - 2 nearest others
(Blanchard et al. 2017), with f the Byzantine clients tolerated."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import Krum as FlowerKrum
from flwr.serverapp.strategy import Strategy

from federated.strategies.base import Sampling, StrategyKind


@dataclass(frozen=True)
class KrumParams:
    byzantine: int = 1  # f

    def __post_init__(self) -> None:
        if self.byzantine < 0:
            raise ValueError(f"byzantine cannot be negative, got {self.byzantine}")


class Krum(StrategyKind):
    """The single most central reply."""

    name = "krum"
    Params = KrumParams
    robust = True

    def build(self, sampling: Sampling) -> Strategy:
        return FlowerKrum(num_malicious_nodes=self.params.byzantine, **sampling.flower_arguments())
