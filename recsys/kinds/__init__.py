"""Model kinds by name: each kind is one file in this package, registered here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys.kinds.base import Catalog, MemberKind, ModelKind, Role, UnknownOption, parse_params
from recsys.kinds.bert4rec import Bert4Rec
from recsys.kinds.bpr import Bpr
from recsys.kinds.ease import Ease
from recsys.kinds.ease_content import EaseContent
from recsys.kinds.ease_transfer import EaseTransfer
from recsys.kinds.fusion import DcnFusion
from recsys.kinds.lightgcn import LightGcn
from recsys.kinds.popularity import Popularity
from recsys.kinds.sasrec import SasRec
from recsys.kinds.slist import Slist
from recsys.kinds.two_tower import TwoTower

REGISTRY: dict[str, type[ModelKind]] = {
    kind.name: kind for kind in (Popularity, Ease, EaseTransfer, EaseContent, TwoTower, Bpr, LightGcn, Slist, SasRec, Bert4Rec, DcnFusion)
}


def kind_class(name: str) -> type[ModelKind]:
    """The kind registered as ``name``; UnknownOption lists the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOption(f"unknown model kind {name!r}; valid: {', '.join(sorted(REGISTRY))}") from None


def create(name: str, catalog: Catalog, options: Mapping[str, Any] | None = None, *, seed: int = 0) -> ModelKind:
    """A new, unfitted kind with its hyper-parameters checked."""
    cls = kind_class(name)
    return cls(catalog, parse_params(cls.Params, options or {}, owner=name), seed=seed)


__all__ = ["REGISTRY", "Catalog", "MemberKind", "ModelKind", "Role", "UnknownOption", "create", "kind_class"]
