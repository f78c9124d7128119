"""FedProx: FedAvg whose clients add (mu / 2) ||w - w_global||^2 to their loss (Li et al. 2020);
Flower sends mu as the train config's "proximal-mu", which the ClientApp applies."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import FedProx as FlowerFedProx
from flwr.serverapp.strategy import Strategy

from federated.strategies.base import Sampling, StrategyKind


@dataclass(frozen=True)
class FedProxParams:
    proximal_mu: float = 0.01

    def __post_init__(self) -> None:
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu cannot be negative, got {self.proximal_mu}")


class FedProx(StrategyKind):
    """FedAvg with the proximal term on every client."""

    name = "fedprox"
    Params = FedProxParams

    def build(self, sampling: Sampling) -> Strategy:
        return FlowerFedProx(proximal_mu=self.params.proximal_mu, **sampling.flower_arguments())
