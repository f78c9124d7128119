"""Aggregation strategies by name: each is one file in this package, registered here."""

from __future__ import annotations

from collections.abc import Mapping

from federated.strategies.base import Sampling, StrategyKind, UnknownStrategy
from federated.strategies.fedavg import FedAvg
from federated.strategies.fedprox import FedProx
from federated.strategies.krum import Krum
from federated.strategies.median import Median
from federated.strategies.multikrum import MultiKrum
from federated.strategies.trimmed_mean import TrimmedMean

REGISTRY: dict[str, type[StrategyKind]] = {
    kind.name: kind for kind in (FedAvg, FedProx, Median, TrimmedMean, Krum, MultiKrum)
}


def strategy_kind(name: str, params: Mapping[str, float] | None = None) -> StrategyKind:
    """The strategy registered as ``name`` with ``params`` checked; UnknownStrategy lists the valid ones."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UnknownStrategy(f"unknown strategy {name!r}; valid: {', '.join(sorted(REGISTRY))}") from None
    return cls(params or {})


__all__ = ["REGISTRY", "Sampling", "StrategyKind", "UnknownStrategy", "strategy_kind"]
