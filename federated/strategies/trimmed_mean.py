"""Coordinate-wise trimmed mean: the mean after dropping the ``beta`` share of highest and of lowest
values of each coordinate (Yin et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import FedTrimmedAvg, Strategy

from federated.strategies.base import Sampling, StrategyKind


@dataclass(frozen=True)
class TrimmedMeanParams:
    beta: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {self.beta}")


class TrimmedMean(StrategyKind):
    """Coordinate-wise trimmed mean."""

    name = "trimmed_mean"
    Params = TrimmedMeanParams
    robust = True

    def build(self, sampling: Sampling) -> Strategy:
        return FedTrimmedAvg(beta=self.params.beta, **sampling.flower_arguments())
