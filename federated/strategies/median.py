"""Coordinate-wise median of the clients' models (Yin et al. 2018): robust to a minority of outliers."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import FedMedian, Strategy

from federated.strategies.base import Sampling, StrategyKind


@dataclass(frozen=True)
class MedianParams:
    """The median has no parameters."""


class Median(StrategyKind):
    """Coordinate-wise median."""

    name = "median"
    Params = MedianParams
    robust = True

    def build(self, sampling: Sampling) -> Strategy:
        return FedMedian(**sampling.flower_arguments())
