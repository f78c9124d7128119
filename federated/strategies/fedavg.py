"""FedAvg: the example-weighted mean of the clients' models (McMahan et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import FedAvg as FlowerFedAvg
from flwr.serverapp.strategy import Strategy

from federated.strategies.base import Sampling, StrategyKind


@dataclass(frozen=True)
class FedAvgParams:
    """FedAvg has no parameters of its own."""


class FedAvg(StrategyKind):
    """Weighted mean of the replies."""

    name = "fedavg"
    Params = FedAvgParams
    averages = True

    def build(self, sampling: Sampling) -> Strategy:
        return FlowerFedAvg(**sampling.flower_arguments())
