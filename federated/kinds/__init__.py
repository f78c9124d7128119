"""Federated kinds by name: each is one file in this package, registered here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federated.kinds.base import Arrays, FederatedKind
from federated.kinds.two_tower import FederatedTwoTower
from recsys.kinds.base import Catalog

REGISTRY: dict[str, type[FederatedKind]] = {kind.name: kind for kind in (FederatedTwoTower,)}


class UnknownFederatedKind(ValueError):
    """A kind no federated kind trains; the message lists those that exist."""


def federated_kind(name: str, *, catalog: Catalog, params: Mapping[str, Any], seed: int) -> FederatedKind:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UnknownFederatedKind(f"no federated kind {name!r}; valid: {', '.join(sorted(REGISTRY))}") from None
    return cls(catalog=catalog, params=params, seed=seed)


__all__ = ["REGISTRY", "Arrays", "FederatedKind", "UnknownFederatedKind", "federated_kind"]
