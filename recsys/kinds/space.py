"""Search spaces, declared by each kind beside its defaults: a Params field made with ``searched``
carries the range a tuner may try; ``search_space`` reads them back. A grid field (``l2_grid`` …)
searched over a range gets one value, written as a one-point grid."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

SEARCH = "search"


@dataclass(frozen=True)
class FloatRange:
    """Real values in [low, high], drawn on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high or (self.log and self.low <= 0) or not math.isfinite(self.high):
            raise ValueError(f"not a valid range: [{self.low}, {self.high}]{' on a log scale' if self.log else ''}")


@dataclass(frozen=True)
class IntRange:
    """Integers in [low, high], drawn on a log scale when ``log``."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high or (self.log and self.low <= 0):
            raise ValueError(f"not a valid range: [{self.low}, {self.high}]{' on a log scale' if self.log else ''}")


@dataclass(frozen=True)
class Choice:
    """One of ``options``."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("a choice needs at least one option")


Space = FloatRange | IntRange | Choice


class Suggests(Protocol):
    """What a tuner's trial offers (optuna.Trial has these)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def searched(default: Any, space: Space) -> Any:
    """A Params field with ``default`` that a tuner may search over ``space``."""
    return dataclasses.field(default=default, metadata={SEARCH: space})


def search_space(params_type: type[Any]) -> dict[str, Space]:
    """The searched fields of a kind's Params and their ranges, in declaration order."""
    return {f.name: f.metadata[SEARCH] for f in dataclasses.fields(params_type) if SEARCH in f.metadata}


def suggest(trial: Suggests, prefix: str, space: Mapping[str, Space]) -> dict[str, Any]:
    """One value per field of ``space`` from ``trial`` (parameter names ``<prefix>.<field>``)."""
    values: dict[str, Any] = {}
    for name, found in space.items():
        key = f"{prefix}.{name}"
        if isinstance(found, FloatRange):
            values[name] = trial.suggest_float(key, found.low, found.high, log=found.log)
        elif isinstance(found, IntRange):
            values[name] = trial.suggest_int(key, found.low, found.high, log=found.log)
        else:
            values[name] = trial.suggest_categorical(key, list(found.options))
    return values


def to_json(space: Mapping[str, Space]) -> dict[str, Any]:
    """``space`` as plain data (what a study records, to refuse a second study of the name with another)."""
    plain = {name: {"type": type(found).__name__, **dataclasses.asdict(found)} for name, found in space.items()}
    return dict(json.loads(json.dumps(plain)))  # tuples as lists: equal to what a study stored


def from_json(plain: Mapping[str, Any]) -> dict[str, Space]:
    """What ``to_json`` wrote, as ranges again."""
    types: dict[str, type[Any]] = {"FloatRange": FloatRange, "IntRange": IntRange, "Choice": Choice}
    return {name: types[found["type"]](**{k: tuple(v) if k == "options" else v for k, v in found.items() if k != "type"})
            for name, found in plain.items()}


def from_text(text: str) -> Space:
    """A range from the command line: ``LOW:HIGH`` (floats if either has a point or an exponent),
    ``LOW:HIGH:log``, or ``A|B|C`` (a choice)."""
    if "|" in text:
        return Choice(tuple(_number(part) for part in text.split("|")))
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ValueError(f"{text!r}: expected LOW:HIGH, LOW:HIGH:log or A|B|C")
    low, high = _number(parts[0]), _number(parts[1])
    log = len(parts) == 3
    if isinstance(low, int) and isinstance(high, int):
        return IntRange(low, high, log=log)
    return FloatRange(float(low), float(high), log=log)


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
