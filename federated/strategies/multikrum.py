"""Multi-Krum: the mean of the ``keep`` replies Krum scores best (El Mhamdi et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import MultiKrum as FlowerMultiKrum
from flwr.serverapp.strategy import Strategy

from federated.strategies.base import Sampling, StrategyKind


@dataclass(frozen=True)
class MultiKrumParams:
    byzantine: int = 1  # f
    keep: int = 2  # replies averaged

    def __post_init__(self) -> None:
        if self.byzantine < 0 or self.keep < 1:
            raise ValueError(f"byzantine must be >= 0 and keep >= 1, got {self.byzantine} and {self.keep}")


class MultiKrum(StrategyKind):
    """Mean of the most central replies."""

    name = "multikrum"
    Params = MultiKrumParams
    robust = True

    def build(self, sampling: Sampling) -> Strategy:
        return FlowerMultiKrum(num_malicious_nodes=self.params.byzantine, num_nodes_to_select=self.params.keep,
                               **sampling.flower_arguments())
