"""The interface of an aggregation strategy CineSync offers: a name, its parameters, and the Flower
strategy (flwr.serverapp.strategy) it builds."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from flwr.serverapp.strategy import Strategy


class UnknownStrategy(ValueError):
    """A strategy name or parameter that does not exist, or a value it refuses; the message lists the valid ones."""


@dataclass(frozen=True)
class Sampling:
    """What every strategy is told: the share of connected nodes trained per round, the fewest that
    must train (and be connected), and the reply metric that weights the average."""

    fraction_train: float
    min_clients: int
    weighted_by_key: str

    def flower_arguments(self) -> dict[str, Any]:
        return {"fraction_train": self.fraction_train, "fraction_evaluate": 1.0, "min_train_nodes": self.min_clients,
                "min_evaluate_nodes": self.min_clients, "min_available_nodes": self.min_clients,
                "weighted_by_key": self.weighted_by_key}


class StrategyKind(ABC):
    """One aggregation rule; subclasses set ``name``, ``Params`` (a dataclass of floats and ints) and
    ``robust`` (whether it bounds what a minority of Byzantine clients can do)."""

    name: ClassVar[str]
    Params: ClassVar[type[Any]]
    robust: ClassVar[bool] = False
    averages: ClassVar[bool] = False  # aggregates with FedAvg's weighted mean (what DP accounting needs)

    def __init__(self, params: Mapping[str, float]) -> None:
        fields = {f.name: f for f in dataclasses.fields(self.Params)}
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise UnknownStrategy(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                                  f"valid: {', '.join(fields) or 'none'}")
        try:
            defaults = {key: fields[key].default for key in params}
            self.params = self.Params(**{key: type(defaults[key])(value) for key, value in params.items()})  # type: ignore[misc]
        except (TypeError, ValueError) as error:
            raise UnknownStrategy(f"{self.name}: {error}") from None

    @abstractmethod
    def build(self, sampling: Sampling) -> Strategy:
        """The Flower strategy with these parameters and ``sampling``."""
